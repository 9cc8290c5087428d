"""The coordination protocol's wire format: the when-v3 coordinator's ``WSMessage`` and its
typed payloads, byte-compatible with the Go originals.

A message is one JSON object per WebSocket text frame::

    {"id":"msg-k3v9q0x1m2ab-7","type":"pause","workflow_id":"wf-1",
     "timestamp":"2025-01-02T03:04:05.123456789Z","payload":{"reason":"maintenance","workflow_id":"wf-1"}}

- Keys in Go's struct order; ``workflow_id`` and ``payload`` left out when empty; the
  timestamp in RFC 3339 with nanoseconds, trailing zeros trimmed (a missing one reads as
  Go's zero time).
- A payload is a JSON object. Go sets one by round-tripping a typed struct through a
  ``map[string]interface{}``, so its keys come out sorted, ``omitempty`` fields are absent
  when zero, nil slices are ``null`` and numbers are float64 (``50``, not ``50.0``). The
  payload dataclasses here (:class:`PausePayload`, ...) carry Go's keys and ``omitempty``
  rules; ``WSMessage.with_payload(type, payload)`` and ``msg.payload_as(PayloadClass)``
  convert.
- A log entry (:class:`LogEntry`, :class:`LogLevel`) is defined here once: the Rust
  frame writer reads these very fields, and :mod:`turnout.logs` forwards them.
- Strings are escaped as Go does (``<``, ``>``, ``&``, U+2028, U+2029 as ``\\u`` escapes).

**Unknown message types** are read, not refused: ``WSMessage.parse`` keeps a type it does
not know as a plain ``str`` (``msg.known_type`` is False), so a peer speaking a newer
protocol version does not look like a broken one. What to do with such a message is the
receiver's call: the hub answers it with an ``error`` message, the client passes it to
its handlers. Everything else malformed raises :class:`ProtocolError`.

This module only reads and writes messages; the two ends' behaviour is in
:mod:`turnout.coordination`.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any, TypeVar

import orjson

from turnout import _core
from turnout._go_json import dumps_map, go_escape, log_field_text
from turnout._go_payload import GoPayload, Payload, ProtocolError, json_tag, json_type_name
from turnout._message_ids import MESSAGE_ID_PATTERN, new_message_id
from turnout._wire import ZERO_TIME, format_time, parse_time, with_nanoseconds
from turnout.phases import Phase

__all__ = [
    "HUB_TO_SERVICE",
    "MESSAGE_ID_PATTERN",
    "SERVICE_TO_HUB",
    "CancelPayload",
    "CheckpointPayload",
    "ErrorPayload",
    "LogBatchPayload",
    "LogEntry",
    "LogLevel",
    "MessageType",
    "PausePayload",
    "Payload",
    "PhaseChangedPayload",
    "ProgressPayload",
    "ProtocolError",
    "RegisterPayload",
    "RegisteredPayload",
    "ResumePayload",
    "StatusPayload",
    "StatusResponsePayload",
    "WSMessage",
    "WorkflowCreatedPayload",
    "new_message_id",
]


class LogLevel(str, Enum):
    """The levels when-v3 knows (``warn``, not ``warning``)."""

    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"
    FATAL = "fatal"

    def __str__(self) -> str:
        return self.value


@dataclass(slots=True)
class LogEntry(GoPayload):
    """One log entry (when-v3's ``LogEntry``). ``level`` is a :class:`LogLevel` or its
    value; ``timestamp`` None means "stamp it when it is sent". Mutable and unvalidated,
    like the Go struct, so that building one per log record stays cheap; an unknown level
    is refused when the entry is given to a forwarder."""

    timestamp: datetime | None = field(default=None, metadata=json_tag("timestamp"))
    level: LogLevel | str = field(default=LogLevel.INFO, metadata=json_tag("level"))
    message: str = field(default="", metadata=json_tag("message"))
    trace_id: str = field(default="", metadata=json_tag("trace_id,omitempty"))
    span_id: str = field(default="", metadata=json_tag("span_id,omitempty"))
    workflow_id: str = field(default="", metadata=json_tag("workflow_id,omitempty"))
    action_id: str = field(default="", metadata=json_tag("action_id,omitempty"))
    correlation_id: str = field(default="", metadata=json_tag("correlation_id,omitempty"))
    fields: dict[str, Any] | None = field(default=None, metadata=json_tag("fields,omitempty"))
    source_file: str = field(default="", metadata=json_tag("source_file,omitempty"))
    source_line: int = field(default=0, metadata=json_tag("source_line,omitempty"))

    def to_json(self) -> bytes:
        """The entry as Go marshals the struct: keys in field order, empty ones left out,
        ``fields`` with sorted keys and Go's number spelling."""
        document = self.to_payload()
        if "fields" in document:
            document["fields"] = orjson.Fragment(dumps_map(document["fields"]))
        return go_escape(orjson.dumps(document))

    @classmethod
    def from_json(cls, data: bytes | bytearray | memoryview | str) -> LogEntry:
        """Reads an entry as Go would (missing keys are zero values; a missing timestamp
        is the zero time); ``ProtocolError`` on anything malformed."""
        try:
            document = orjson.loads(data)
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise ProtocolError(f"log entry: invalid JSON: {exc}") from None
        if not isinstance(document, dict):
            raise ProtocolError(f"log entry: expected an object, not {json_type_name(document)}")
        return cls.from_payload(document)


# The Rust log batcher reads entries and levels, and writes odd field values, with these:
# handed over once.
_core._register_logs(LogEntry, LogLevel, log_field_text)


class MessageType(str, Enum):
    """What a message is; the value is its wire form."""

    # service -> hub
    REGISTER = "register"
    WORKFLOW_CREATED = "workflow_created"
    PHASE_CHANGED = "phase_changed"
    CHECKPOINT = "checkpoint"
    ERROR = "error"
    STATUS_RESPONSE = "status_response"
    PONG = "pong"
    PROGRESS = "progress"
    LOG = "log"
    LOG_BATCH = "log_batch"
    # hub -> service
    REGISTERED = "registered"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    STATUS = "status"
    PING = "ping"

    def __str__(self) -> str:
        return self.value


#: The types a service sends to the hub.
SERVICE_TO_HUB = frozenset(
    {
        MessageType.REGISTER,
        MessageType.WORKFLOW_CREATED,
        MessageType.PHASE_CHANGED,
        MessageType.CHECKPOINT,
        MessageType.ERROR,
        MessageType.STATUS_RESPONSE,
        MessageType.PONG,
        MessageType.PROGRESS,
        MessageType.LOG,
        MessageType.LOG_BATCH,
    }
)
#: The types the hub sends to a service.
HUB_TO_SERVICE = frozenset(MessageType) - SERVICE_TO_HUB

_TYPES = {t.value: t for t in MessageType}

P = TypeVar("P")


def _now() -> datetime:
    """Now in UTC, to the nanosecond as Go's ``time.Now()``."""
    nanos = time.time_ns()
    seconds, below = divmod(nanos, 1_000_000_000)
    micro, nano = divmod(below, 1_000)
    base = datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=micro)
    return with_nanoseconds(base, nano)


