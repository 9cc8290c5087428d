"""W4, scale: building a large index of 4-token literals (1,000,000 entries for the Rust
core, 100,000 for the reference; 20,000 in quick mode), its memory per entry, and matches
on it against matches on a 1,000-entry index."""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from turnout._bench.implementations import Implementation, IndexFactory
from turnout._bench.memory import index_bytes_per_entry
from turnout._bench.timing import drive
from turnout._bench.w4_subjects import w4_patterns
from turnout._bench.workloads import (
    DEFAULT_CACHE_SIZE,
    W4_SMALL_ENTRIES,
    Scale,
    insert_all,
    shared_value_index,
    w4_hit_subjects,
)

SIZES = ("@scale", "@1k")


@pytest.fixture(scope="module")
def scale_entries(implementation: Implementation, scale: Scale) -> int:
    return scale.w4_entries(implementation)


def _patterns(where: str, scale_entries: int) -> list[str]:
    return w4_patterns(scale_entries if where == "@scale" else W4_SMALL_ENTRIES)


def test_w4_build(
    benchmark: BenchmarkFixture, make_index: IndexFactory, scale_entries: int, scale: Scale
) -> None:
    patterns = w4_patterns(scale_entries)
    values = [object()] * scale_entries  # one shared value: only the index's cost counts
    benchmark.group = "W4 build"
    benchmark.extra_info["ops_per_round"] = scale_entries
    benchmark.pedantic(
        insert_all,
        setup=lambda: ((make_index(0), patterns, values), {}),
        rounds=scale.build_repeats,
    )


def test_w4_memory_per_entry(
    benchmark: BenchmarkFixture, implementation: Implementation, scale_entries: int
) -> None:
    # Measured in a child interpreter, not timed: recorded as extra_info of a single call.
    benchmark.group = "W4 memory"
    per_entry = benchmark.pedantic(
        index_bytes_per_entry, args=(implementation, scale_entries), rounds=1
    )
    if per_entry is None:
        pytest.skip("resident memory is not measurable here (no /proc)")
    benchmark.extra_info["bytes_per_entry"] = per_entry
    assert per_entry > 0


@pytest.mark.parametrize("where", SIZES)
def test_w4_match_hit_cache_off(
    benchmark: BenchmarkFixture,
    make_index: IndexFactory,
    scale_entries: int,
    scale: Scale,
    where: str,
) -> None:
    patterns = _patterns(where, scale_entries)
    index = shared_value_index(make_index, 0, patterns)
    subjects = w4_hit_subjects(patterns, scale.match_calls)
    assert len(index.match(subjects[0])) == 1
    benchmark.group = f"W4 match hit, cache off, {where}"
    benchmark.extra_info["ops_per_round"] = len(subjects)
    benchmark.extra_info["entries"] = len(patterns)
    benchmark(drive, index.match, (subjects,))


@pytest.mark.parametrize("where", SIZES)
def test_w4_match_repeated_cache_on(
    benchmark: BenchmarkFixture,
    make_index: IndexFactory,
    scale_entries: int,
    scale: Scale,
    where: str,
) -> None:
    patterns = _patterns(where, scale_entries)
    index = shared_value_index(make_index, DEFAULT_CACHE_SIZE, patterns)
    subject = w4_hit_subjects(patterns, 1)[0]
    benchmark.group = f"W4 match repeated, cache on, {where}"
    benchmark.extra_info["ops_per_round"] = scale.match_calls
    benchmark.extra_info["entries"] = len(patterns)
    benchmark(drive, index.match, ([subject] * scale.match_calls,))
