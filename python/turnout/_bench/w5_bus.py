"""W5, the event bus: emit to 1 handler, to 1,000 handlers, into a stream.

Every case emits ``tool.started`` events built beforehand; the handlers are ``list.append``
of one list each, so a run can check afterwards that every event arrived, in order.
Implementations, named as ``turnout bench`` names them:

- ``rust`` (turnout): :class:`turnout.bus.Bus` with its defaults (in-memory history, embedded
  transport): ``emit`` copies and stamps the event, records it, matches its subject in the
  Rust index and calls the handlers.
- ``reference``: the plain-Python baseline one writes without turnout doing the same
  stamping and calling: a copy of the event with the time and node set, handlers found by
  a dict lookup of the exact subject (no wildcards, no history, no locking: a lower bound
  for a Python bus).
- ``blinker``: one ``blinker.Signal`` per event type, ``send(sender, event=...)`` of the
  stamped copy; blinker calls receivers as ``receiver(sender, **kwargs)``, so each is a
  small function around ``list.append``. A benches-only dependency, skipped if absent.

Streams have no blinker counterpart; their baseline is an ``asyncio.Queue``. The stream case
times emitting a batch and reading it back on the event loop.

``turnout bench --workload W5`` runs it through :func:`run`; ``python -m
turnout._bench.w5_bus`` prints the figures with the targets (1 handler ≤ 1.5 µs per emit,
1,000 handlers ≥ 5,000,000 deliveries/s). ``TURNOUT_BENCH_QUICK=1`` selects the small scale.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from turnout._bench.implementations import Implementation
from turnout._bench.rates import Figure, Prepared, best_of, quick_mode, render, run_cases
from turnout._bench.report import ResultRow
from turnout._bench.workloads import Scale, StepReporter
from turnout.bus import Bus
from turnout.events import Event, tool_started

__all__ = [
    "CASES",
    "FULL",
    "QUICK",
    "W5Scale",
    "blinker_available",
    "main",
    "run",
    "run_all",
]

ONE_HANDLER = "W5 emit -> 1 handler"
FANOUT = "W5 emit -> 1,000 handlers"
STREAM = "W5 emit -> stream"
FANOUT_HANDLERS = 1000
ONE_HANDLER_TARGET_NS = 1500.0
FANOUT_TARGET_PER_S = 5_000_000.0

_SUBJECT = "events.tool.started"


@dataclass(frozen=True)
class W5Scale:
    name: str
    one_handler_events: int
    fanout_events: int
    stream_events: int


QUICK = W5Scale("quick", one_handler_events=20_000, fanout_events=100, stream_events=20_000)
FULL = W5Scale("full", one_handler_events=500_000, fanout_events=5_000, stream_events=200_000)


def _events(count: int) -> list[Event]:
    return [tool_started("", f"tool-{n}") for n in range(count)]


def _check_lists(lists: list[list[Any]], expected: int, what: str) -> Callable[[], None]:
    def check() -> None:
        wrong = [len(got) for got in lists if len(got) != expected]
        if wrong:
            raise AssertionError(f"{what}: a handler got {wrong[0]} events, not {expected}")

    return check


# -- turnout -------------------------------------------------------------------------------


def _turnout_handlers(handlers: int, count: int) -> Prepared:
    bus = Bus("bench")
    lists: list[list[Event]] = [[] for _ in range(handlers)]
    for got in lists:
        bus.subscribe("events.tool.*", got.append)
    events = _events(count)

    def run() -> int:
        emit = bus.emit
        for event in events:
            emit(event)
        return count * handlers

    def check() -> None:
        _check_lists(lists, count, "turnout")()
        bus.close()

    return Prepared(run, check)


def _turnout_stream(count: int) -> Prepared:
    bus = Bus("bench")
    events = _events(count)
    received: list[Event] = []

    async def emit_and_read() -> None:
        stream = bus.stream("events.tool.*", maxsize=count)
        emit = bus.emit
        for event in events:
            emit(event)
        async for event in stream:
            received.append(event)
            if len(received) == count:
                break
        stream.close()

    def run() -> int:
        asyncio.run(emit_and_read())
        return count

    def check() -> None:
        _check_lists([received], count, "turnout stream")()
        bus.close()

    return Prepared(run, check)


# -- the plain-Python baseline -------------------------------------------------------------


class _PlainBus:
    """What a minimal Python bus does per emit: stamp a copy, look the handlers up by exact
    subject, call each, keep going if one raises."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.handlers: dict[str, list[Callable[[Event], object]]] = {}
        self.errors = 0

    def subscribe(self, subject: str, handler: Callable[[Event], object]) -> None:
        self.handlers.setdefault(subject, []).append(handler)

    def emit(self, event: Event) -> str:
        subject = "events." + event.type
        stamped = Event(event.type, event.node or self.node, datetime.now(timezone.utc), event.data)
        for handler in self.handlers.get(subject, ()):
            try:
                handler(stamped)
            except Exception:  # a broken handler must not stop the others
                self.errors += 1
        return subject