@dataclass(frozen=True, slots=True)
class WSMessage:
    """One coordination message. ``type`` is a :class:`MessageType`, or the string as
    received when it is not one (see ``known_type``); ``payload`` is the JSON object as a
    dict (None or empty: no payload)."""

    id: str
    type: MessageType | str
    workflow_id: str = ""
    timestamp: datetime = field(default_factory=_now)
    payload: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.type, MessageType):
            if not isinstance(self.type, str):
                raise TypeError(f"type must be a MessageType or str, not {self.type!r}")
            if self.type in _TYPES:
                object.__setattr__(self, "type", _TYPES[self.type])

    @classmethod
    def new(cls, type: MessageType | str, workflow_id: str = "") -> WSMessage:
        """A message with a fresh id, stamped now (Go's ``NewMessageWithWorkflow``)."""
        return cls(new_message_id(), type, workflow_id)

    @classmethod
    def with_payload(
        cls,
        type: MessageType | str,
        payload: Payload,
        workflow_id: str | None = None,
        *,
        id: str | None = None,
    ) -> WSMessage:
        """A message carrying ``payload`` (a payload dataclass or a :class:`LogEntry`).
        ``workflow_id`` None takes the payload's own ``workflow_id``, as the Go senders
        set both; ``id`` None is a fresh id (give the request's id to answer it)."""
        if workflow_id is None:
            own = getattr(payload, "workflow_id", "")
            workflow_id = own if isinstance(own, str) else ""
        return cls(id or new_message_id(), type, workflow_id, _now(), payload.to_payload())

    @property
    def known_type(self) -> bool:
        """Whether ``type`` is one of the 16 protocol types."""
        return isinstance(self.type, MessageType)

    def payload_as(self, cls: builtins.type[P]) -> P:
        """The payload read as ``cls`` (a payload dataclass or :class:`LogEntry`), as Go's
        ``PayloadToStruct`` reads it: missing keys are zero values. ``ProtocolError`` when
        a value has the wrong type."""
        reader = getattr(cls, "from_payload", None)
        if reader is None:
            raise TypeError(f"{cls.__name__} is not a payload class (no from_payload)")
        result: P = reader(self.payload or {})
        return result

    def document(self) -> dict[str, Any]:
        """The JSON object :meth:`to_json` writes, as a dict: ``id``, ``type``,
        ``workflow_id`` (when not empty), ``timestamp`` (RFC 3339 text), ``payload`` (when
        not empty). What the hub republishes a message as."""
        document: dict[str, Any] = {"id": self.id, "type": str(self.type)}
        if self.workflow_id:
            document["workflow_id"] = self.workflow_id
        document["timestamp"] = format_time(self.timestamp)
        if self.payload:
            document["payload"] = self.payload
        return document

    def to_json(self) -> bytes:
        """The message as Go's ``WSMessage.JSON()`` writes it (see the module docstring).
        ``ValueError`` for a NaN or infinite number in the payload, ``TypeError`` for a
        value JSON cannot carry."""
        document = self.document()
        if self.payload:
            document["payload"] = orjson.Fragment(dumps_map(self.payload))
        return go_escape(orjson.dumps(document))

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview | str) -> WSMessage:
        """Reads one message. ``ProtocolError`` when it is not a JSON object, ``id`` or
        ``type`` is missing or empty, ``workflow_id`` is not a string, the timestamp is not
        RFC 3339, or the payload is not an object. Unknown keys are ignored, as in Go."""
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"message: invalid JSON: {exc}") from None
        except TypeError:
            raise ProtocolError(f"message: expected JSON text, not {type(data).__name__}") from None
        if not isinstance(document, dict):
            raise ProtocolError(f"message: expected an object, not {json_type_name(document)}")
        message_id = _required_str(document, "id")
        kind = _required_str(document, "type")
        workflow_id = document.get("workflow_id")
        if workflow_id is None:
            workflow_id = ""
        elif not isinstance(workflow_id, str):
            raise ProtocolError(
                f"workflow_id: expected a string, not {json_type_name(workflow_id)}"
            )
        stamp = document.get("timestamp")
        if stamp is None:
            timestamp = ZERO_TIME
        elif isinstance(stamp, str):
            try:
                timestamp = parse_time(stamp)
            except ValueError as exc:
                raise ProtocolError(f"timestamp: {exc}") from None
        else:
            raise ProtocolError(f"timestamp: expected a string, not {json_type_name(stamp)}")
        payload = document.get("payload")
        if payload is not None and not isinstance(payload, dict):
            raise ProtocolError(f"payload: expected an object, not {json_type_name(payload)}")
        return cls(message_id, _TYPES.get(kind, kind), workflow_id, timestamp, payload)


