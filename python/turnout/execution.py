"""Workflow execution events (Lacquer's ``events`` package) and the listeners that follow a
run: one that just drains, one that prints per-step progress, one that publishes on a bus.

``ExecutionEvent`` JSON is Lacquer's: ``type``, ``timestamp`` and ``run_id`` always; every
other field omitted when empty (zero, ``""``, no metadata, no diagnostics); ``duration`` as
integer nanoseconds (Go's ``time.Duration``), and nanoseconds that a ``timedelta`` cannot
hold are kept when an event read from JSON is written back.

A listener reads a source of events in a task of its own, started by
``start_listening(events)`` (on the running event loop) and cancelled by
``stop_listening()``. The source is an async iterable (its end ends the listening) or an
``asyncio.Queue`` (a ``None`` item ends it; each item is marked done). Lacquer's
``NoopListener`` never reads its channel, so a run with more events than the channel's
buffer (100) hangs; turnout's drains whatever it is given, so a producer never waits on it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, Protocol, TextIO

import orjson

from turnout._core import validate_subject
from turnout._duration_text import go_duration_text, round_duration_ns
from turnout._go_json import dumps_map, go_escape
from turnout._json_object import (
    MalformedMessageError,
    decode_object,
    int_field,
    str_field,
    type_name,
)
from turnout._wire import ZERO_TIME, duration_from_ns, duration_to_ns, format_time, parse_time

__all__ = [
    "BusListener",
    "EventSource",
    "ExecutionEvent",
    "ExecutionEventType",
    "Listener",
    "ListenerBase",
    "MalformedMessageError",
    "NoopListener",
    "ProgressListener",
    "PublishingBus",
    "describe",
    "execution_subject",
]

_log = logging.getLogger("turnout.execution")


class ExecutionEventType(str, Enum):
    """What happened in a workflow run."""

    WORKFLOW_STARTED = "workflow_started"
    WORKFLOW_COMPLETED = "workflow_completed"
    WORKFLOW_FAILED = "workflow_failed"
    STEP_STARTED = "step_started"
    STEP_PROGRESS = "step_progress"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    STEP_SKIPPED = "step_skipped"
    STEP_RETRYING = "step_retrying"
    STEP_ACTION_STARTED = "step_action_started"
    STEP_ACTION_COMPLETED = "step_action_completed"
    STEP_ACTION_FAILED = "step_action_failed"

    def __str__(self) -> str:
        return self.value


_TYPES: dict[str, ExecutionEventType] = {t.value: t for t in ExecutionEventType}


class _WireDuration(timedelta):
    """A ``timedelta`` read from a Go duration, remembering the nanoseconds (-999..999)
    below its microsecond so that writing it back gives the same integer. Like
    ``turnout._wire.PreciseDatetime``, equality counts those nanoseconds; arithmetic gives
    plain ``timedelta`` results."""

    __slots__ = ("extra_ns",)
    extra_ns: int

    def __new__(cls, nanoseconds: int) -> _WireDuration:
        whole = duration_from_ns(nanoseconds)
        self = super().__new__(cls, whole.days, whole.seconds, whole.microseconds)
        self.extra_ns = nanoseconds - duration_to_ns(whole)
        return self

    def __reduce__(self) -> tuple[type[_WireDuration], tuple[int]]:
        return (type(self), (_duration_ns(self),))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, timedelta):
            return _duration_ns(self) == _duration_ns(other)
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        # timedelta's own __ne__ would compare to the microsecond only.
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(_duration_ns(self))


def _duration_from_wire(nanoseconds: int) -> timedelta:
    """A plain ``timedelta`` when it holds the value exactly, else a ``_WireDuration``."""
    if nanoseconds % 1000:
        return _WireDuration(nanoseconds)
    return duration_from_ns(nanoseconds)


def _duration_ns(value: timedelta) -> int:
    return duration_to_ns(value) + getattr(value, "extra_ns", 0)


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class ExecutionEvent:
    """One execution event. ``type`` is an ``ExecutionEventType`` when turnout knows it,
    else the string as received. ``timestamp`` defaults to now (UTC); ``step_index`` is
    zero-based and ``attempt`` one-based."""

    type: ExecutionEventType | str
    timestamp: datetime = field(default_factory=_now)
    run_id: str = ""
    step_id: str = ""
    action_id: str = ""
    step_index: int = 0
    duration: timedelta = timedelta(0)
    error: str = ""
    attempt: int = 0
    text: str = ""
    metadata: dict[str, Any] | None = None
    diagnostics: list[str] | None = None

    def to_json(self) -> bytes:
        """Lacquer's JSON, byte for byte as Go writes it (see the module docstring; metadata
        as Go writes a map: keys sorted, floats and times in Go's spelling). ``TypeError``
        if metadata holds something JSON cannot carry, ``ValueError`` for NaN or an
        infinity."""
        data: dict[str, Any] = {
            "type": self.type,
            "timestamp": format_time(self.timestamp),
            "run_id": self.run_id,
        }
        if self.step_id:
            data["step_id"] = self.step_id
        if self.action_id:
            data["action_id"] = self.action_id
        if self.step_index:
            data["step_index"] = self.step_index
        duration = _duration_ns(self.duration)
        if duration:
            data["duration"] = duration
        if self.error:
            data["error"] = self.error
        if self.attempt:
            data["attempt"] = self.attempt
        if self.text:
            data["text"] = self.text
        if self.metadata:
            data["metadata"] = orjson.Fragment(dumps_map(self.metadata))
        if self.diagnostics:
            data["diagnostics"] = list(self.diagnostics)
        return go_escape(orjson.dumps(data))

    @classmethod
    def from_json(cls, data: bytes | bytearray | memoryview | str) -> ExecutionEvent:
        """Reads Lacquer's JSON. As in Go, a missing or null field is its zero value (a
        missing timestamp is the zero time), except ``type``, which is required. A wrong
        type, an integer out of Go's 64-bit range or a bad timestamp raises
        ``MalformedMessageError`` (a ``ValueError``)."""
        obj = decode_object(data, "execution event")
        kind = str_field(obj, "type", required=True)
        stamp = obj.get("timestamp")
        if stamp is None:
            timestamp = ZERO_TIME
        elif isinstance(stamp, str):
            try:
                timestamp = parse_time(stamp)
            except ValueError as exc:
                raise MalformedMessageError(f"timestamp: {exc}") from exc
        else:
            raise MalformedMessageError(f"timestamp: expected a string, not {type_name(stamp)}")
        metadata = obj.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise MalformedMessageError(f"metadata: expected an object, not {type_name(metadata)}")
        diagnostics = obj.get("diagnostics")
        if diagnostics is not None and (
            not isinstance(diagnostics, list) or not all(isinstance(d, str) for d in diagnostics)
        ):
            raise MalformedMessageError("diagnostics: expected an array of strings")
        return cls(
            type=_TYPES.get(kind, kind),
            timestamp=timestamp,
            run_id=str_field(obj, "run_id"),
            step_id=str_field(obj, "step_id"),
            action_id=str_field(obj, "action_id"),
            step_index=int_field(obj, "step_index"),
            duration=_duration_from_wire(int_field(obj, "duration")),
            error=str_field(obj, "error"),
            attempt=int_field(obj, "attempt"),
            text=str_field(obj, "text"),
            metadata=metadata,
            diagnostics=diagnostics,
        )


# --- listeners ---------------------------------------------------------------------------

EventSource = AsyncIterable[ExecutionEvent] | asyncio.Queue[ExecutionEvent | None]
"""What a listener reads: an async iterable of events, or a queue ended by ``None``."""


class Listener(Protocol):
    """Lacquer's ``Listener``: follows the events of a run."""

    def start_listening(self, events: EventSource) -> None: ...

    def stop_listening(self) -> None: ...


