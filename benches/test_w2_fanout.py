"""W2, fan-out: one subject matching 1,000 entries, plain and in 10 queue groups of 100;
the match alone, and the match with its values read out (``.plain`` / ``.queues``)."""

from __future__ import annotations

from operator import attrgetter

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from turnout._bench.implementations import IndexFactory, SubjectIndexLike
from turnout._bench.timing import drive
from turnout._bench.workloads import (
    DEFAULT_CACHE_SIZE,
    W2_ENTRIES,
    W2_GROUPS,
    W2_SUBJECT,
    Scale,
    insert_entries,
    w2_entries,
)

SHAPES = {"plain": 0, "queues": W2_GROUPS}
"""Shape -> queue groups; the shape is also the attribute of the result holding the values."""
CACHE_SIZES = {"cache on": DEFAULT_CACHE_SIZE, "cache off": 0}


@pytest.fixture(scope="module")
def w2_indexes(make_index: IndexFactory) -> dict[tuple[str, str], SubjectIndexLike]:
    indexes: dict[tuple[str, str], SubjectIndexLike] = {}
    for shape, groups in SHAPES.items():
        for cache, size in CACHE_SIZES.items():
            index = make_index(size)
            insert_entries(index, w2_entries(W2_ENTRIES, groups=groups))
            indexes[shape, cache] = index
    return indexes


@pytest.mark.parametrize("read", [False, True], ids=["match", "match+read"])
@pytest.mark.parametrize("cache", CACHE_SIZES)
@pytest.mark.parametrize("shape", SHAPES)
def test_w2_fanout(
    benchmark: BenchmarkFixture,
    w2_indexes: dict[tuple[str, str], SubjectIndexLike],
    scale: Scale,
    shape: str,
    cache: str,
    read: bool,
) -> None:
    index = w2_indexes[shape, cache]
    assert len(index.match(W2_SUBJECT)) == W2_ENTRIES
    what = f"match + .{shape}" if read else "match"
    benchmark.group = f"W2 {shape}: {what}, {cache}"
    benchmark.extra_info["ops_per_round"] = scale.fanout_calls
    reader = attrgetter(shape) if read else None
    benchmark(drive, index.match, ([W2_SUBJECT] * scale.fanout_calls,), reader)