def _required_str(document: Mapping[str, Any], key: str) -> str:
    value = document.get(key)
    if value is None or value == "":
        raise ProtocolError(f"{key}: missing")
    if not isinstance(value, str):
        raise ProtocolError(f"{key}: expected a string, not {json_type_name(value)}")
    return value


# --- payloads (Go's field names, JSON keys and omitempty rules) ----------------------------


@dataclass(frozen=True, slots=True)
class RegisterPayload(GoPayload):
    """Service → hub, first message on a connection."""

    service_name: str = field(default="", metadata=json_tag("service_name"))
    service_id: str = field(default="", metadata=json_tag("service_id,omitempty"))
    instance_id: str = field(default="", metadata=json_tag("instance_id,omitempty"))
    capabilities: tuple[str, ...] = field(default=(), metadata=json_tag("capabilities"))
    version: str = field(default="", metadata=json_tag("version,omitempty"))
    protocol_version: str = field(default="", metadata=json_tag("protocol_version,omitempty"))
    schema_version: int = field(default=0, metadata=json_tag("schema_version,omitempty"))


@dataclass(frozen=True, slots=True)
class RegisteredPayload(GoPayload):
    """Hub → service, the answer to ``register``."""

    service_id: str = field(default="", metadata=json_tag("service_id"))
    instance_id: str = field(default="", metadata=json_tag("instance_id,omitempty"))
    message: str = field(default="", metadata=json_tag("message,omitempty"))
    protocol_version: str = field(default="", metadata=json_tag("protocol_version,omitempty"))
    hub_protocol_version: str = field(
        default="", metadata=json_tag("hub_protocol_version,omitempty")
    )


