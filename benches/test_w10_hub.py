"""W10, hub: one event fanned out to 100 WebSocket watchers (200 events a round with
TURNOUT_BENCH_QUICK=1, else 3,000), through the turnout Hub (``[rust]``) and through a plain
websockets server sending to each connection in a loop (``[reference]``). The watchers run
in their own process and count frames; a round ends when they have counted every delivery
(``extra_info["ops_per_round"]``), so the round time covers complete delivery; the latency
case's rounds are one event each. The servers
and watchers are set up once per benchmark, untimed; the measurement code is
``turnout._bench.w10_hub`` (``python -m turnout._bench.w10_hub`` also shows websockets'
own ``broadcast()`` beside them)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from turnout._bench.rates import quick_mode
from turnout._bench.w10_hub import CASES, FULL, LATENCY, QUICK, WATCHERS, session_for

SCALE = QUICK if quick_mode() else FULL
ROUNDS = 1 if quick_mode() else 3


@pytest.mark.parametrize("implementation", ["rust", "reference"])
@pytest.mark.parametrize("case", CASES)
def test_w10_hub(benchmark: BenchmarkFixture, case: str, implementation: str) -> None:
    loop = asyncio.new_event_loop()
    try:
        session = session_for(implementation, case, SCALE)
        loop.run_until_complete(asyncio.wait_for(session.__aenter__(), 60))
        try:
            benchmark.group = f"W10 {case}"
            # The latency case's round is one event, delivered to every watcher.
            latency = case == LATENCY
            benchmark.extra_info["ops_per_round"] = WATCHERS if latency else SCALE.events * WATCHERS
            pedantic: Callable[..., object] = benchmark.pedantic  # untyped in pytest-benchmark
            pedantic(
                lambda: loop.run_until_complete(session.round()),
                rounds=SCALE.latency_events if latency else ROUNDS,
                iterations=1,
            )
            session.check()  # nothing was lost
        finally:
            loop.run_until_complete(asyncio.wait_for(session.__aexit__(None, None, None), 60))
    finally:
        loop.close()
