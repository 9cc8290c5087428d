"""W5, the event bus: emit to 1 handler (a function, or one that keeps the event), to 100
and 1,000 handlers, into a stream; and the memory of 100,000 subscriptions.

Every case emits ``tool.started`` events built beforehand. The handlers that keep the event
are ``list.append`` of one list each, so a run can check afterwards that every event
arrived, in order; the function handler counts its calls. Implementations, named as
``turnout bench`` names them:

- ``rust`` (turnout): :class:`turnout.bus.Bus` with its defaults (in-memory history, embedded
  transport): ``emit``, one call into Rust, copies and stamps the event, records it in the
  history ring, finds its route (cached per subject, matched in the Rust index) and calls
  the handlers.
- ``reference``: the plain-Python baseline one writes without turnout doing the same
  stamping and calling: a copy of the event with the time and node set, handlers found by
  a dict lookup of the exact subject (no wildcards, no history, no locking: a lower bound
  for a Python bus).
- ``blinker``: one ``blinker.Signal`` per event type, ``send(sender, event=...)`` of the
  stamped copy; blinker calls receivers as ``receiver(sender, **kwargs)``, so each is a
  small function around ``list.append``. A benches-only dependency, skipped if absent.
- ``pyee``: one ``pyee.EventEmitter``, ``emit("events." + type, stamped copy)``; its
  handlers are the same callables as turnout's. Also benches-only.

Memory (:func:`subscription_bytes`, printed by ``main``): each implementation in a fresh
process subscribes a handler to 100,000 distinct patterns; the resident memory it gains,
per subscription, beside a bare ``SubjectIndex`` holding the same patterns.

Streams have no blinker counterpart; their baseline is an ``asyncio.Queue``. The stream case
times emitting a batch and reading it back on the event loop.

``turnout bench --workload W5`` runs it through :func:`run`; ``python -m
turnout._bench.w5_bus`` prints the figures with the targets (1 handler ≤ 1.5 µs per emit,
1,000 handlers ≥ 5,000,000 deliveries/s). ``TURNOUT_BENCH_QUICK=1`` selects the small scale.
``python -m turnout._bench.w5_bus loop IMPLEMENTATION CASE COUNT [build-only]`` runs one
loop once, for counting instructions (:func:`emit_loop`).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import sys
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
    "emit_loop",
    "main",
    "run",
    "run_all",
]

ONE_FUNCTION = "W5 emit -> 1 function handler"
ONE_HANDLER = "W5 emit -> 1 handler keeping the event"
HUNDRED = "W5 emit -> 100 handlers"
FANOUT = "W5 emit -> 1,000 handlers"
STREAM = "W5 emit -> stream"
HUNDRED_HANDLERS = 100
FANOUT_HANDLERS = 1000
SUBSCRIPTIONS = 100_000
ONE_HANDLER_TARGET_NS = 1500.0
FANOUT_TARGET_PER_S = 5_000_000.0

_SUBJECT = "events.tool.started"


@dataclass(frozen=True)
class W5Scale:
    name: str
    one_handler_events: int
    hundred_events: int
    fanout_events: int
    stream_events: int


QUICK = W5Scale(
    "quick",
    one_handler_events=20_000,
    hundred_events=1_000,
    fanout_events=100,
    stream_events=20_000,
)
FULL = W5Scale(
    "full",
    one_handler_events=500_000,
    hundred_events=50_000,
    fanout_events=5_000,
    stream_events=200_000,
)


def _events(count: int) -> list[Event]:
    return [tool_started("", f"tool-{n}") for n in range(count)]


def _check_lists(lists: list[list[Any]], expected: int, what: str) -> Callable[[], None]:
    def check() -> None:
        wrong = [len(got) for got in lists if len(got) != expected]
        if wrong:
            raise AssertionError(f"{what}: a handler got {wrong[0]} events, not {expected}")

    return check


class _Counter:
    """A function handler that keeps nothing: it counts the events it is called with."""

    def __init__(self) -> None:
        self.calls = 0

    def handler(self) -> Callable[[Event], None]:
        def handle(event: Event) -> None:
            self.calls += 1

        return handle

    def check(self, expected: int, what: str) -> Callable[[], None]:
        def check() -> None:
            if self.calls != expected:
                raise AssertionError(f"{what}: the handler got {self.calls} events, not {expected}")

        return check


# -- turnout -------------------------------------------------------------------------------


def _turnout_function(count: int) -> Prepared:
    bus = Bus("bench")
    counter = _Counter()
    bus.subscribe("events.tool.*", counter.handler())
    events = _events(count)

    def run() -> int:
        emit = bus.emit
        for event in events:
            emit(event)
        return count

    def check() -> None:
        counter.check(count, "turnout")()
        bus.close()

    return Prepared(run, check)


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


def _python_function(count: int) -> Prepared:
    bus = _PlainBus("bench")
    counter = _Counter()
    bus.subscribe(_SUBJECT, counter.handler())
    events = _events(count)

    def run() -> int:
        emit = bus.emit
        for event in events:
            emit(event)
        return count

    return Prepared(run, counter.check(count, "python"))


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


# -- pyee ----------------------------------------------------------------------------------


def pyee_available() -> bool:
    return importlib.util.find_spec("pyee") is not None


def _pyee_emitter(handlers: list[Callable[[Event], object]], count: int) -> Callable[[], int]:
    import pyee  # a benches-only dependency

    emitter = pyee.EventEmitter()
    for handler in handlers:
        emitter.on(_SUBJECT, handler)
    events = _events(count)

    def run() -> int:
        emit = emitter.emit
        for event in events:
            stamped = Event(
                event.type, event.node or "bench", datetime.now(timezone.utc), event.data
            )
            emit("events." + event.type, stamped)
        return count * len(handlers)

    return run


def _pyee_function(count: int) -> Prepared:
    counter = _Counter()
    return Prepared(_pyee_emitter([counter.handler()], count), counter.check(count, "pyee"))


def _pyee_handlers(handlers: int, count: int) -> Prepared:
    lists: list[list[Event]] = [[] for _ in range(handlers)]
    run = _pyee_emitter([got.append for got in lists], count)
    return Prepared(run, _check_lists(lists, count, "pyee"))


# -- memory of subscriptions ---------------------------------------------------------------

_MEMORY_PROBE = """
import gc, resource, sys
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
which, n = sys.argv[1], int(sys.argv[2])
patterns = [f"events.w5.p{i}.*" for i in range(n)]
def handler(event): pass
# Everything imported and made before the first reading: only the subscriptions count.
if which == "rust":
    from turnout.bus import Bus
    bus = Bus("bench")
    subscribe = bus.subscribe
