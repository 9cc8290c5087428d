"""W7, logs: 1,000,000 entries through a LogForwarder (20,000 with TURNOUT_BENCH_QUICK=1),
frames serialised per second, and a ``logging`` call through ForwardingHandler beside the
same call through the standard library's QueueHandler. Each round is one whole prepared run
(``extra_info["ops_per_round"]`` operations); the measurement code is
``turnout._bench.w7_logs``. ``python -m turnout._bench.w7_logs`` runs the same cases plus
two that time only part of each run (log and frames in a steady state), which
pytest-benchmark, timing whole rounds, cannot."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from turnout._bench.rates import Prepared, quick_mode
from turnout._bench.w7_logs import (
    FULL,
    QUICK,
    prepare_buffer_only,
    prepare_end_to_end,
    prepare_frames,
    prepare_logging_call,
    prepare_python_end_to_end,
    prepare_python_frames,
)

SCALE = QUICK if quick_mode() else FULL
ROUNDS = 1 if quick_mode() else 3

CASES: dict[tuple[str, str], tuple[Callable[[], Prepared], int]] = {
    ("log, end to end", "rust"): (
        functools.partial(prepare_end_to_end, SCALE),
        SCALE.entries,
    ),
    ("log, end to end", "python"): (
        functools.partial(prepare_python_end_to_end, SCALE),
        SCALE.entries,
    ),
    ("log, buffer only", "rust"): (
        functools.partial(prepare_buffer_only, SCALE),
        SCALE.entries,
    ),
    ("frames", "rust"): (functools.partial(prepare_frames, SCALE), SCALE.entries),
    ("frames", "python"): (functools.partial(prepare_python_frames, SCALE), SCALE.entries),
    ("logging call", "ForwardingHandler"): (
        functools.partial(prepare_logging_call, SCALE, "forwarding"),
        SCALE.logging_calls,
    ),
    ("logging call", "QueueHandler"): (
        functools.partial(prepare_logging_call, SCALE, "queue"),
        SCALE.logging_calls,
    ),
}


def _run(prepared: Prepared) -> int:
    return prepared.run()


@pytest.mark.parametrize(("case", "implementation"), list(CASES), ids=[" ".join(c) for c in CASES])
def test_w7_logs(benchmark: BenchmarkFixture, case: str, implementation: str) -> None:
    prepare, operations = CASES[case, implementation]
    runs: list[Prepared] = []

    def setup() -> tuple[tuple[Prepared], dict[str, object]]:
        runs.append(prepare())
        return (runs[-1],), {}

    benchmark.group = f"W7 {case}"
    benchmark.extra_info["ops_per_round"] = operations
    pedantic: Callable[..., object] = benchmark.pedantic  # untyped in pytest-benchmark
    pedantic(_run, setup=setup, rounds=ROUNDS, iterations=1)
    for prepared in runs:  # each run's outcome is checked, untimed
        prepared.check()
