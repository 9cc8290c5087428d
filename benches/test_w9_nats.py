"""W9, NATS end to end: jb-mesh envelopes through a nats-server on loopback (started by the
benchmark, JetStream off) to handlers, through turnout on NATS (``[rust]``) and through
plain nats-py with one subscription per handler (``[nats-py]``). Cases: 1 sync handler, 100
sync handlers on overlapping patterns, 10 async handlers; the same raw publisher writes the
frames for both. A round ends when every delivery is counted
(``extra_info["ops_per_round"]``) or none came for a few seconds: plain nats-py may be cut
off as a slow consumer, which ``extra_info`` reports; turnout must deliver everything. The
server and handlers are set up once per benchmark, untimed; the measurement code is
``turnout._bench.w9_nats`` (``python -m turnout._bench.w9_nats`` prints the figures)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from turnout._bench.rates import quick_mode
from turnout._bench.w9_nats import CASES, FULL, QUICK, Session

SCALE = QUICK if quick_mode() else FULL
ROUNDS = 1 if quick_mode() else 3


@pytest.mark.parametrize("implementation", ["rust", "nats-py"])
@pytest.mark.parametrize("case", CASES)
def test_w9_nats(benchmark: BenchmarkFixture, case: str, implementation: str) -> None:
    loop = asyncio.new_event_loop()
    try:
        session = Session(implementation, case, SCALE)
        loop.run_until_complete(asyncio.wait_for(session.__aenter__(), 60))
        try:
            benchmark.group = f"W9 {case}"
            benchmark.extra_info["ops_per_round"] = session.expected
            pedantic: Callable[..., object] = benchmark.pedantic  # untyped in pytest-benchmark
            pedantic(lambda: loop.run_until_complete(session.round()), rounds=ROUNDS, iterations=1)
            benchmark.extra_info.update(session.extra())
            session.check()  # turnout delivered everything
        finally:
            loop.run_until_complete(asyncio.wait_for(session.__aexit__(None, None, None), 60))
    finally:
        loop.close()
