"""Replaying the coordination events a hub's watchers missed while its NATS bus
reconnected, sans I/O. :mod:`turnout.ws.fleet` moves the bytes; tests drive this directly.

Core NATS keeps nothing for a subscriber that is not there: while a hub's bus reconnects
to another server of the cluster, the events the other hubs publish do not reach it, and
what the hub itself had written to the dying server's connection never reaches them.
So every hub keeps the coordination events it published lately (:class:`EventRing`, the
exact bytes), and a hub whose bus reconnected

- asks every other hub for the events it published during the outage plus a margin
  (``turnout.fleet.replay.<hub>``, request/reply: :func:`replay_request` in,
  :func:`replay_reply` out), and
- tells them all (``turnout.fleet.resync``, with a reply subject): each answers there at
  once with its own events of the stretch (the asking hub may have stopped listing it
  during a long outage), and asks the hub for its events of the stretch in turn.

The window is a duration measured on the asking hub's clock and applied to the answering
hub's, so the hubs' clocks need not agree. A replay overlaps what arrived live on
purpose; the receiving hub hands its watchers each payload once (:class:`SeenWindow`),
whichever copy comes first.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson

__all__ = [
    "REPLAY_MARGIN",
    "REPLAY_MAX_BYTES",
    "REPLAY_MAX_SECONDS",
    "REPLAY_PREFIX",
    "REPLAY_RING_EVENTS",
    "RESYNC_SUBJECT",
    "SEEN_WINDOW",
    "EventRing",
    "SeenWindow",
    "parse_replay_reply",
    "parse_replay_request",
    "replay_reply",
    "replay_request",
    "replay_subject",
]

REPLAY_PREFIX = "turnout.fleet.replay."
RESYNC_SUBJECT = "turnout.fleet.resync"
#: The most coordination events a hub keeps for the others to replay.
REPLAY_RING_EVENTS = 8192
#: The longest stretch of the past one replay covers, in seconds.
REPLAY_MAX_SECONDS = 30.0
#: Seconds added to a replay's window: the time a lost connection takes to be noticed
#: before the outage is measured, and the request's own travel.
REPLAY_MARGIN = 2.0
#: The most bytes of events one replay reply carries (NATS refuses payloads over 1 MiB
#: by default); the oldest are left out beyond it.
REPLAY_MAX_BYTES = 512 * 1024
#: How many coordination events a hub remembers having given its watchers, to drop the
#: second copy of one (replayed and live).
SEEN_WINDOW = 16384


def replay_subject(hub_id: str) -> str:
    """Where ``hub_id`` answers replay requests."""
    return REPLAY_PREFIX + hub_id


class EventRing:
    """The last ``limit`` events this hub published, with when (on its own clock)."""

    def __init__(self, limit: int = REPLAY_RING_EVENTS) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, not {limit}")
        self._events: deque[tuple[float, str, bytes]] = deque(maxlen=limit)

    def __len__(self) -> int:
        return len(self._events)

    def record(self, now: float, subject: str, data: bytes) -> None:
        self._events.append((now, subject, data))

    def since(
        self, now: float, seconds: float, max_bytes: int = REPLAY_MAX_BYTES
    ) -> tuple[list[tuple[str, bytes]], bool]:
        """The events of the last ``seconds`` (at most :data:`REPLAY_MAX_SECONDS`),
        oldest first, and whether some of that stretch is left out: older than the
        limit of seconds, pushed out of the ring, or beyond ``max_bytes``."""
        truncated = seconds > REPLAY_MAX_SECONDS
        cutoff = now - min(seconds, REPLAY_MAX_SECONDS)
        events = self._events
        picked: list[tuple[str, bytes]] = []
        size = 0
        for index in range(len(events) - 1, -1, -1):
            at, subject, data = events[index]
            if at < cutoff:
                break
            size += len(subject) + len(data)
            if size > max_bytes:
                truncated = True
                break
            picked.append((subject, data))
        else:
            # Every kept event is in the window: a full ring may have let some go.
            if len(events) == events.maxlen:
                truncated = True
        picked.reverse()
        return picked, truncated


class SeenWindow:
    """The payloads of the last ``limit`` events handed over, each with the copy that
    was: :meth:`admit` lets that copy through again (one event matching several
    patterns is offered once per pattern) and refuses any other copy of the same bytes."""

    def __init__(self, limit: int = SEEN_WINDOW) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, not {limit}")
        self.limit = limit
        self._seen: dict[bytes, object] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, data: bytes, copy: object) -> bool:
        seen = self._seen
        first = seen.get(data)
        if first is None:
            seen[data] = copy
            if len(seen) > self.limit:
                del seen[next(iter(seen))]  # the oldest: dicts keep insertion order
            return True
        return first is copy


def replay_request(hub_id: str, seconds: float) -> bytes:
    """Asks for the events of the last ``seconds``; ``hub_id`` is the asking hub."""
    return orjson.dumps({"hub": hub_id, "seconds": seconds})


def parse_replay_request(data: bytes) -> tuple[str, float]:
    """The asking hub and the seconds of a :func:`replay_request` (also the document of
    a resync). Raises :class:`ValueError` when it is not one."""
    document = _object(data)
    hub_id, seconds = document.get("hub"), document.get("seconds")
    if not isinstance(hub_id, str) or not hub_id:
        raise ValueError("'hub' must be a non-empty string")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ValueError("'seconds' must be a number >= 0")
    return hub_id, float(seconds)


def replay_reply(events: list[tuple[str, bytes]], truncated: bool) -> bytes:
    return orjson.dumps(
        {
            "events": [[subject, data.decode("utf-8", "replace")] for subject, data in events],
            "truncated": truncated,
        }
    )


def parse_replay_reply(data: bytes) -> tuple[list[tuple[str, bytes]], bool]:
    """The events (subject, payload) of a :func:`replay_reply` and whether it is
    truncated. Raises :class:`ValueError` when it is not one."""
    document = _object(data)
    entries = document.get("events")
    if not isinstance(entries, list):
        raise ValueError("'events' must be a list")
    events = []
    for entry in entries:
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or not all(isinstance(part, str) for part in entry)
        ):
            raise ValueError("each event must be [subject, payload]")
        events.append((entry[0], entry[1].encode()))
    return events, document.get("truncated") is True


def _object(data: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document
