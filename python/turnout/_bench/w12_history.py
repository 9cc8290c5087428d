"""W12, history: ``history_since`` queries over 100,000 retained events.

A bus with a :class:`~turnout.history.MemoryHistory` holding 100,000 events (untimed: four
event types in turn, ``tool.installed``, ``tool.started``, ``workflow.phase``, ``log.entry``,
each stamped by ``emit``) is asked for the events on ``events.tool.>`` at or after the
timestamp of the middle event, ``limit=50``. Two cases:

- ``oldest first, limit 50``: the 50 oldest such events; the half of the events before
  ``since`` is passed over first.
- ``newest, limit 50``: the 50 newest (``newest=True``), found from the newest back.

Implementations, named as ``turnout bench`` names them:

- ``rust``: ``Bus.history_since``: the ring is walked in Rust, each distinct subject
  matched once, each event's time read in Rust, stopping once ``limit`` events are taken.
- ``reference``: the plain-Python store one writes without turnout, a ``deque`` of
  ``(subject, event)`` holding the same events, walked in Python: each distinct subject
  matched once (``turnout.reference.subject_matches``, remembered in a dict), the
  timestamp compared, stopping at ``limit`` too.

Each implementation runs in its own process (its events built there), and rounds are
interleaved (round 1 of every implementation, then round 2...), so a machine whose load
moves moves both alike. A run checks its answers against the events' numbers, so a broken
implementation cannot post a time. ``turnout bench --workload W12`` runs it (through
:func:`run`); ``python -m turnout._bench.w12_history`` prints the figures;
``TURNOUT_BENCH_QUICK=1`` selects the small scale (10,000 events).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from turnout._bench.implementations import Implementation
from turnout._bench.rates import quick_mode
from turnout._bench.report import ResultRow
from turnout._bench.timing import Measurement
from turnout._bench.workloads import Scale, StepReporter, WorkloadError

__all__ = [
    "CASES",
    "FULL",
    "IMPLEMENTATIONS",
    "QUICK",
    "W12Scale",
    "main",
    "measure",
    "query_run",
    "run",
]

OLDEST = "oldest first, limit 50"
NEWEST = "newest, limit 50"
CASES = (OLDEST, NEWEST)
IMPLEMENTATIONS = ("rust", "reference")
FILTER = "events.tool.>"
LIMIT = 50
_TYPES = ("tool.installed", "tool.started", "workflow.phase", "log.entry")


@dataclass(frozen=True)
class W12Scale:
    name: str
    events: int
    queries: dict[str, int]
    """Queries per run, by case: few where the baseline walks half the events."""
    rounds: int


QUICK = W12Scale("quick", 10_000, {OLDEST: 5, NEWEST: 200}, rounds=1)
FULL = W12Scale("full", 100_000, {OLDEST: 20, NEWEST: 2_000}, rounds=3)

Query = Callable[[str, datetime, int, bool], list[Any]]


def _python_query(store: deque[tuple[str, Any]]) -> Query:
    """``history_since`` as a plain-Python store answers it from a deque."""
    from turnout.reference import subject_matches

    def history_since(filter: str, since: datetime, limit: int, newest: bool) -> list[Any]:
        verdicts: dict[str, bool] = {}
        chosen = []
        for subject, event in reversed(store) if newest else store:
            matched = verdicts.get(subject)
            if matched is None:
                matched = verdicts[subject] = subject_matches(subject, filter)
            if matched and event.timestamp >= since:
                chosen.append(event)
                if len(chosen) == limit:
                    break
        if newest:
            chosen.reverse()
        return chosen

    return history_since


def query_run(implementation: str, scale: W12Scale) -> dict[str, float]:
    """One implementation's run in this process: builds the events, times each case's
    queries (the collector paused) and checks the answers; seconds per case."""
    from turnout import Bus, Event, MemoryHistory

    count = scale.events
    bus = Bus("bench", history=MemoryHistory(max_age=None, max_msgs=count))
    for n in range(count):
        bus.emit(Event(_TYPES[n % len(_TYPES)], data={"n": n}))
    events = bus.history(">", count)
    since = events[count // 2].timestamp
    assert since is not None
    query: Query
    if implementation == "rust":

        def query(filter: str, since: datetime, limit: int, newest: bool) -> list[Any]:
            return bus.history_since(filter, since, limit, newest=newest)

    else:
        query = _python_query(deque((e.subject, e) for e in events))
    # The events' numbers each case must give: the matching ones from the middle on.
    matching = [n for n in range(count // 2, count) if _TYPES[n % len(_TYPES)].startswith("tool.")]
    expected = {OLDEST: matching[:LIMIT], NEWEST: matching[-LIMIT:]}
    seconds = {}
    gc.collect()
    for case in CASES:
        newest = case == NEWEST
        found: list[Any] = []
        gc.disable()
        try:
            start = time.perf_counter()
            for _ in range(scale.queries[case]):
                found = query(FILTER, since, LIMIT, newest)
            seconds[case] = time.perf_counter() - start
        finally:
            gc.enable()
        numbers = [event.data["n"] for event in found]
        if numbers != expected[case]:
            raise WorkloadError(f"W12 {case} ({implementation}): wrong events {numbers[:5]}...")
    return seconds


def _child(implementation: str, scale: W12Scale) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "turnout._bench.w12_history", "query", implementation, scale.name],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    if done.returncode != 0:
        raise WorkloadError(f"W12: the {implementation} process failed: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(
    scale: W12Scale, step: StepReporter | None = None
) -> dict[tuple[str, str], Measurement]:
    """Every implementation, each in its own process, rounds interleaved; the best round
    of each case."""
    best: dict[tuple[str, str], float] = {}
    for number in range(scale.rounds):
        for name in IMPLEMENTATIONS:
            if step is not None:
                step(f"round {number + 1}: {name}")
            for case, seconds in _child(name, scale).items():
                per_query = seconds / scale.queries[case]
                key = (name, case)
                best[key] = min(best.get(key, per_query), per_query)
    return {
        key: Measurement(
            ops=scale.queries[key[1]],
            elapsed_ns=max(round(per_query * scale.queries[key[1]] * 1e9), 1),
            repeats=scale.rounds,
            latencies_ns=(),
        )
        for key, per_query in best.items()
    }


# The catalog runs W12 once per implementation; the first call measures both, interleaved,
# the other takes its rows from it.
_MEASURED: dict[str, dict[tuple[str, str], Measurement]] = {}


def run(implementation: Implementation, scale: Scale, step: StepReporter) -> list[ResultRow]:
    """The catalog's entry point: both cases for ``implementation``."""
    chosen = QUICK if scale.name == "quick" else FULL
    if chosen.name not in _MEASURED:
        _MEASURED[chosen.name] = measure(chosen, step)
    figures = _MEASURED[chosen.name]
    return [
        ResultRow.from_measurement(
            "W12", case, implementation.name, figures[key], {"events": float(chosen.events)}
        )
        for case in CASES
        if (key := (implementation.name, case)) in figures
    ]


def main() -> None:
    scale = QUICK if quick_mode() else FULL
    figures = measure(scale)
    print(
        f"W12 history_since on {scale.events:,} events, {scale.name} scale, best of "
        f"{scale.rounds} interleaved rounds, each implementation in its own process"
    )
    print(f"  {'case':<26}{'turnout':>12}{'plain deque':>14}   turnout vs plain")
    for case in CASES:
        ours, theirs = figures[("rust", case)], figures[("reference", case)]
        print(
            f"  {case:<26}{ours.ns_per_op / 1e6:>10.3f}ms{theirs.ns_per_op / 1e6:>12.3f}ms"
            f"   {theirs.ns_per_op / ours.ns_per_op:.2f}x"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["query"]:
        # python -m turnout._bench.w12_history query IMPLEMENTATION SCALE
        chosen = QUICK if sys.argv[3] == "quick" else FULL
        print(json.dumps(query_run(sys.argv[2], chosen)))
    else:
        main()
