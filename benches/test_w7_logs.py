"""W7, logs: 1,000,000 entries through a LogForwarder (20,000 with TURNOUT_BENCH_QUICK=1),
frames serialised per second, and a ``logging`` call through ForwardingHandler beside the
same call through the standard library's QueueHandler and through a plain-Python handler.
Each round is one whole prepared run (``extra_info["ops_per_round"]`` operations); the
measurement code is ``turnout._bench.w7_logs``. ``turnout bench --workload W7`` and
``python -m turnout._bench.w7_logs`` run the same cases plus two that time only part of
each run (log and frames in a steady state), which pytest-benchmark, timing whole rounds,
cannot."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from turnout._bench.rates import Prepared, quick_mode
from turnout._bench.w7_logs import CASES, FULL, QUICK, SELF_TIMED, operations_of

SCALE = QUICK if quick_mode() else FULL
ROUNDS = 1 if quick_mode() else 3
PAIRS = [
    (case, name) for case, prepares in CASES.items() if case not in SELF_TIMED for name in prepares
]


def _run(prepared: Prepared) -> int:
    return prepared.run()


@pytest.mark.parametrize(("case", "implementation"), PAIRS, ids=[" ".join(p) for p in PAIRS])
def test_w7_logs(benchmark: BenchmarkFixture, case: str, implementation: str) -> None:
    prepare = CASES[case][implementation]
    runs: list[Prepared] = []

    def setup() -> tuple[tuple[Prepared], dict[str, object]]:
        runs.append(prepare(SCALE))
        return (runs[-1],), {}

    benchmark.group = f"W7 {case}"
    benchmark.extra_info["ops_per_round"] = operations_of(SCALE, case)
    pedantic: Callable[..., object] = benchmark.pedantic  # untyped in pytest-benchmark
    pedantic(_run, setup=setup, rounds=ROUNDS, iterations=1)
    for prepared in runs:  # each run's outcome is checked, untimed
        prepared.check()