@dataclass(frozen=True, slots=True)
class PhaseChangedPayload(GoPayload):
    """Service → hub: a workflow moved from one phase to another (keys ``from``/``to``)."""

    workflow_id: str = field(default="", metadata=json_tag("workflow_id"))
    from_phase: Phase | str = field(default="", metadata=json_tag("from"))
    to_phase: Phase | str = field(default="", metadata=json_tag("to"))
    checkpoint_id: str = field(default="", metadata=json_tag("checkpoint_id,omitempty"))
    reason: str = field(default="", metadata=json_tag("reason,omitempty"))


@dataclass(frozen=True, slots=True)
class CheckpointPayload(GoPayload):
    """Service → hub: a checkpoint was taken."""

    workflow_id: str = field(default="", metadata=json_tag("workflow_id"))
    checkpoint_id: str = field(default="", metadata=json_tag("checkpoint_id"))
    reason: str = field(default="", metadata=json_tag("reason"))
    state: dict[str, Any] | None = field(default=None, metadata=json_tag("state,omitempty"))


@dataclass(frozen=True, slots=True)
class ErrorPayload(GoPayload):
    """Service → hub (and hub → service, answering a message it cannot take): an error."""

    workflow_id: str = field(default="", metadata=json_tag("workflow_id"))
    error: str = field(default="", metadata=json_tag("error"))
    recoverable: bool = field(default=False, metadata=json_tag("recoverable"))
    action_id: str = field(default="", metadata=json_tag("action_id,omitempty"))


@dataclass(frozen=True, slots=True)
class ProgressPayload(GoPayload):
    """Service → hub: how far a workflow or action has come."""

    workflow_id: str = field(default="", metadata=json_tag("workflow_id"))
    action_id: str = field(default="", metadata=json_tag("action_id,omitempty"))
    percent: float = field(default=0.0, metadata=json_tag("percent"))
    stage: str = field(default="", metadata=json_tag("stage,omitempty"))
    message: str = field(default="", metadata=json_tag("message,omitempty"))
    current_item: int = field(default=0, metadata=json_tag("current_item,omitempty"))
    total_items: int = field(default=0, metadata=json_tag("total_items,omitempty"))


@dataclass(frozen=True, slots=True)
class PausePayload(GoPayload):
    """Hub → service: pause a workflow."""

    workflow_id: str = field(default="", metadata=json_tag("workflow_id"))
    reason: str = field(default="", metadata=json_tag("reason,omitempty"))


@dataclass(frozen=True, slots=True)
class ResumePayload(GoPayload):
    """Hub → service: resume a paused workflow, optionally from a checkpoint."""

    workflow_id: str = field(default="", metadata=json_tag("workflow_id"))
    from_checkpoint: str = field(default="", metadata=json_tag("from_checkpoint,omitempty"))


@dataclass(frozen=True, slots=True)
class CancelPayload(GoPayload):
    """Hub → service: cancel a workflow (``force``: do not wait for it to wind down)."""

    workflow_id: str = field(default="", metadata=json_tag("workflow_id"))
    reason: str = field(default="", metadata=json_tag("reason,omitempty"))
    force: bool = field(default=False, metadata=json_tag("force,omitempty"))


@dataclass(frozen=True, slots=True)
class StatusPayload(GoPayload):
    """Hub → service: report a workflow's status."""

    workflow_id: str = field(default="", metadata=json_tag("workflow_id"))


@dataclass(frozen=True, slots=True)
class StatusResponsePayload(GoPayload):
    """Service → hub, the answer to ``status`` (same message id)."""

    workflow_id: str = field(default="", metadata=json_tag("workflow_id"))
    phase: Phase | str = field(default="", metadata=json_tag("phase"))
    progress: float = field(default=0.0, metadata=json_tag("progress"))
    current_action: str = field(default="", metadata=json_tag("current_action,omitempty"))
    message: str = field(default="", metadata=json_tag("message,omitempty"))


@dataclass(frozen=True, slots=True)
class WorkflowCreatedPayload(GoPayload):
    """Service → hub: a (child) workflow was created."""

    workflow_id: str = field(default="", metadata=json_tag("workflow_id"))
    parent_workflow_id: str = field(default="", metadata=json_tag("parent_workflow_id,omitempty"))
    root_workflow_id: str = field(default="", metadata=json_tag("root_workflow_id,omitempty"))
    action_id: str = field(default="", metadata=json_tag("action_id,omitempty"))
    action_type: str = field(default="", metadata=json_tag("action_type,omitempty"))


@dataclass(frozen=True, slots=True)
class LogBatchPayload(GoPayload):
    """Service → hub: many log entries (``{"logs": [...]}``; a single ``log`` message's
    payload is the entry itself, ``WSMessage.with_payload(MessageType.LOG, entry)``)."""

    logs: tuple[LogEntry, ...] = field(default=(), metadata=json_tag("logs"))
