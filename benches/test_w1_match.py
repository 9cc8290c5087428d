"""W1, nats-server's sublist benchmark set: the build, and matches of 1- to 4-token subjects,
repeated and unique, with the match cache on and off, one at a time and in batches."""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from turnout._bench.implementations import IndexFactory, SubjectIndexLike
from turnout._bench.timing import drive
from turnout._bench.workloads import (
    DEFAULT_CACHE_SIZE,
    W1_SUBJECT_TOKENS,
    Scale,
    UniqueTokens,
    insert_all,
    w1_patterns,
    w1_repeated_subject,
    w1_unique_subjects,
)

CACHE_SIZES = {"cache on": DEFAULT_CACHE_SIZE, "cache off": 0}


@pytest.fixture(scope="module")
def patterns() -> list[str]:
    return w1_patterns()


@pytest.fixture(scope="module")
def w1_indexes(make_index: IndexFactory, patterns: list[str]) -> dict[str, SubjectIndexLike]:
    """The W1 set, once with the match cache on and once with it off."""
    indexes: dict[str, SubjectIndexLike] = {}
    for cache, size in CACHE_SIZES.items():
        indexes[cache] = make_index(size)
        insert_all(indexes[cache], patterns, range(len(patterns)))
    return indexes


@pytest.fixture(scope="module")
def minted() -> UniqueTokens:
    """One source of fresh tokens for the module: no two tests share a unique subject."""
    return UniqueTokens()


def test_w1_build(
    benchmark: BenchmarkFixture, make_index: IndexFactory, patterns: list[str], scale: Scale
) -> None:
    values = list(range(len(patterns)))
    benchmark.group = "W1 build"
    benchmark.extra_info["ops_per_round"] = len(patterns)
    benchmark.pedantic(
        insert_all,
        setup=lambda: ((make_index(DEFAULT_CACHE_SIZE), patterns, values), {}),
        rounds=scale.build_repeats,
    )


@pytest.mark.parametrize("cache", CACHE_SIZES)
@pytest.mark.parametrize("tokens", W1_SUBJECT_TOKENS)
def test_w1_match_repeated(
    benchmark: BenchmarkFixture,
    w1_indexes: dict[str, SubjectIndexLike],
    scale: Scale,
    tokens: int,
    cache: str,
) -> None:
    index = w1_indexes[cache]
    subject = w1_repeated_subject(tokens)
    assert len(index.match(subject)) == 1
    benchmark.group = f"W1 match {tokens} tokens, repeated, {cache}"
    benchmark.extra_info["ops_per_round"] = scale.match_calls
    benchmark(drive, index.match, ([subject] * scale.match_calls,))


@pytest.mark.parametrize("cache", CACHE_SIZES)
@pytest.mark.parametrize("tokens", W1_SUBJECT_TOKENS)
def test_w1_match_unique(
    benchmark: BenchmarkFixture,
    w1_indexes: dict[str, SubjectIndexLike],
    minted: UniqueTokens,
    scale: Scale,
    tokens: int,
    cache: str,
) -> None:
    index = w1_indexes[cache]
    benchmark.group = f"W1 match {tokens} tokens, unique, {cache}"
    benchmark.extra_info["ops_per_round"] = scale.match_calls
    # Every round gets subjects never matched before.
    benchmark.pedantic(
        drive,
        setup=lambda: ((index.match, (w1_unique_subjects(tokens, scale.match_calls, minted),)), {}),
        rounds=scale.repeats,
    )


def test_w1_match_many_repeated(
    benchmark: BenchmarkFixture, w1_indexes: dict[str, SubjectIndexLike], scale: Scale
) -> None:
    index = w1_indexes["cache on"]
    subjects = [w1_repeated_subject(W1_SUBJECT_TOKENS[-1])] * scale.many_batch
    benchmark.group = "W1 match_many, repeated, cache on"
    benchmark.extra_info["ops_per_round"] = scale.many_batch
    results = benchmark(index.match_many, subjects)
    assert len(results) == scale.many_batch


@pytest.mark.parametrize("cache", CACHE_SIZES)
def test_w1_match_many_unique(
    benchmark: BenchmarkFixture,
    w1_indexes: dict[str, SubjectIndexLike],
    minted: UniqueTokens,
    scale: Scale,
    cache: str,
) -> None:
    index = w1_indexes[cache]
    tokens = W1_SUBJECT_TOKENS[-1]
    benchmark.group = f"W1 match_many, unique, {cache}"
    benchmark.extra_info["ops_per_round"] = scale.many_batch
    benchmark.pedantic(
        index.match_many,
        setup=lambda: ((w1_unique_subjects(tokens, scale.many_batch, minted),), {}),
        rounds=scale.repeats,
    )