elif which == "index":
    from turnout import SubjectIndex
    index = SubjectIndex()
    subscribe = index.insert
elif which == "pyee":
    import pyee
    emitter = pyee.EventEmitter()
    subscribe = emitter.on
else:
    raise SystemExit("unknown implementation " + which)
gc.collect()
before = rss()
kept = [subscribe(p, handler) for p in patterns]
gc.collect()
print(rss() - before)
"""


def _resident_gain(implementation: str, count: int) -> int:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, implementation, str(count)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return int(done.stdout.split()[-1])


def subscription_bytes(count: int = SUBSCRIPTIONS) -> dict[str, float]:
    """Resident bytes per subscription of ``count`` distinct patterns, each implementation
    in its own fresh process: ``rust`` (a turnout Bus), ``index`` (a bare SubjectIndex
    holding the same patterns), ``pyee`` when installed, and ``rust beyond the index``."""
    names = ["rust", "index"] + (["pyee"] if pyee_available() else [])
    gained = {name: _resident_gain(name, count) / count for name in names}
    gained["rust beyond the index"] = gained["rust"] - gained["index"]
    return gained


# -- running -------------------------------------------------------------------------------

Preparer = Callable[[W5Scale], Prepared]

CASES: dict[str, dict[str, Preparer]] = {
    ONE_FUNCTION: {
        "rust": lambda s: _turnout_function(s.one_handler_events),
        "reference": lambda s: _python_function(s.one_handler_events),
        "pyee": lambda s: _pyee_function(s.one_handler_events),
    },
    ONE_HANDLER: {
        "rust": lambda s: _turnout_handlers(1, s.one_handler_events),
        "reference": lambda s: _python_handlers(1, s.one_handler_events),
        "blinker": lambda s: _blinker_handlers(1, s.one_handler_events),
        "pyee": lambda s: _pyee_handlers(1, s.one_handler_events),
    },
    HUNDRED: {
        "rust": lambda s: _turnout_handlers(HUNDRED_HANDLERS, s.hundred_events),
        "reference": lambda s: _python_handlers(HUNDRED_HANDLERS, s.hundred_events),
        "pyee": lambda s: _pyee_handlers(HUNDRED_HANDLERS, s.hundred_events),
    },
    FANOUT: {
        "rust": lambda s: _turnout_handlers(FANOUT_HANDLERS, s.fanout_events),
        "reference": lambda s: _python_handlers(FANOUT_HANDLERS, s.fanout_events),
        "blinker": lambda s: _blinker_handlers(FANOUT_HANDLERS, s.fanout_events),
        "pyee": lambda s: _pyee_handlers(FANOUT_HANDLERS, s.fanout_events),
    },
    STREAM: {
        "rust": lambda s: _turnout_stream(s.stream_events),
        "reference": lambda s: _python_stream(s.stream_events),
    },
}
"""Case -> implementation -> how to prepare a run at a scale (ops = deliveries)."""


def run_all(scale: W5Scale, repeats: int = 3) -> list[Figure]:
    """Every case and implementation (``blinker`` and ``pyee`` only if installed), best of
    ``repeats``."""
    available = {"blinker": blinker_available(), "pyee": pyee_available()}
    figures = []
    for case, implementations in CASES.items():
        for name, prepare in implementations.items():
            if not available.get(name, True):
                continue
            figures.append(best_of(case, name, functools.partial(prepare, scale), repeats))
    return figures


def run(implementation: Implementation, scale: Scale, step: StepReporter) -> list[ResultRow]:
    """The catalog's entry point: every case ``implementation`` has (blinker and pyee
    have no stream), best of the scale's repeats."""
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
    if pyee_available():
        for case in (ONE_FUNCTION, ONE_HANDLER, HUNDRED, FANOUT):
            ratio = by_case[case, "pyee"].ns_per_op / by_case[case, "rust"].ns_per_op
            print(f"{case}: {ratio:.2f}x pyee")
    count = SUBSCRIPTIONS // 10 if quick_mode() else SUBSCRIPTIONS
    memory = subscription_bytes(count)
    print(
        f"{count:,} subscriptions, resident bytes each: "
        + ", ".join(f"{name} {value:,.0f}" for name, value in memory.items())
    )
    for name in ("blinker", "pyee"):
        if not (blinker_available() if name == "blinker" else pyee_available()):
            print(f"{name} is not installed: pip install 'turnout[bench]' to compare with it")


def emit_loop(implementation: str, case: str, count: int, run: bool = True) -> None:
    """One case's emit loop, once, untimed: for ``valgrind --tool=callgrind``, where
    instructions per emit are the difference of two counts, less the same command with
    ``run`` off (which builds the events and the bus, and emits nothing)."""
    scale = W5Scale("loop", count, count, count, count)
    prepared = CASES[case][implementation](scale)
    if run:
        prepared.run()
        prepared.check()


if __name__ == "__main__":
    if sys.argv[1:2] == ["loop"]:
        # python -m turnout._bench.w5_bus loop IMPLEMENTATION CASE COUNT [build-only]
        emit_loop(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:] != ["build-only"])
    else:
        main()
