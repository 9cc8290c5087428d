"""W9, NATS end to end: jb-mesh envelopes through a nats-server on loopback (started by the
benchmark, JetStream off) to handlers in another process, through turnout on NATS
(``[rust]``), plain nats-py with ``orjson.loads`` in each callback (``[nats-py]``) and
FastStream when installed (``[faststream]``); a raw publisher in a third process writes the
frames. Each round is one run of fresh processes; the receiver's own figures (deliveries,
first-to-last time, CPU time per message, latencies) are in ``extra_info``. The
measurement code is ``turnout._bench.w9_nats`` (``python -m turnout._bench.w9_nats``
prints the figures with rounds interleaved across implementations)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from turnout._bench.rates import quick_mode
from turnout._bench.w9_nats import CASES, FULL, QUICK, Case, available, run_once
from turnout.testing.nats_server import NatsServer

SCALE = QUICK if quick_mode() else FULL


@pytest.fixture(scope="module")
def server() -> Iterator[NatsServer]:
    with tempfile.TemporaryDirectory(prefix="turnout-w9-") as store:
        server = NatsServer(Path(store), jetstream=False).start()
        try:
            yield server
        finally:
            server.kill()


@pytest.mark.parametrize("implementation", available())
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_w9_nats(
    benchmark: BenchmarkFixture, server: NatsServer, case: Case, implementation: str
) -> None:
    results: list[dict[str, Any]] = []
    benchmark.group = f"W9 {case.name}"
    pedantic: Callable[..., object] = benchmark.pedantic  # untyped in pytest-benchmark
    pedantic(
        lambda: results.append(run_once(server, implementation, case, SCALE)),
        rounds=SCALE.rounds,
        iterations=1,
    )
    last = results[-1]
    benchmark.extra_info.update({k: v for k, v in last.items() if k != "latencies_ns"})
    if implementation == "rust":
        assert last["delivered"] == last["expected"]  # turnout delivers everything
