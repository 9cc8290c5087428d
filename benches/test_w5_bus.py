"""W5, the event bus: emit to 1 function handler, to 1 handler keeping the event, to 100
and 1,000 handlers, and into a stream, on turnout's Bus, a plain-Python baseline, and blinker
and pyee when they are installed (the bench extra).
Each round is one whole prepared run (``extra_info["ops_per_round"]`` deliveries); the
measurement code is ``turnout._bench.w5_bus``. TURNOUT_BENCH_QUICK=1 selects small counts.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from turnout._bench.rates import Prepared, quick_mode
from turnout._bench.w5_bus import (
    CASES,
    FANOUT,
    FANOUT_HANDLERS,
    FULL,
    HUNDRED,
    HUNDRED_HANDLERS,
    ONE_FUNCTION,
    ONE_HANDLER,
    QUICK,
    STREAM,
    blinker_available,
    pyee_available,
)

SCALE = QUICK if quick_mode() else FULL
ROUNDS = 1 if quick_mode() else 3
OPS = {
    ONE_FUNCTION: SCALE.one_handler_events,
    ONE_HANDLER: SCALE.one_handler_events,
    HUNDRED: SCALE.hundred_events * HUNDRED_HANDLERS,
    FANOUT: SCALE.fanout_events * FANOUT_HANDLERS,
    STREAM: SCALE.stream_events,
}


def _run(prepared: Prepared) -> int:
    return prepared.run()


@pytest.mark.parametrize(
    ("case", "implementation"),
    [(case, name) for case, implementations in CASES.items() for name in implementations],
)
def test_w5_bus(benchmark: BenchmarkFixture, case: str, implementation: str) -> None:
    if implementation == "blinker" and not blinker_available():
        pytest.skip("blinker is not installed (pip install 'turnout[bench]')")
    if implementation == "pyee" and not pyee_available():
        pytest.skip("pyee is not installed (pip install 'turnout[bench]')")
    prepare = CASES[case][implementation]
    runs: list[Prepared] = []

    def setup() -> tuple[tuple[Prepared], dict[str, object]]:
        runs.append(prepare(SCALE))
        return (runs[-1],), {}

    benchmark.group = case
    benchmark.extra_info["ops_per_round"] = OPS[case]
    pedantic: Callable[..., object] = benchmark.pedantic  # untyped in pytest-benchmark
    pedantic(_run, setup=setup, rounds=ROUNDS, iterations=1)
    for prepared in runs:  # every delivery is checked, untimed
        prepared.check()
