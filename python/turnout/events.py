"""The mesh event envelope and its typed constructors (jb-mesh ``events``).

An :class:`Event` is what travels on the bus under the subject ``"events." + type``. Its JSON
is byte-for-byte what Go's ``encoding/json`` writes for jb-mesh's struct::

    {"type":"tool.installed","node":"n1","timestamp":"2024-05-01T12:00:00.5Z","data":{...}}

Go's rules followed here: the four keys always present in declaration order (the struct has
no ``omitempty``), an unset timestamp written as the zero time ``0001-01-01T00:00:00Z``, a nil
map written as ``null``, map keys sorted, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped as
``\\u003c``-style sequences, and floats in Go's shortest form (``1`` for ``1.0``, ``1e-7``,
``1e+21``). Reading accepts what Go's decoder accepts for the known fields: keys matched
case-insensitively, unknown keys ignored, ``null`` meaning "unset", timestamps with 0 to 9
fractional digits and ``Z`` or an offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from turnout._go_json import dumps_map, go_escape
from turnout._json_object import type_name
from turnout._wire import format_time, is_zero_time, parse_time

__all__ = [
    "NODE_HEALTH",
    "NODE_JOINED",
    "NODE_LEFT",
    "SUBJECT_PREFIX",
    "TOOL_CONFIGURED",
    "TOOL_CRASHED",
    "TOOL_INSTALLED",
    "TOOL_REMOVED",
    "TOOL_STARTED",
    "TOOL_STOPPED",
    "USER_PREFIX",
    "Event",
    "EventDecodeError",
    "EventEncodeError",
    "node_health",
    "node_joined",
    "node_left",
    "tool_configured",
    "tool_crashed",
    "tool_installed",
    "tool_removed",
    "tool_started",
    "tool_stopped",
    "user_event",
]

#: Every event travels on ``SUBJECT_PREFIX + event.type``.
SUBJECT_PREFIX = "events."

TOOL_INSTALLED = "tool.installed"
TOOL_CONFIGURED = "tool.configured"
TOOL_STARTED = "tool.started"
TOOL_STOPPED = "tool.stopped"
TOOL_CRASHED = "tool.crashed"
TOOL_REMOVED = "tool.removed"
NODE_JOINED = "node.joined"
NODE_LEFT = "node.left"
NODE_HEALTH = "node.health"
#: User events have the type ``USER_PREFIX + topic``.
USER_PREFIX = "user."

_ZERO_TIME_TEXT = "0001-01-01T00:00:00Z"

_FIELDS = frozenset(("type", "node", "timestamp", "data"))


class EventDecodeError(ValueError):
    """Bytes that are not an event: malformed JSON, a field of the wrong type, or no type."""


class EventEncodeError(ValueError):
    """An event that Go could not marshal either (NaN, infinities, non-string map keys...)."""


@dataclass(slots=True)
class Event:
    """The envelope of every mesh event.

    ``timestamp`` None stands for Go's zero time (unset); ``data`` None is Go's nil map. A
    timestamp read with more than microsecond precision is a
    :class:`turnout._wire.PreciseDatetime` and is written back with all its digits.
    """

    type: str
    node: str = ""
    timestamp: datetime | None = None
    data: dict[str, Any] | None = None

    @property
    def subject(self) -> str:
        """The subject this event is published on."""
        return SUBJECT_PREFIX + self.type

    def to_json(self) -> bytes:
        """The event as Go's ``json.Marshal`` writes it (see the module docstring)."""
        if not isinstance(self.type, str) or not isinstance(self.node, str):
            raise EventEncodeError("event type and node must be str")
        if self.timestamp is None:
            timestamp = _ZERO_TIME_TEXT
        elif isinstance(self.timestamp, datetime):
            timestamp = format_time(self.timestamp)
        else:
            raise EventEncodeError(
                f"event timestamp must be a datetime, not {type(self.timestamp).__name__}"
            )
        if self.data is None:
            data: orjson.Fragment | None = None
        elif isinstance(self.data, dict):
            data = orjson.Fragment(_dump_go_value(self.data))
        else:
            raise EventEncodeError(f"event data must be a dict, not {type(self.data).__name__}")
        try:
            out = orjson.dumps(
                {"type": self.type, "node": self.node, "timestamp": timestamp, "data": data}
            )
        except TypeError as exc:
            raise EventEncodeError(f"cannot encode event: {exc}") from exc
        return go_escape(out)

    @classmethod
    def from_json(cls, raw: bytes | bytearray | memoryview | str) -> Event:
        """Decodes an event as Go's ``json.Unmarshal`` would; raises
        :class:`EventDecodeError` on malformed JSON, wrong field types or a missing type."""
        if not isinstance(raw, (bytes, bytearray, memoryview, str)):
            raise TypeError(f"event JSON must be bytes or str, not {type(raw).__name__}")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise EventDecodeError(f"malformed event JSON: {exc}") from exc
        return _event_from_doc(doc)