def _python_handlers(handlers: int, count: int) -> Prepared:
    bus = _PlainBus("bench")
    lists: list[list[Event]] = [[] for _ in range(handlers)]
    for got in lists:
        bus.subscribe(_SUBJECT, got.append)
    events = _events(count)

    def run() -> int:
        emit = bus.emit
        for event in events:
            emit(event)
        return count * handlers

    return Prepared(run, _check_lists(lists, count, "python"))


def _python_stream(count: int) -> Prepared:
    events = _events(count)
    received: list[Event] = []

    async def emit_and_read() -> None:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=count)
        for event in events:
            stamped = Event(event.type, event.node or "bench", datetime.now(timezone.utc), None)
            queue.put_nowait(stamped)
        while len(received) < count:
            received.append(await queue.get())

    def run() -> int:
        asyncio.run(emit_and_read())
        return count

    return Prepared(run, _check_lists([received], count, "python stream"))


# -- blinker -------------------------------------------------------------------------------


def blinker_available() -> bool:
    return importlib.util.find_spec("blinker") is not None


def _blinker_receiver(got: list[Event]) -> Callable[..., None]:
    def receive(sender: object, event: Event) -> None:
        got.append(event)

    return receive


def _blinker_handlers(handlers: int, count: int) -> Prepared:
    import blinker  # a benches-only dependency

    signals: dict[str, Any] = {}
    lists: list[list[Event]] = [[] for _ in range(handlers)]
    receivers = [_blinker_receiver(got) for got in lists]
    started = signals.setdefault(_SUBJECT, blinker.Signal())
    for receiver in receivers:
        started.connect(receiver, weak=False)
    events = _events(count)

    def emit(event: Event) -> None:
        stamped = Event(event.type, event.node or "bench", datetime.now(timezone.utc), event.data)
        signal = signals.get("events." + event.type)
        if signal is not None:
            signal.send("bench", event=stamped)

    def run() -> int:
        for event in events:
            emit(event)
        return count * handlers

    return Prepared(run, _check_lists(lists, count, "blinker"))


# -- running -------------------------------------------------------------------------------

Preparer = Callable[[W5Scale], Prepared]

CASES: dict[str, dict[str, Preparer]] = {
    ONE_HANDLER: {
        "rust": lambda s: _turnout_handlers(1, s.one_handler_events),
        "reference": lambda s: _python_handlers(1, s.one_handler_events),
        "blinker": lambda s: _blinker_handlers(1, s.one_handler_events),
    },
    FANOUT: {
        "rust": lambda s: _turnout_handlers(FANOUT_HANDLERS, s.fanout_events),
        "reference": lambda s: _python_handlers(FANOUT_HANDLERS, s.fanout_events),
        "blinker": lambda s: _blinker_handlers(FANOUT_HANDLERS, s.fanout_events),
    },
    STREAM: {
        "rust": lambda s: _turnout_stream(s.stream_events),
        "reference": lambda s: _python_stream(s.stream_events),
    },
}
"""Case -> implementation -> how to prepare a run at a scale (ops = deliveries)."""


def run_all(scale: W5Scale, repeats: int = 3) -> list[Figure]:
    """Every case and implementation (``blinker`` only if installed), best of ``repeats``."""
    figures = []
    for case, implementations in CASES.items():
        for name, prepare in implementations.items():
            if name == "blinker" and not blinker_available():
                continue
            figures.append(best_of(case, name, functools.partial(prepare, scale), repeats))
    return figures


def run(implementation: Implementation, scale: Scale, step: StepReporter) -> list[ResultRow]:
    """The catalog's entry point: every case ``implementation`` has (blinker has no
    stream), best of the scale's repeats."""
    chosen = QUICK if scale.name == "quick" else FULL
    table = {
        case: {name: functools.partial(prepare, chosen) for name, prepare in prepares.items()}
        for case, prepares in CASES.items()
    }
    return run_cases("W5", table, implementation.name, scale, step, repeats=scale.repeats)


def main() -> None:
    scale = QUICK if quick_mode() else FULL
    figures = run_all(scale)
    print(f"W5 event bus, {scale.name} scale")
    print(render(figures, baseline="reference"))
    by_case = {(f.case, f.implementation): f for f in figures}
    one = by_case[ONE_HANDLER, "rust"]
    fanout = by_case[FANOUT, "rust"]
    print(
        f"targets: 1 handler {one.ns_per_op:.0f} ns/emit (<= {ONE_HANDLER_TARGET_NS:.0f}); "
        f"1,000 handlers {fanout.ops_per_s:,.0f} deliveries/s (>= {FANOUT_TARGET_PER_S:,.0f})"
    )
    if not blinker_available():
        print("blinker is not installed: pip install 'turnout[bench]' to compare with it")


if __name__ == "__main__":
    main()
