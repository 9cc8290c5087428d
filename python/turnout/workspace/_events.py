"""Workspace events (coder's ``wspubsub.WorkspaceEvent``): a note that something about one
workspace changed, published on the channel of the workspace's owner."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any
from uuid import UUID

import orjson

from turnout._go_json import go_escape
from turnout._json_object import decode_object, str_field
from turnout.workspace._uuids import NIL_UUID, parse_uuid

__all__ = [
    "ALL_WORKSPACE_EVENT_CHANNEL",
    "WorkspaceEvent",
    "WorkspaceEventKind",
    "workspace_event_channel",
]

#: The channel that receives events for every workspace, so a watcher of N workspaces needs
#: one subscription rather than N.
ALL_WORKSPACE_EVENT_CHANNEL = "workspace_updates:all"


def workspace_event_channel(owner_id: UUID | str) -> str:
    """The channel of the workspaces owned by ``owner_id``: ``workspace_owner:<uuid>``,
    the UUID lowercase and hyphenated whatever form it was given in."""
    owner = owner_id if isinstance(owner_id, UUID) else UUID(owner_id)
    return f"workspace_owner:{owner}"


class WorkspaceEventKind(str, Enum):
    """What changed (coder's ``WorkspaceEventKind``)."""

    STATE_CHANGE = "state_change"
    STATS_UPDATE = "stats_update"
    METADATA_UPDATE = "mtd_update"
    APP_HEALTH_UPDATE = "app_health"
    AGENT_LIFECYCLE_UPDATE = "agt_lifecycle_update"
    AGENT_CONNECTION_UPDATE = "agt_connection_update"
    AGENT_FIRST_LOGS = "agt_first_logs"
    AGENT_LOGS_OVERFLOW = "agt_logs_overflow"
    AGENT_TIMEOUT = "agt_timeout"
    AGENT_APP_STATUS_UPDATE = "agt_app_status_update"

    def __str__(self) -> str:
        return self.value


_KINDS: dict[str, WorkspaceEventKind] = {kind.value: kind for kind in WorkspaceEventKind}


@dataclass(frozen=True, slots=True)
class WorkspaceEvent:
    """One workspace event. As in Go, construction does not validate: a decoded message that
    fails ``validate()`` is still handed to callbacks as the partial payload.

    ``kind`` is a ``WorkspaceEventKind`` when it is one turnout knows, else the string as
    received (a newer coder may add kinds). ``agent_id`` is set for the agent kinds (except
    ``agt_timeout``).
    """

    kind: WorkspaceEventKind | str
    workspace_id: UUID
    agent_id: UUID | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str):
            raise TypeError(f"kind must be a str, not {type(self.kind).__name__}")
        if not isinstance(self.workspace_id, UUID):
            raise TypeError(f"workspace_id must be a UUID, not {type(self.workspace_id).__name__}")
        if self.agent_id is not None and not isinstance(self.agent_id, UUID):
            raise TypeError(f"agent_id must be a UUID or None, not {type(self.agent_id).__name__}")

    def validate(self) -> None:
        """Raises ``ValueError`` with coder's message for the first rule broken, checked in
        coder's order: the workspace id, the kind, the agent id of a lifecycle event."""
        if self.workspace_id == NIL_UUID:
            raise ValueError("workspaceID must be set")
        if not self.kind:
            raise ValueError("kind must be set")
        if self.kind == WorkspaceEventKind.AGENT_LIFECYCLE_UPDATE and self.agent_id is None:
            raise ValueError("agentID must be set for Agent events")

    def to_json(self) -> bytes:
        """The JSON object as Go writes it: ``kind``, ``workspace_id`` and, when set,
        ``agent_id``; UUIDs lowercase and hyphenated (orjson's form)."""
        data: dict[str, object] = {"kind": self.kind, "workspace_id": self.workspace_id}
        if self.agent_id is not None:
            data["agent_id"] = self.agent_id
        return go_escape(orjson.dumps(data))

    @classmethod
    def from_json(
        cls, data: bytes | bytearray | memoryview | str, *, validate: bool = True
    ) -> WorkspaceEvent:
        """Decodes a message as Go does (missing or null fields take their zero value:
        ``""``, the nil UUID, no agent), then validates it unless ``validate`` is false.

        Raises ``MalformedMessageError`` (a ``ValueError``) when the bytes do not decode, and
        ``ValueError`` from ``validate()``.
        """
        obj = decode_object(data, "workspace event")
        kind = str_field(obj, "kind")
        event = cls(
            kind=_KINDS.get(kind, kind),
            workspace_id=_optional_uuid(obj, "workspace_id") or NIL_UUID,
            agent_id=_optional_uuid(obj, "agent_id"),
        )
        if validate:
            event.validate()
        return event


def _optional_uuid(obj: dict[str, Any], key: str) -> UUID | None:
    value = obj.get(key)
    return None if value is None else parse_uuid(value, key)
