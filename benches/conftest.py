"""pytest-benchmark suites for the subject index: the standard workloads W1-W4.

Every benchmark runs on the Rust core (``[rust]``) and on the pure-Python reference
(``[reference]``), in one benchmark group per case so the two sit side by side. The data
comes from ``turnout._bench.workloads``, the same generators ``turnout bench`` uses; each
round times a whole batch of calls (``extra_info["ops_per_round"]`` says how many), so the
per-operation time is the round time divided by that.

Scale: ``TURNOUT_BENCH_QUICK=1`` selects small indexes and batches, and also caps each
benchmark at a few short rounds; unset, the full scales of ``turnout bench`` apply.

    TURNOUT_BENCH_QUICK=1 pytest benches -p no:cacheprovider --benchmark-disable  # CI: run once
    pytest benches -p no:cacheprovider -k "W1 and rust"                         # real figures
"""

from __future__ import annotations

import os

import pytest

from turnout._bench.implementations import ALL_IMPLEMENTATIONS, Implementation, IndexFactory
from turnout._bench.workloads import FULL, QUICK, Scale

QUICK_MODE = os.environ.get("TURNOUT_BENCH_QUICK", "").strip().lower() in {"1", "true", "yes"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not QUICK_MODE:
        return
    # A quick run only checks the suites work: few, short rounds (an explicit marker on a
    # test still wins, being closer to it).
    quick_rounds = pytest.mark.benchmark(min_rounds=1, max_time=0.05, warmup=False)
    for item in items:
        item.add_marker(quick_rounds, append=True)


@pytest.fixture(scope="session")
def scale() -> Scale:
    return QUICK if QUICK_MODE else FULL


@pytest.fixture(
    scope="session", params=ALL_IMPLEMENTATIONS, ids=[i.name for i in ALL_IMPLEMENTATIONS]
)
def implementation(request: pytest.FixtureRequest) -> Implementation:
    chosen: Implementation = request.param
    if not chosen.is_available():
        pytest.skip(f"{chosen.module} is not importable")
    return chosen


@pytest.fixture(scope="session")
def make_index(implementation: Implementation) -> IndexFactory:
    """Makes an empty index of the implementation under test, given its cache size."""
    return implementation.factory()