class ListenerBase(ABC):
    """A listener that reads its source in a task and hands each event to ``handle``.

    ``handle`` raising is logged and counted in ``errors``; listening goes on. The source
    raising ends the listening, and ``wait()`` raises it.
    """

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._handled = 0
        self._errors = 0

    @property
    def listening(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def handled(self) -> int:
        """Events read from the source."""
        return self._handled

    @property
    def errors(self) -> int:
        """Events whose handling raised."""
        return self._errors

    def start_listening(self, events: EventSource) -> None:
        """Starts reading ``events`` in a task on the running loop (``RuntimeError`` when
        there is none, or when this listener is already listening)."""
        if self.listening:
            raise RuntimeError("already listening")
        self._task = asyncio.get_running_loop().create_task(self._listen(events))

    def stop_listening(self) -> None:
        """Stops reading; events not yet read stay in the source. Idempotent."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def wait(self) -> None:
        """Waits until listening ends (source exhausted or ``stop_listening``); raises what
        the source raised, if it did."""
        task = self._task
        if task is None:
            return
        await asyncio.wait([task])
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error

    @abstractmethod
    async def handle(self, event: ExecutionEvent) -> None:
        """Does what this listener does with one event."""

    def finish(self) -> None:  # noqa: B027 (a hook: most listeners have nothing to finish)
        """Called once when listening ends, however it ends."""

    async def _listen(self, events: EventSource) -> None:
        try:
            if isinstance(events, asyncio.Queue):
                while True:
                    event = await events.get()
                    events.task_done()
                    if event is None:
                        return
                    await self._deliver(event)
            else:
                async for event in events:
                    await self._deliver(event)
        finally:
            self.finish()

    async def _deliver(self, event: ExecutionEvent) -> None:
        self._handled += 1
        try:
            await self.handle(event)
        except Exception:
            self._errors += 1
            _log.exception("%s failed on a %s event", type(self).__name__, event.type)


class NoopListener(ListenerBase):
    """Reads and discards every event, so whoever produces them never waits."""

    async def handle(self, event: ExecutionEvent) -> None:
        pass


class ProgressListener(ListenerBase):
    """Writes one line per event to a text stream (standard error by default), by step:
    ``[2] build: started``, ``[2] build: completed in 1.5s``, ``run r1: workflow failed:
    ...``. On a terminal (``live``, detected with ``isatty`` unless given) progress updates of
    a step rewrite one line in place; elsewhere every event is a plain line."""

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None) -> None:
        super().__init__()
        self._stream = sys.stderr if stream is None else stream
        self._live = self._stream.isatty() if live is None else live
        self._line_open = False  # a live progress line is on screen, not yet ended

    async def handle(self, event: ExecutionEvent) -> None:
        line = describe(event)
        if self._live and event.type == ExecutionEventType.STEP_PROGRESS:
            self._write(f"\r\x1b[2K{line}")
            self._line_open = True
            return
        extra = "".join(f"\n    {d}" for d in event.diagnostics or ())
        prefix = "\r\x1b[2K" if self._line_open else ""
        self._line_open = False
        self._write(f"{prefix}{line}{extra}\n")

    def finish(self) -> None:
        if self._line_open:
            self._line_open = False
            self._write("\n")

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()


def describe(event: ExecutionEvent) -> str:
    """The progress line of one event (without diagnostics)."""
    kind = event.type
    if kind in _RUN_EVENTS:
        where = f"run {event.run_id}"
    else:
        where = f"[{event.step_index + 1}] {event.step_id}"
        if event.action_id:
            where += f"/{event.action_id}"
    what = _WHAT.get(kind, str(kind))
    if kind in _TIMED and event.duration:
        what += f" in {_shown_duration(event.duration)}"
    if kind == ExecutionEventType.STEP_RETRYING and event.attempt:
        what += f" (attempt {event.attempt})"
    if kind == ExecutionEventType.STEP_PROGRESS:
        what = event.text or what
    elif event.text:
        what += f": {event.text}"
    if event.error:
        what += f": {event.error}"
    return f"{where}: {what}"


_T = ExecutionEventType
_RUN_EVENTS = frozenset((_T.WORKFLOW_STARTED, _T.WORKFLOW_COMPLETED, _T.WORKFLOW_FAILED))
_TIMED = frozenset((_T.WORKFLOW_COMPLETED, _T.STEP_COMPLETED, _T.STEP_ACTION_COMPLETED))
_WHAT: dict[str, str] = {
    _T.WORKFLOW_STARTED: "workflow started",
    _T.WORKFLOW_COMPLETED: "workflow completed",
    _T.WORKFLOW_FAILED: "workflow failed",
    _T.STEP_STARTED: "started",
    _T.STEP_PROGRESS: "in progress",
    _T.STEP_COMPLETED: "completed",
    _T.STEP_FAILED: "failed",
    _T.STEP_SKIPPED: "skipped",
    _T.STEP_RETRYING: "retrying",
    _T.STEP_ACTION_STARTED: "action started",
    _T.STEP_ACTION_COMPLETED: "action completed",
    _T.STEP_ACTION_FAILED: "action failed",
}


def _shown_duration(value: timedelta) -> str:
    """Go's notation, to the millisecond above a second (``1.235s``), exact below."""
    nanoseconds = _duration_ns(value)
    if abs(nanoseconds) >= 1_000_000_000:
        nanoseconds = round_duration_ns(nanoseconds, 1_000_000)
    return go_duration_text(nanoseconds)


class PublishingBus(Protocol):
    """The part of ``turnout.Bus`` a ``BusListener`` uses: raw publishes (an awaitable
    result, as a remote transport might give, is awaited)."""

    def publish(self, subject: str, data: bytes) -> object: ...


def execution_subject(event: ExecutionEvent, prefix: str = "execution") -> str:
    """The subject ``BusListener`` publishes ``event`` on: ``<prefix>.<run_id>.<type>``.

    The run id and type become one subject token each: ``.``, whitespace, NUL and lone
    surrogates are replaced by ``_``, and an empty, ``*`` or ``>`` token becomes ``_``. So a
    subscriber follows a run with ``execution.<run>.>`` and step failures everywhere with
    ``execution.*.step_failed``; the exact run id is in the JSON payload.
    """
    return f"{prefix}.{_subject_token(event.run_id)}.{_subject_token(str(event.type))}"


_NOT_IN_TOKEN = re.compile("[.\\s\x00\ud800-\udfff]")


def _subject_token(text: str) -> str:
    token = _NOT_IN_TOKEN.sub("_", text)
    return "_" if token in ("", "*", ">") else token


class BusListener(ListenerBase):
    """Publishes each event's JSON on a bus, on ``execution_subject(event, prefix)``.

    A publish that fails (say, a run id too long for a subject) is logged and counted in
    ``errors``, and the next event is published as usual.
    """

    def __init__(self, bus: PublishingBus, *, prefix: str = "execution") -> None:
        super().__init__()
        validate_subject(prefix, literal=True)
        self._bus = bus
        self._prefix = prefix
        self._published = 0

    @property
    def published(self) -> int:
        return self._published

    async def handle(self, event: ExecutionEvent) -> None:
        result = self._bus.publish(execution_subject(event, self._prefix), event.to_json())
        if inspect.isawaitable(result):
            await result
        self._published += 1
