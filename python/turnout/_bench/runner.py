"""Runs a selection of workloads for each of their implementations and collects a report."""

from __future__ import annotations

import gc
import os
import platform
import time
from collections.abc import Callable, Sequence

from turnout._bench.catalog import Workload
from turnout._bench.report import BenchReport, ResultRow, WorkloadColumns
from turnout._bench.workloads import Scale, StepReporter

ProgressSink = Callable[[str], None]
"""Receives a one-line description of each step as it starts."""


def run_benchmarks(
    workloads: Sequence[Workload],
    scale: Scale,
    progress: ProgressSink,
    *,
    turnout_only: bool = False,
) -> BenchReport:
    """Runs every workload on each of its implementations (only turnout's with
    ``turnout_only``), workload by workload so the implementations of one workload are
    measured close together in time. Implementations that cannot be imported are skipped
    and named in the report."""
    started = time.perf_counter()
    rows: list[ResultRow] = []
    columns: dict[str, WorkloadColumns] = {}
    skipped: list[str] = []
    runs = []
    for workload in workloads:
        chosen = workload.implementations[:1] if turnout_only else workload.implementations
        available = []
        missing: dict[str, list[str]] = {}  # what installs them -> their labels
        for implementation in chosen:
            if implementation.is_available():
                available.append(implementation)
            else:
                hint = implementation.install or f"install {implementation.module}"
                missing.setdefault(hint, []).append(implementation.label)
        skipped += [f"{workload.key} {', '.join(ls)}: {hint}" for hint, ls in missing.items()]
        columns[workload.key] = WorkloadColumns(
            title=workload.title,
            implementations=tuple(i.name for i in available),
            labels={i.name: i.label for i in available},
            baseline=workload.baseline,
            slower=dict(workload.slower),
        )
        runs += [(workload, implementation) for implementation in available]
    for number, (workload, implementation) in enumerate(runs, start=1):
        prefix = f"[{number}/{len(runs)}] {workload.key} {implementation.name}"
        progress(prefix)
        rows += workload.run(implementation, scale, _case_reporter(progress, prefix))
        # The previous run's objects must not be collected in the middle of the next one.
        gc.collect()
    return BenchReport(
        scale=scale.name,
        columns=columns,
        rows=tuple(rows),
        environment=environment(),
        duration_s=time.perf_counter() - started,
        skipped=tuple(skipped),
    )


def _case_reporter(progress: ProgressSink, prefix: str) -> StepReporter:
    return lambda case: progress(f"{prefix}: {case}")


def environment() -> dict[str, str]:
    """What the figures depend on, recorded with them."""
    import turnout  # the Rust extension; imported late so a broken build fails here

    return {
        "turnout": f"turnout {turnout.__version__}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": f"{os.cpu_count() or 0} CPUs",
    }
