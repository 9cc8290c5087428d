"""Typed pubsub listeners for workspace messages, and the publishing helper (coder's
``HandleWorkspaceEvent``, ``HandleWorkspaceBuildUpdate``, ``PublishWorkspaceBuildUpdate``).

A handler turns a callback on decoded payloads into a ``ListenerWithErr``. The callback gets
``(payload, None)`` for a good message, or ``(payload, error)`` where ``error`` is a
``WorkspaceMessageError`` with coder's text and ``payload`` is the zero value (nil UUIDs,
empty strings) or, when only validation failed, the decoded event.
"""

from __future__ import annotations

from collections.abc import Callable

from turnout._json_object import MalformedMessageError
from turnout.workspace._build_update import WorkspaceBuildUpdate
from turnout.workspace._errors import WorkspaceMessageError
from turnout.workspace._events import ALL_WORKSPACE_EVENT_CHANNEL, WorkspaceEvent
from turnout.workspace._pubsub import ListenerWithErr, Pubsub
from turnout.workspace._uuids import NIL_UUID

__all__ = [
    "EMPTY_WORKSPACE_BUILD_UPDATE",
    "EMPTY_WORKSPACE_EVENT",
    "handle_workspace_build_update",
    "handle_workspace_event",
    "publish_workspace_build_update",
]

#: The payload a workspace event callback gets with an error when nothing was decoded.
EMPTY_WORKSPACE_EVENT = WorkspaceEvent(kind="", workspace_id=NIL_UUID)
#: The payload a build update callback gets with an error (Go's zero value).
EMPTY_WORKSPACE_BUILD_UPDATE = WorkspaceBuildUpdate(
    workspace_id=NIL_UUID,
    workspace_name="",
    build_id=NIL_UUID,
    transition="",
    job_status="",
    build_number=0,
)


def handle_workspace_event(
    cb: Callable[[WorkspaceEvent, WorkspaceMessageError | None], None],
) -> ListenerWithErr:
    """A listener decoding workspace events for ``cb``. Errors, in coder's words:
    ``"workspace event pubsub: <err>"`` when the pubsub reports one; ``"unmarshal workspace
    event"`` when the message does not decode; ``"validate workspace event"`` (with the
    decoded payload) when it fails ``WorkspaceEvent.validate``."""

    def listener(message: bytes, err: Exception | None) -> None:
        if err is not None:
            cb(EMPTY_WORKSPACE_EVENT, _wrapped(f"workspace event pubsub: {err}", err))
            return
        try:
            payload = WorkspaceEvent.from_json(message, validate=False)
        except MalformedMessageError as exc:
            cb(EMPTY_WORKSPACE_EVENT, _wrapped("unmarshal workspace event", exc))
            return
        try:
            payload.validate()
        except ValueError as exc:
            cb(payload, _wrapped("validate workspace event", exc))
            return
        cb(payload, None)

    return listener


def handle_workspace_build_update(
    cb: Callable[[WorkspaceBuildUpdate, WorkspaceMessageError | None], None],
) -> ListenerWithErr:
    """A listener decoding build updates for ``cb``. Errors, in coder's words:
    ``"workspace build update pubsub: <err>"`` when the pubsub reports one, ``"unmarshal
    workspace build update: <reason>"`` when the message does not decode to a valid update
    (``WorkspaceBuildUpdate.from_json`` validates)."""

    def listener(message: bytes, err: Exception | None) -> None:
        if err is not None:
            cb(
                EMPTY_WORKSPACE_BUILD_UPDATE,
                _wrapped(f"workspace build update pubsub: {err}", err),
            )
            return
        try:
            payload = WorkspaceBuildUpdate.from_json(message)
        except MalformedMessageError as exc:
            cb(
                EMPTY_WORKSPACE_BUILD_UPDATE,
                _wrapped(f"unmarshal workspace build update: {exc}", exc),
            )
            return
        cb(payload, None)

    return listener


def publish_workspace_build_update(ps: Pubsub, update: WorkspaceBuildUpdate) -> None:
    """Validates ``update`` (``ValueError``) and publishes its JSON on
    ``ALL_WORKSPACE_EVENT_CHANNEL``."""
    update.validate()
    ps.publish(ALL_WORKSPACE_EVENT_CHANNEL, update.to_json())


def _wrapped(text: str, cause: BaseException) -> WorkspaceMessageError:
    error = WorkspaceMessageError(text)
    error.__cause__ = cause
    return error
