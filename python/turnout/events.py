"""The mesh event envelope and its typed constructors (jb-mesh ``events``).

An :class:`Event` is what travels on the bus under the subject ``"events." + type``. Its JSON
is byte-for-byte what Go's ``encoding/json`` writes for jb-mesh's struct::

    {"type":"tool.installed","node":"n1","timestamp":"2024-05-01T12:00:00.5Z","data":{...}}

Go's rules followed here: the four keys always present in declaration order (the struct has
no ``omitempty``), an unset timestamp written as the zero time ``0001-01-01T00:00:00Z``, a nil
map written as ``null``, map keys sorted, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped as
``\\u003c``-style sequences, and floats in Go's shortest form (``1`` for ``1.0``, ``1e-7``,
``1e+21``). Reading accepts what Go's decoder accepts for the known fields: keys matched
case-insensitively (the last one winning), unknown keys ignored, ``null`` leaving a field
unset, timestamps as Go's ``time.Time`` reads them (a comma before the fraction, any number
of fraction digits, offsets up to 24 hours, year 0000); numbers in ``data`` come back as
``int`` when integral and within 64 bits, else ``float``, and ``-0`` stays ``-0.0``.

:class:`Event` is immutable (a Rust type): ``event.replace(node="n2")`` makes a changed copy.
Its JSON is written and read in Rust.
"""

from __future__ import annotations

from typing import Any

import turnout._wire  # noqa: F401  (hands Rust the nanosecond datetime type)
from turnout._core import Event, EventDecodeError, EventEncodeError

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
