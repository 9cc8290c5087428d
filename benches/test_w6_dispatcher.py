"""W6, the workspace dispatcher: 1,000,000 build updates as JSON bytes routed to 10,000
workspaces, by the raw-bytes path (Rust ``KeyRouter``), the object path, the object path
decoding each message, and plain-Python baselines (``orjson.loads`` + a dict lookup; the
objects through an ``asyncio.Queue`` per workspace).

One benchmark group, so the five sit side by side; each round is one routing of all the
updates (``extra_info["ops_per_round"]``), on a dispatcher and event loop prepared
untimed. ``TURNOUT_BENCH_QUICK=1`` selects 20,000 updates to 500 workspaces.

    pytest benches/test_w6_dispatcher.py -p no:cacheprovider
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from turnout._bench.w6_dispatcher import (
    FULL,
    QUICK,
    PreparedPass,
    W6Data,
    W6Scale,
    prepare_baseline,
    prepare_baseline_objects,
    prepare_decoded_objects,
    prepare_objects,
    prepare_raw,
    w6_data,
)

QUICK_MODE = os.environ.get("TURNOUT_BENCH_QUICK", "").strip().lower() in {"1", "true", "yes"}
W6 = QUICK if QUICK_MODE else FULL
ROUNDS = 1 if QUICK_MODE else 3

PATHS: dict[str, Callable[[W6Data, W6Scale], PreparedPass]] = {
    "raw bytes": lambda data, scale: prepare_raw(data, scale.batch),
    "objects": lambda data, scale: prepare_objects(data),
    "decode + objects": lambda data, scale: prepare_decoded_objects(data),
    "baseline orjson + dict": lambda data, scale: prepare_baseline(data),
    "baseline objects + asyncio.Queue": lambda data, scale: prepare_baseline_objects(data),
}


@pytest.fixture(scope="module")
def w6() -> W6Data:
    return w6_data(W6.workspaces, W6.updates)


@pytest.mark.parametrize("path", PATHS)
def test_w6_dispatcher(benchmark: BenchmarkFixture, w6: W6Data, path: str) -> None:
    benchmark.group = f"W6 dispatcher: {W6.updates:,} updates to {W6.workspaces:,} workspaces"
    benchmark.extra_info["ops_per_round"] = W6.updates
    prepared: list[PreparedPass] = []

    def setup() -> tuple[tuple[PreparedPass], dict[str, object]]:
        prepared.append(PATHS[path](w6, W6))
        return (prepared[-1],), {}

    benchmark.pedantic(PreparedPass.run, setup=setup, rounds=ROUNDS, iterations=1)
    # Every update reached its workspace, on every path.
    assert [p.routed() for p in prepared] == [W6.updates] * len(prepared)
