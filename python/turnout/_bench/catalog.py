"""Every standard workload (W1-W10) that ``turnout bench`` runs, in run order.

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
from collections.abc import Callable
from dataclasses import dataclass

from turnout._bench.implementations import (
    ALL_IMPLEMENTATIONS,
    BLINKER,
    NATS_PY,
    PLAIN_PYTHON,
    PLAIN_WEBSOCKETS,
    PYEE,
    QUEUE_HANDLER,
    RUST,
    TRANSITIONS,
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
        Workload("W2", f"fan-out: one subject, {W2_ENTRIES:,} entries", run_w2),
        Workload("W3", "churn: insert and remove, literal and wildcard patterns", run_w3),
        Workload("W4", "scale: build, memory and matches of a large index", run_w4),
        Workload(
            "W5",
            "bus: emit to 1 handler, to 100 and 1,000 handlers, into a stream",
            "turnout._bench.w5_bus",
            (RUST, PLAIN_PYTHON, BLINKER, PYEE),
        ),
        Workload(
            "W6",
            "dispatcher: 10,000 workspaces, build updates as JSON bytes",
            "turnout._bench.w6_dispatcher",
            (RUST, PLAIN_PYTHON),
        ),
        Workload(
            "W7",
            "logs: entries through a LogForwarder, and logging calls",
            "turnout._bench.w7_logs",
            (RUST, PLAIN_PYTHON, QUEUE_HANDLER),
        ),
        Workload(
            "W8",
            "phases: transitions over 100,000 workflows",
            "turnout._bench.w8_phases",
            (RUST, PLAIN_PYTHON, TRANSITIONS),
        ),
        Workload(
            "W9",
            "NATS end to end through a local nats-server",
            "turnout._bench.w9_nats",
            (TURNOUT_NATS, NATS_PY),
            baseline=NATS_PY.name,
        ),
        Workload(
            "W10",
            "hub: one event fanned out to 100 WebSocket watchers",
            "turnout._bench.w10_hub",
            (TURNOUT_HUB, PLAIN_WEBSOCKETS),
        ),
    )
}
