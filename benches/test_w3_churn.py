"""W3, churn: inserting a mix of literal and wildcard patterns, removing them all in random
order (the trie must be pruned back to nothing), and subscribe/match/unsubscribe cycles on
a populated index."""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from turnout._bench.implementations import IndexFactory, SubjectIndexLike
from turnout._bench.timing import drive
from turnout._bench.workloads import (
    DEFAULT_CACHE_SIZE,
    Scale,
    insert_all,
    subscriber_cycle,
    w3_patterns,
    w3_removal_order,
    w3_subjects,
)


@pytest.fixture(scope="module")
def patterns(scale: Scale) -> list[str]:
    return w3_patterns(scale.churn_entries)


def test_w3_insert(
    benchmark: BenchmarkFixture, make_index: IndexFactory, patterns: list[str], scale: Scale
) -> None:
    values = list(range(len(patterns)))
    benchmark.group = "W3 insert"
    benchmark.extra_info["ops_per_round"] = len(patterns)
    benchmark.pedantic(
        insert_all,
        setup=lambda: ((make_index(DEFAULT_CACHE_SIZE), patterns, values), {}),
        rounds=scale.repeats,
    )


def _remove_all(index: SubjectIndexLike, handles: list[int]) -> None:
    drive(index.remove, (handles,))


def _assert_emptied(index: SubjectIndexLike, handles: list[int]) -> None:
    assert len(index) == 0
    assert not any(index.remove(h) for h in handles[:10])  # already gone


def test_w3_remove(
    benchmark: BenchmarkFixture, make_index: IndexFactory, patterns: list[str], scale: Scale
) -> None:
    values = list(range(len(patterns)))
    order = w3_removal_order(len(patterns))

    def filled() -> tuple[tuple[SubjectIndexLike, list[int]], dict[str, object]]:
        index = make_index(DEFAULT_CACHE_SIZE)
        handles = insert_all(index, patterns, values)
        return (index, [handles[i] for i in order]), {}

    benchmark.group = "W3 remove"
    benchmark.extra_info["ops_per_round"] = len(patterns)
    benchmark.pedantic(_remove_all, setup=filled, teardown=_assert_emptied, rounds=scale.repeats)


def test_w3_subscriber_cycle(
    benchmark: BenchmarkFixture, make_index: IndexFactory, patterns: list[str], scale: Scale
) -> None:
    resident = make_index(DEFAULT_CACHE_SIZE)
    insert_all(resident, patterns, range(len(patterns)))
    start = len(patterns)
    cycles = (w3_patterns(scale.cycle_calls, start), w3_subjects(scale.cycle_calls, start))
    benchmark.group = "W3 insert+match+remove cycle"
    benchmark.extra_info["ops_per_round"] = scale.cycle_calls
    benchmark(drive, subscriber_cycle(resident), cycles)
    assert len(resident) == len(patterns)
