"""Whole-run rates for the coordination workloads (W7 logs, W8 phases).

Unlike the index workloads, whose single operations are timed in batches, these time one
prepared run doing many operations (a million log entries, a million transitions): the
preparation and the check of the outcome are untimed, the garbage collector is paused for
the run, and the best of a few repeats is kept. A run may time only part of itself (see
:class:`Prepared`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from turnout._bench.report import ResultRow
from turnout._bench.timing import Measurement, gc_paused
from turnout._bench.workloads import Scale, StepReporter, WorkloadError

__all__ = [
    "CaseTable",
    "Figure",
    "Prepared",
    "best_of",
    "quick_mode",
    "render",
    "run_cases",
]


def quick_mode() -> bool:
    """``TURNOUT_BENCH_QUICK=1``: small scales that only check the runs work."""
    return os.environ.get("TURNOUT_BENCH_QUICK", "").strip().lower() in {"1", "true", "yes"}


def _nothing() -> None:
    pass


@dataclass(frozen=True)
class Prepared:
    """A run ready to time: ``run`` does the work and returns how many operations it did;
    ``check`` (untimed, afterwards) raises if the outcome is wrong. A run whose measured
    work is interleaved with set-up (fill a buffer, time emptying it, again) times itself:
    ``measured_seconds`` then gives the seconds that count, read after ``run``."""

    run: Callable[[], int]
    check: Callable[[], None] = field(default=_nothing)
    measured_seconds: Callable[[], float] | None = None


@dataclass(frozen=True)
class Figure:
    """The best repeat of one case for one implementation."""

    case: str
    implementation: str
    operations: int
    seconds: float
    repeats: int = 1

    @property
    def ops_per_s(self) -> float:
        return self.operations / self.seconds

    @property
    def ns_per_op(self) -> float:
        return self.seconds * 1e9 / self.operations

    def row(
        self, workload: str, implementation: str, extra: Mapping[str, float] | None = None
    ) -> ResultRow:
        """The figure as a ``turnout bench`` row: one whole run is one sample, so there
        are no percentiles."""
        measurement = Measurement(
            ops=self.operations,
            elapsed_ns=max(round(self.seconds * 1e9), 1),
            repeats=self.repeats,
            latencies_ns=(),
        )
        return ResultRow.from_measurement(workload, self.case, implementation, measurement, extra)


def best_of(
    case: str, implementation: str, prepare: Callable[[], Prepared], repeats: int = 3
) -> Figure:
    """Prepares and times ``repeats`` runs; the fastest gives the figure. A run whose check
    fails raises ``WorkloadError``: its time would mean nothing."""
    best: Figure | None = None
    for _ in range(max(repeats, 1)):
        prepared = prepare()
        with gc_paused():
            start = time.perf_counter()
            operations = prepared.run()
            seconds = time.perf_counter() - start
        if prepared.measured_seconds is not None:
            seconds = prepared.measured_seconds()
        try:
            prepared.check()
        except AssertionError as exc:
            raise WorkloadError(f"{case} ({implementation}): {exc}") from exc
        figure = Figure(case, implementation, operations, max(seconds, 1e-9), max(repeats, 1))
        if best is None or figure.ops_per_s > best.ops_per_s:
            best = figure
    assert best is not None
    return best


CaseTable = Mapping[str, Mapping[str, Callable[[], Prepared]]]
"""Case -> implementation name -> what prepares one run of that case."""


def run_cases(
    workload: str,
    cases: CaseTable,
    implementation: str,
    scale: Scale,
    step: StepReporter,
    extra: Callable[[str, str], Mapping[str, float]] | None = None,
    repeats: int | None = None,
) -> list[ResultRow]:
    """The ``turnout bench`` rows of ``implementation``: every case it has, best of
    ``repeats`` runs (default 1 quick, 3 full). ``extra(case, implementation)`` adds
    case-specific figures."""
    if repeats is None:
        repeats = 1 if scale.name == "quick" else 3
    rows = []
    for case, prepares in cases.items():
        prepare = prepares.get(implementation)
        if prepare is None:
            continue
        step(case)
        figure = best_of(case, implementation, prepare, repeats)
        more = {"operations": float(figure.operations)}
        if extra is not None:
            more.update(extra(case, implementation))
        rows.append(figure.row(workload, implementation, more))
    return rows


def render(figures: Sequence[Figure], baseline: str) -> str:
    """A text table; ``x baseline`` is each row's rate over the ``baseline`` implementation's
    rate for the same case."""
    rates = {f.case: f.ops_per_s for f in figures if f.implementation == baseline}
    lines = [
        f"{'case':<34} {'implementation':<22} {'ops/s':>14} {'ns/op':>10} {'x ' + baseline:>12}"
    ]
    for f in figures:
        ratio = f"{f.ops_per_s / rates[f.case]:.2f}" if f.case in rates else "-"
        lines.append(
            f"{f.case:<34} {f.implementation:<22} {f.ops_per_s:>14,.0f} {f.ns_per_op:>10.1f} "
            f"{ratio:>12}"
        )
    return "\n".join(lines)