def _event_from_doc(doc: object) -> Event:
    if not isinstance(doc, dict):
        raise EventDecodeError(f"event JSON: expected an object, not {type_name(doc)}")
    fields = _known_fields(doc)
    kind = fields.get("type")
    if kind is None or kind == "":
        raise EventDecodeError("event has no type")
    if not isinstance(kind, str):
        raise EventDecodeError(f"event type: expected a string, not {type_name(kind)}")
    node = fields.get("node")
    if node is None:
        node = ""
    elif not isinstance(node, str):
        raise EventDecodeError(f"event node: expected a string, not {type_name(node)}")
    stamp = fields.get("timestamp")
    timestamp: datetime | None = None
    if stamp is not None:
        if not isinstance(stamp, str):
            raise EventDecodeError(f"event timestamp: expected a string, not {type_name(stamp)}")
        try:
            timestamp = parse_time(stamp)
        except ValueError as exc:
            raise EventDecodeError(f"bad event timestamp: {exc}") from exc
        if is_zero_time(timestamp):
            timestamp = None
    data = fields.get("data")
    if data is not None and not isinstance(data, dict):
        raise EventDecodeError(f"event data: expected an object, not {type_name(data)}")
    return Event(kind, node, timestamp, data)


def _known_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """The envelope fields of a decoded object, keys matched as Go matches struct fields:
    exactly or case-insensitively, the last occurrence winning."""
    if doc.keys() <= _FIELDS:
        return doc  # the common case: exactly what an encoder wrote
    fields: dict[str, Any] = {}
    for key, value in doc.items():
        folded = key if key in _FIELDS else key.casefold()
        if folded in _FIELDS:
            fields[folded] = value
    return fields


def _dump_go_value(value: dict[str, Any]) -> bytes:
    """A ``map[string]interface{}`` as Go writes it (see :func:`turnout._go_json.dumps_map`)."""
    try:
        return dumps_map(value)
    except (TypeError, ValueError) as exc:
        raise EventEncodeError(f"cannot encode event data: {exc}") from exc


def tool_installed(node: str, tool: str, version: str) -> Event:
    """A ``tool.installed`` event: data ``{tool, version}``."""
    return Event(TOOL_INSTALLED, node, None, {"tool": tool, "version": version})


def tool_configured(node: str, tool: str, config: dict[str, Any] | None) -> Event:
    """A ``tool.configured`` event: data ``{tool, config}``."""
    return Event(TOOL_CONFIGURED, node, None, {"tool": tool, "config": config})


def tool_started(node: str, tool: str) -> Event:
    """A ``tool.started`` event: data ``{tool}``."""
    return Event(TOOL_STARTED, node, None, {"tool": tool})


def tool_stopped(node: str, tool: str, reason: str) -> Event:
    """A ``tool.stopped`` event: data ``{tool, reason}``."""
    return Event(TOOL_STOPPED, node, None, {"tool": tool, "reason": reason})


def tool_crashed(node: str, tool: str, err: BaseException | str, restart_count: int) -> Event:
    """A ``tool.crashed`` event: data ``{tool, error, restart_count}``, error = ``str(err)``
    (Go's ``err.Error()``)."""
    return Event(
        TOOL_CRASHED,
        node,
        None,
        {"tool": tool, "error": str(err), "restart_count": restart_count},
    )


def tool_removed(node: str, tool: str) -> Event:
    """A ``tool.removed`` event: data ``{tool}``."""
    return Event(TOOL_REMOVED, node, None, {"tool": tool})


def node_joined(node: str, capabilities: dict[str, Any] | None) -> Event:
    """A ``node.joined`` event: data ``{capabilities}``."""
    return Event(NODE_JOINED, node, None, {"capabilities": capabilities})


def node_left(node: str, reason: str) -> Event:
    """A ``node.left`` event: data ``{reason}``."""
    return Event(NODE_LEFT, node, None, {"reason": reason})


def node_health(node: str, status: str, resources: dict[str, Any] | None) -> Event:
    """A ``node.health`` event: data ``{status, resources}``."""
    return Event(NODE_HEALTH, node, None, {"status": status, "resources": resources})


def user_event(node: str, topic: str, data: dict[str, Any] | None) -> Event:
    """A user event of type ``user.<topic>`` carrying ``data`` as given."""
    return Event(USER_PREFIX + topic, node, None, data)
