"""W8, phases: 1,000,000 transitions over 100,000 workflows (20,000 over 10,000 with
TURNOUT_BENCH_QUICK=1): PhaseManager.transition_to one call at a time and transition_many
in batches, each beside a plain-Python dict-of-states baseline doing the same, and
transition_to beside the ``transitions`` library when it is
installed (a benches-only dependency, ``pip install 'turnout[bench]'``; it runs on 10,000
workflows, its machine being slow to build). Each round is one whole prepared run
(``extra_info["ops_per_round"]`` transitions); the measurement code is
``turnout._bench.w8_phases``."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from turnout._bench.rates import Prepared, quick_mode
from turnout._bench.w8_phases import CASES, FULL, QUICK, transitions_available, workflows_of

SCALE = QUICK if quick_mode() else FULL
ROUNDS = 1 if quick_mode() else 3
PAIRS = [(case, name) for case, prepares in CASES.items() for name in prepares]


def _run(prepared: Prepared) -> int:
    return prepared.run()


@pytest.mark.parametrize(("case", "implementation"), PAIRS, ids=[" ".join(p) for p in PAIRS])
def test_w8_phases(benchmark: BenchmarkFixture, case: str, implementation: str) -> None:
    if implementation == "transitions" and not transitions_available():
        pytest.skip("the transitions library is not installed (pip install 'turnout[bench]')")
    prepare = CASES[case][implementation]
    runs: list[Prepared] = []

    def setup() -> tuple[tuple[Prepared], dict[str, object]]:
        runs.append(prepare(SCALE))
        return (runs[-1],), {}

    workflows = workflows_of(SCALE, implementation)
    benchmark.group = f"W8 {case}"
    benchmark.extra_info["ops_per_round"] = workflows * SCALE.rounds
    benchmark.extra_info["workflows"] = workflows
    pedantic: Callable[..., object] = benchmark.pedantic  # untyped in pytest-benchmark
    pedantic(_run, setup=setup, rounds=ROUNDS, iterations=1)
    for prepared in runs:  # where every workflow ended is checked, untimed
        prepared.check()
