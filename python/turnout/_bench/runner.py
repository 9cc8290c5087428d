"""Runs a selection of workloads for each implementation and collects a report."""

from __future__ import annotations

import gc
import os
import platform
import time
from collections.abc import Callable, Sequence

from turnout._bench.implementations import Implementation
from turnout._bench.report import BenchReport, ResultRow
from turnout._bench.workloads import Scale, StepReporter, Workload

ProgressSink = Callable[[str], None]
"""Receives a one-line description of each step as it starts."""


def run_benchmarks(
    workloads: Sequence[Workload],
    implementations: Sequence[Implementation],
    scale: Scale,
    progress: ProgressSink,
) -> BenchReport:
    """Runs every workload on every implementation, workload by workload so the two
    implementations of one workload are measured close together in time."""
    started = time.perf_counter()
    rows: list[ResultRow] = []
    runs = [(w, i) for w in workloads for i in implementations]
    for number, (workload, implementation) in enumerate(runs, start=1):
        prefix = f"[{number}/{len(runs)}] {workload.key} {implementation.name}"
        progress(prefix)
        rows += workload.run(implementation, scale, _case_reporter(progress, prefix))
        # The previous run's indexes must not be collected in the middle of the next one.
        gc.collect()
    return BenchReport(
        scale=scale.name,
        implementations=tuple(i.name for i in implementations),
        workload_titles={w.key: w.title for w in workloads},
        rows=tuple(rows),
        environment=environment(),
        duration_s=time.perf_counter() - started,
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
