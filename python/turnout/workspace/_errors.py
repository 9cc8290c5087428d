"""The exceptions of ``turnout.workspace`` (besides ``MalformedMessageError``, shared by
every wire type and defined in ``turnout._json_object``)."""

from __future__ import annotations

__all__ = ["ChannelClosedError", "PubsubClosedError", "WorkspaceMessageError"]


class WorkspaceMessageError(Exception):
    """What a handler made by ``handle_workspace_event`` / ``handle_workspace_build_update``
    passes to its callback when a message cannot be delivered as a valid payload.

    The text is coder's (``"workspace event pubsub: ..."``, ``"unmarshal workspace event"``,
    ``"validate workspace event"``, ...); the underlying error is ``__cause__``.
    """


class PubsubClosedError(RuntimeError):
    """A publish or subscribe on a pubsub that was closed."""


class ChannelClosedError(Exception):
    """A read from a workspace channel that is closed and has nothing left to give."""
