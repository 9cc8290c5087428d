"""Every standard workload (W1-W12) that ``turnout bench`` runs, in run order.

A workload is measured once per implementation it lists, close together in time, and the
table puts them side by side with the speedup over its baseline: the pure-Python subject
index for W1-W4, plain Python (or plain websockets, plain nats-py) doing the same work for
the others.

W1-W4 live in :mod:`turnout._bench.workloads`. Each later workload lives in its own module,
imported only when it runs (so ``turnout bench --workload W1`` loads no bus, NATS or
WebSocket code), which provides::

    def run(implementation: Implementation, scale: Scale, step: StepReporter) -> list[ResultRow]

An implementation whose ``module`` does not import (an extra that is not installed, such
as ``nats`` or ``ws``) is left out of the run and named in the report's ``skipped``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from turnout._bench.implementations import (
    ALL_IMPLEMENTATIONS,
    BLINKER,
    FASTSTREAM,
    NATS_PY,
    PLAIN_DEQUE,
    PLAIN_DICT_BUS,
    PLAIN_DICT_ROUTER,
    PLAIN_FORWARDER,
    PLAIN_PHASE_DICT,
    PLAIN_WEBSOCKETS,
    PYEE,
    QUEUE_HANDLER,
    RUST,
    SINGLE_HUB,
    TRANSITIONS,
    TURNOUT_FLEET,
    TURNOUT_HUB,
    TURNOUT_NATS,
    Implementation,
)
from turnout._bench.report import ResultRow
from turnout._bench.workloads import (
    W1_ENTRIES,
    W2_ENTRIES,
    Scale,
    StepReporter,
    run_w1,
    run_w2,
    run_w3,
    run_w4,
)

WorkloadFunction = Callable[[Implementation, Scale, StepReporter], list[ResultRow]]

_SAME_LIST = (
    "the match is a cache hit on both sides; what is timed is building the Python list of "
    "1,000 values, which costs the same on both"
)


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    target: WorkloadFunction | str
    """The function measuring one implementation, or the name of the module whose
    ``run`` it is."""
    implementations: tuple[Implementation, ...] = ALL_IMPLEMENTATIONS
    """In column order; the first is turnout itself (named ``rust``)."""
    baseline: str = "reference"
    """The implementation the speedup is measured against."""
    slower: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    """Case -> why turnout is slower there than a baseline, when it is: the table prints it
    under the row (a row slower with no reason here says so)."""

    def run(
        self, implementation: Implementation, scale: Scale, step: StepReporter
    ) -> list[ResultRow]:
        if not isinstance(self.target, str):
            return self.target(implementation, scale, step)
        run: WorkloadFunction = importlib.import_module(self.target).run
        return run(implementation, scale, step)


WORKLOADS: dict[str, Workload] = {
    w.key: w
    for w in (
        Workload("W1", f"nats-server sublist set, {W1_ENTRIES:,} entries", run_w1),
        Workload(
            "W2",
            f"fan-out: one subject, {W2_ENTRIES:,} entries",
            run_w2,
            slower={
                case: _SAME_LIST
                for case in (
                    "1,000 plain: match + .plain, cache on",
                    "10 groups x 100: match + .queues, cache on",
                )
            },
        ),
        Workload("W3", "churn: insert and remove, literal and wildcard patterns", run_w3),
        Workload("W4", "scale: build, memory and matches of a large index", run_w4),
        Workload(
            "W5",
            "bus: emit to 1 handler, to 100 and 1,000 handlers, into a stream",
            "turnout._bench.w5_bus",
            (RUST, PLAIN_DICT_BUS, BLINKER, PYEE),
            slower={
                case: "each emit stamps a copy of the event, records it in the history and "
                "routes it by pattern (the route cached); the plain dict bus looks the exact "
                "subject up and keeps nothing"
                for case in (
                    "W5 emit -> 1 function handler",
                    "W5 emit -> 1 handler keeping the event",
                    "W5 emit -> 100 handlers",
                    "W5 emit -> 1,000 handlers",
                    "W5 emit -> stream",
                )
            },
        ),
        Workload(
            "W6",
            "dispatcher: 10,000 workspaces, build updates as JSON bytes",
            "turnout._bench.w6_dispatcher",
            (RUST, PLAIN_DICT_ROUTER),
        ),
        Workload(
            "W7",
            "logs: entries through a LogForwarder, and logging calls",
            "turnout._bench.w7_logs",
            (RUST, PLAIN_FORWARDER, QUEUE_HANDLER),
            slower={
                "log, buffer only": "turnout converts each entry to Rust values as it takes "
                "it, so that frames are written without the GIL; the plain forwarder appends "
                "the object and pays when it flushes (see 'log, end to end')",
            },
        ),
        Workload(
            "W8",
            "phases: transitions over 100,000 workflows",
            "turnout._bench.w8_phases",
            (RUST, PLAIN_PHASE_DICT, TRANSITIONS),
        ),
        Workload(
            "W9",
            "NATS end to end: a publisher process, a nats-server, handlers",
            "turnout._bench.w9_nats",
            (TURNOUT_NATS, NATS_PY, FASTSTREAM),
            baseline=NATS_PY.name,
            slower={
                "1 sync handler": "with one handler both spend their time in nats-py's parser "
                "and the event decode, and differ by a few microseconds of dispatch: within "
                "the noise of a loaded machine (quiet: 1.10-1.14x)",
                "1 async handler": "each event crosses from the NATS I/O thread to the "
                "handler's event loop through its mailbox, and a consumer that keeps up is "
                "woken once per event (the wake-up hands the GIL over); nats-py runs its "
                "callback on the loop that read the message",
            },
        ),
        Workload(
            "W10",
            "hub: one event fanned out to 100 WebSocket watchers",
            "turnout._bench.w10_hub",
            (TURNOUT_HUB, PLAIN_WEBSOCKETS),
            slower={
                "latency: 1 event at a time to 100 watchers": "one event at a time, both "
                "wait mostly on the counting process and the machine's scheduling: the P50s "
                "move by up to 2x between runs and either side may lead",
            },
        ),
        Workload(
            "W11",
            "fleet: a command across hubs, events to 100 watchers on 3 hubs",
            "turnout._bench.w11_fleet",
            (TURNOUT_FLEET, SINGLE_HUB),
            slower={
                "command: status round trip, one at a time": "across hubs the command makes "
                "two more trips (hub A to NATS to hub B, and back) through two more "
                "processes than on one hub",
                "fan-out: a service's messages to 100 watchers": "each event crosses NATS to "
                "every hub before the hubs write it to their watchers",
            },
        ),
        Workload(
            "W12",
            "history: history_since over 100,000 retained events",
            "turnout._bench.w12_history",
            (RUST, PLAIN_DEQUE),
        ),
    )
}
