"""The subject index, against both implementations (``impl`` fixture)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import turnout.reference
from turnout._errors import InvalidSubjectError

CACHE_SIZES = [0, 1, 2, 1024]


def contents(result: Any) -> tuple[list[Any], dict[str, list[Any]]]:
    """A match result with its order taken out: sorted plain values, sorted queue members."""
    return sorted(result.plain), {group: sorted(m) for group, m in result.queues.items()}


def values(result: Any) -> list[Any]:
    """Every value in a match result, plain and queued, sorted."""
    found = list(result.plain)
    for members in result.queues.values():
        found.extend(members)
    return sorted(found)


def seen(index: Any, subject: str) -> list[Any]:
    """Matches ``subject`` three times, so that caches which admit a subject only on its
    second miss serve the third from the cache; all three must agree."""
    first, second, third = (values(index.match(subject)) for _ in range(3))
    assert first == second == third, subject
    return first


def test_an_empty_index(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    assert len(index) == 0
    assert index.cache_size == 1024
    result = index.match("a.b")
    assert len(result) == 0
    assert result.plain == []
    assert result.queues == {}
    assert not index.has_interest("a.b")
    assert index.count("a.b") == 0


@pytest.mark.parametrize("cache_size", [0, 16, 1024])
def test_cache_size_is_reported(impl: ModuleType, cache_size: int) -> None:
    index = impl.SubjectIndex(cache_size=cache_size)
    assert index.cache_size == cache_size
    assert index.stats()["cache_size"] == cache_size


def test_negative_or_non_int_cache_size_is_refused(impl: ModuleType) -> None:
    with pytest.raises((ValueError, OverflowError)):
        impl.SubjectIndex(-1)
    with pytest.raises(TypeError):
        impl.SubjectIndex("16")
    with pytest.raises(TypeError):
        impl.SubjectIndex(1.5)


def test_insert_returns_distinct_int_handles_never_reused(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    handles = []
    for i in range(200):
        handle = index.insert("a.b", i)
        assert type(handle) is int
        handles.append(handle)
        if i % 2:
            assert index.remove(handle)
    assert len(set(handles)) == len(handles)
    assert len(index) == 100


def test_reference_handles_count_from_one() -> None:
    index = turnout.reference.SubjectIndex()
    assert [index.insert("a", None) for _ in range(3)] == [1, 2, 3]


def test_match_finds_every_kind_of_pattern(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    for pattern in ["foo.bar", "foo.*", "*.bar", "foo.>", ">", "*.*", "*.>"]:
        index.insert(pattern, pattern)
    for pattern in ["foo", "foo.bar.baz", "bar.*", "foo.baz", "*", "foo.bar.>", "foo*.bar"]:
        index.insert(pattern, "miss " + pattern)
    assert values(index.match("foo.bar")) == sorted(
        ["foo.bar", "foo.*", "*.bar", "foo.>", ">", "*.*", "*.>"]
    )
    assert index.count("foo.bar") == 7
    assert index.match("foo.bar").queues == {}
    assert values(index.match("foo")) == sorted([">", "miss *", "miss foo"])


def test_full_wildcard_needs_at_least_one_token(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    index.insert("foo.>", 1)
    assert values(index.match("foo")) == []
    assert values(index.match("foo.a")) == [1]
    assert values(index.match("foo.a.b.c.d")) == [1]


def test_match_takes_the_subject_literally(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    index.insert("a.b.c", "a.b.c")
    index.insert("a.>", "a.>")
    index.insert("a.*", "a.*")
    index.insert("a.b", "a.b")
    index.insert("a.*.c", "a.*.c")
    # `>` and `*` in a subject are ordinary tokens: only patterns whose second token accepts
    # any token (`*`, `>`) match them, never the literal `b`.
    assert values(index.match("a.>")) == ["a.*", "a.>"]
    assert values(index.match("a.*")) == ["a.*", "a.>"]
    assert values(index.match("a.>.c")) == ["a.*.c", "a.>"]
    assert values(index.match("a.*.c")) == ["a.*.c", "a.>"]


def test_match_of_a_wildcard_subject_from_the_spec(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    index.insert("a.b.c", 1)
    full = index.insert("a.>", 2)
    assert values(index.match("a.>")) == [2]
    index.remove(full)
    assert values(index.match("a.>")) == []


@pytest.mark.parametrize(
    "subject", ["", "a..b", ".a", "a.", "a b", "a\tb", "a\0b", "\ud800", "a" * 65537]
)
def test_a_malformed_subject_matches_nothing(impl: ModuleType, subject: str) -> None:
    index = impl.SubjectIndex()
    index.insert(">", 1)
    index.insert("*", 2)
    index.insert("a.*.b", 3)
    for _ in range(3):
        result = index.match(subject)
        assert len(result) == 0
        assert result.plain == [] and result.queues == {}
    assert index.count(subject) == 0
    assert index.has_interest(subject) is False
    assert [len(r) for r in index.match_many([subject, "a", subject])] == [0, 2, 0]


def test_queue_groups(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    index.insert("orders.*", "w1", queue="workers")
    index.insert("orders.eu", "w2", queue="workers")
    index.insert("orders.>", "a1", queue="auditors")
    index.insert("orders.eu", "p1")
    index.insert("orders.us", "us", queue="workers")
    index.insert("*.eu", "p2")
    result = index.match("orders.eu")
    assert contents(result) == (
        ["p1", "p2"],
        {"workers": ["w1", "w2"], "auditors": ["a1"]},
    )
    assert len(result) == 5
    assert index.count("orders.eu") == 5
    assert contents(index.match("orders.us")) == ([], {"workers": ["us", "w1"], "auditors": ["a1"]})
    assert contents(index.match("orders.eu.x")) == ([], {"auditors": ["a1"]})


def test_the_same_queue_name_on_different_patterns_is_one_group(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    index.insert("a.b", 1, queue="q")
    index.insert("a.*", 2, queue="q")
    index.insert(">", 3, queue="q")
    assert contents(index.match("a.b")) == ([], {"q": [1, 2, 3]})


def test_a_plain_and_a_queued_entry_of_one_value_are_both_returned(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    index.insert("a", "v")
    index.insert("a", "v", queue="q")
    assert contents(index.match("a")) == (["v"], {"q": ["v"]})
    assert len(index.match("a")) == 2


def test_duplicates_are_separate_entries(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    first = index.insert("a.b", "v")
    second = index.insert("a.b", "v")
    index.insert("a.b", "v", queue="q")
    index.insert("a.b", "v", queue="q")
    assert first != second
    assert len(index) == 4
    assert contents(index.match("a.b")) == (["v", "v"], {"q": ["v", "v"]})
    assert index.count("a.b") == 4
    assert index.remove(first)
    assert contents(index.match("a.b")) == (["v"], {"q": ["v", "v"]})
    assert len(index) == 3


def test_queue_group_disappears_with_its_last_member(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    member = index.insert("a", 1, queue="q")
    index.insert("a", 2)
    assert index.match("a").queues == {"q": [1]}
    index.remove(member)
    assert index.match("a").queues == {}
    assert index.match("a").plain == [2]


def test_remove(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    handle = index.insert("a.*", 1)
    keep = index.insert("a.b", 2)
    assert index.remove(handle) is True
    assert index.remove(handle) is False
    assert values(index.match("a.b")) == [2]
    assert index.remove(keep) is True
    assert index.remove(keep) is False
    assert len(index) == 0


@pytest.mark.parametrize("handle", [0, -1, 12345, 2**40, 2**64, 2**64 + 1, -(2**70)])
def test_removing_an_unknown_handle_is_false(impl: ModuleType, handle: int) -> None:
    index = impl.SubjectIndex()
    index.insert("a", 1)
    assert index.remove(handle) is False
    assert len(index) == 1


@pytest.mark.parametrize("handle", [True, False, 1.0, "1", None, b"1", [1]])
def test_a_handle_must_be_an_int(impl: ModuleType, handle: object) -> None:
    index = impl.SubjectIndex()
    index.insert("a", 1)
    with pytest.raises(TypeError):
        index.remove(handle)
    assert len(index) == 1


def test_removing_everything_prunes_the_trie(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    empty = index.stats()
    patterns = [
        "a",
        "a.b",
        "a.b.c.d.e.f",
        "a.*.c",
        "*.*",
        "a.>",
        ">",
        "x.y.>",
        "é.日本",
        ".".join(["t"] * 1024),
    ]
    handles = []
    for round_ in range(3):
        for pattern in patterns:
            handles.append(index.insert(pattern, round_))
            handles.append(index.insert(pattern, round_, queue=f"q{round_}"))
        index.match("a.b")
        assert len(index) == len(handles)
        assert index.stats()["subscriptions"] == len(handles)
        if "nodes" in empty:
            assert index.stats()["nodes"] > empty["nodes"]
        for handle in reversed(handles) if round_ % 2 else handles:
            assert index.remove(handle)
        handles.clear()
        assert len(index) == 0
        after = index.stats()
        assert after["subscriptions"] == 0
        # Pruned back to the bare root (where the implementation reports its node count).
        assert after.get("nodes") == empty.get("nodes")
        assert len(index.match("a.b")) == 0
        assert not index.has_interest("t." * 1023 + "t")


def test_removing_part_of_a_branch_keeps_the_rest(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    deep = index.insert("a.b.c.d", "deep")
    index.insert("a.b", "short")
    index.insert("a.b.*", "wide")
    assert index.remove(deep)
    assert values(index.match("a.b")) == ["short"]
    assert values(index.match("a.b.c")) == ["wide"]
    assert values(index.match("a.b.c.d")) == []
    deep = index.insert("a.b.c.d", "deep")
    assert values(index.match("a.b.c.d")) == ["deep"]


REFUSED_INSERTS: list[tuple[Any, Any, type[Exception]]] = [
    ("a.>.b", None, InvalidSubjectError),
    ("a..b", None, InvalidSubjectError),
    ("", None, InvalidSubjectError),
    ("a b", None, InvalidSubjectError),
    ("a\0", None, InvalidSubjectError),
    ("\ud800", None, InvalidSubjectError),
    ("a" * 65537, None, InvalidSubjectError),
    (".".join(["a"] * 1025), None, InvalidSubjectError),
    ("a.b", "", ValueError),
    ("a.b", "q q", ValueError),
    ("a.b", "q\t", ValueError),
    ("a.b", "q\0", ValueError),
    ("a.b", "\ud800", ValueError),
    ("a.b", b"q", TypeError),
    ("a.b", 1, TypeError),
    (b"a.b", None, TypeError),
    (None, None, TypeError),
    (1, None, TypeError),
]


@pytest.mark.parametrize(("pattern", "queue", "error"), REFUSED_INSERTS, ids=repr)
def test_a_refused_insert_leaves_the_index_unchanged(
    impl: ModuleType, pattern: Any, queue: Any, error: type[Exception]
) -> None:
    index = impl.SubjectIndex()
    index.insert("a.b", 1)
    index.insert("a.*", 2, queue="g")
    index.insert("a.>", 3)
    probes = ["a.b", "a.c", "a.b.c", "a", "b"]
    before = ([contents(index.match(s)) for s in probes], len(index), index.stats())
    with pytest.raises(error):
        index.insert(pattern, "bad", queue=queue)
    after_stats = index.stats()
    after = ([contents(index.match(s)) for s in probes], len(index), after_stats)
    assert after[:2] == before[:2]
    for key in ("subscriptions", "inserts", "removes", "nodes"):
        assert after_stats.get(key) == before[2].get(key), key
    # The handle sequence is untouched too: the next insert still works and is removable.
    handle = index.insert("a.b", 4)
    assert values(index.match("a.b")) == [1, 2, 3, 4]
    assert index.remove(handle)


def test_an_invalid_pattern_is_reported_with_its_reason(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    with pytest.raises(InvalidSubjectError) as caught:
        index.insert("a.>.b", 1)
    assert caught.value.subject == "a.>.b"
    assert caught.value.reason == "'>' must be the last token"


def test_a_queue_name_is_not_a_subject(impl: ModuleType) -> None:
    """Queue group names only have to be non-empty, without whitespace or NUL."""
    index = impl.SubjectIndex()
    index.insert("a", 1, queue="workers.eu")
    index.insert("a", 2, queue="*")
    index.insert("a", 3, queue="日本")
    assert contents(index.match("a")) == ([], {"workers.eu": [1], "*": [2], "日本": [3]})


@pytest.mark.parametrize("cache_size", CACHE_SIZES)
def test_cache_follows_literal_and_wildcard_changes(impl: ModuleType, cache_size: int) -> None:
    index = impl.SubjectIndex(cache_size=cache_size)
    assert seen(index, "a.b") == []
    literal = index.insert("a.b", "lit")
    assert seen(index, "a.b") == ["lit"]
    wildcard = index.insert("a.*", "star")
    assert seen(index, "a.b") == ["lit", "star"]
    assert seen(index, "a.c") == ["star"]
    full = index.insert("a.>", "full", queue="g")
    assert seen(index, "a.b") == ["full", "lit", "star"]
    assert index.count("a.b") == 3
    assert index.has_interest("a.c")
    other = index.insert("x.y", "other")  # a literal elsewhere must not disturb a.b
    assert seen(index, "a.b") == ["full", "lit", "star"]
    assert seen(index, "x.y") == ["other"]
    assert index.remove(wildcard)
    assert seen(index, "a.b") == ["full", "lit"]
    assert seen(index, "a.c") == ["full"]
    assert index.remove(literal)
    assert seen(index, "a.b") == ["full"]
    assert index.remove(full)
    assert seen(index, "a.b") == []
    assert seen(index, "a.c") == []
    assert index.count("a.b") == 0
    assert not index.has_interest("a.c")
    assert seen(index, "x.y") == ["other"]
    assert index.remove(other)
    assert seen(index, "x.y") == []


@pytest.mark.parametrize("cache_size", CACHE_SIZES)
def test_cache_never_serves_a_stale_result_after_many_subjects(
    impl: ModuleType, cache_size: int
) -> None:
    index = impl.SubjectIndex(cache_size=cache_size)
    catch_all = index.insert("s.>", "all")
    subjects = [f"s.{i}" for i in range(300)]
    for _ in range(2):
        for result in index.match_many(subjects):
            assert values(result) == ["all"]
    index.insert("s.7", "seven")
    index.insert("s.*", "star")
    for subject, result in zip(subjects, index.match_many(subjects), strict=True):
        expected = ["all", "seven", "star"] if subject == "s.7" else ["all", "star"]
        assert values(result) == expected
        assert values(index.match(subject)) == expected
        assert index.count(subject) == len(expected)
    index.remove(catch_all)
    for subject in subjects:
        expected = ["seven", "star"] if subject == "s.7" else ["star"]
        assert seen(index, subject) == expected


@pytest.mark.parametrize("cache_size", CACHE_SIZES)
def test_cache_stays_bounded(impl: ModuleType, cache_size: int) -> None:
    index = impl.SubjectIndex(cache_size=cache_size)
    index.insert(">", 1)
    for i in range(3000):
        index.match(f"u.{i}")
        index.match(f"u.{i}")
    stats = index.stats()
    assert 0 <= stats["cache_entries"] <= cache_size
    assert stats["matches"] == 6000


def test_count_is_exact_on_overlapping_patterns(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    overlapping = [">", "a.>", "a.*", "*.b", "a.b", "a.b", "*.*", "*.>"]
    for pattern in overlapping:
        index.insert(pattern, pattern)
    for pattern in ["a.*", "a.b", ">"]:
        index.insert(pattern, pattern, queue="q")
    for pattern in ["a.b.c", "b.*", "a", "a.c"]:
        index.insert(pattern, pattern)
    assert index.count("a.b") == len(overlapping) + 3
    assert len(index.match("a.b")) == len(overlapping) + 3
    assert index.count("a.b.c") == 5  # >, a.>, *.>, the queued >, a.b.c
    assert index.count("a") == 3  # >, the queued > and a
    assert index.count("z") == 2
    assert index.count("z.b") == 5  # >, *.b, *.*, *.>, the queued >


def test_has_interest(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    handle = index.insert("a.*", 1, queue="q")
    assert index.has_interest("a.b")
    assert not index.has_interest("a")
    assert not index.has_interest("a.b.c")
    assert not index.has_interest("b.a")
    index.remove(handle)
    assert not index.has_interest("a.b")


def test_match_many_equals_one_match_per_subject(impl: ModuleType) -> None:
    index = impl.SubjectIndex(cache_size=8)
    index.insert("x.*", 1)
    index.insert("x.y", 2, queue="q")
    index.insert("x.>", 3, queue="r")
    index.insert("*.z", 4)
    subjects = ["x.y", "x.z", "x..y", "x.y", "nothing", "x.y", "", "x.y.z", "a.z", "x.>", "x.y"]
    many = index.match_many(subjects)
    assert isinstance(many, list)
    assert len(many) == len(subjects)
    for subject, result in zip(subjects, many, strict=True):
        single = index.match(subject)
        assert contents(result) == contents(single), subject
        assert len(result) == len(single)
    assert index.match_many([]) == []


def test_match_many_takes_any_iterable(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    index.insert("a.*", 1)

    def generated() -> Iterator[str]:
        yield "a.b"
        yield "b"
        yield "a.c"

    assert [len(r) for r in index.match_many(generated())] == [1, 0, 1]
    assert [len(r) for r in index.match_many(("a.x", "a.y"))] == [1, 1]
    assert [len(r) for r in index.match_many(iter(["a.x"]))] == [1]


def test_values_are_returned_by_identity(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    plain, queued, unhashable = object(), object(), {"a": [1]}
    index.insert("a.*", plain)
    index.insert("a.b", queued, queue="q")
    index.insert(">", unhashable)
    for _ in range(3):  # the cached result must hold the same objects
        result = index.match("a.b")
        assert any(v is plain for v in result.plain)
        assert any(v is unhashable for v in result.plain)
        assert result.queues["q"][0] is queued
    (batched,) = index.match_many(["a.b"])
    assert any(v is plain for v in batched.plain)


def test_changing_a_result_does_not_change_the_index(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    index.insert("a", 1)
    index.insert("a", 2, queue="q")
    for _ in range(3):
        result = index.match("a")
        result.plain.append("junk")
        result.queues.setdefault("q", []).append("junk")
        result.queues["new"] = ["junk"]
        assert contents(index.match("a")) == ([1], {"q": [2]})


def test_match_result_repr_and_len(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    index.insert("a", "plain-value")
    index.insert("a", "queued-value", queue="grp")
    result = index.match("a")
    assert len(result) == 2
    text = repr(result)
    assert text.startswith("MatchResult(")
    assert "plain-value" in text and "queued-value" in text and "grp" in text


def test_len_counts_entries(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    handles = [index.insert(p, i) for i, p in enumerate(["a", "a", "b.*", ">", "c.>"])]
    handles.append(index.insert("a", 9, queue="q"))
    assert len(index) == 6
    index.remove(handles[0])
    assert len(index) == 5


STATS_KEYS = {
    "subscriptions",
    "matches",
    "cache_hits",
    "cache_misses",
    "cache_entries",
    "cache_size",
    "inserts",
    "removes",
    "max_fanout",
    "avg_fanout",
}


def test_stats_keys_and_counters(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    stats = index.stats()
    assert set(stats) >= STATS_KEYS
    assert all(stats[key] == 0 for key in STATS_KEYS - {"cache_size"})
    handles = [index.insert("a.*", 1), index.insert("a.b", 2), index.insert(">", 3, queue="q")]
    index.remove(handles[0])
    index.remove(handles[0])  # a failed remove is not counted
    for _ in range(3):
        index.match("a.b")
    index.match_many(["a.b", "zz"])
    stats = index.stats()
    assert stats["subscriptions"] == 2
    assert stats["inserts"] == 3
    assert stats["removes"] == 1
    assert stats["matches"] == 5
    assert stats["cache_hits"] >= 1  # the same subject three times in a row
    assert stats["cache_hits"] + stats["cache_misses"] <= stats["matches"]
    assert stats["cache_entries"] >= 1
    assert stats["max_fanout"] == 2  # only a.b (fan-out 2) or also zz (0) is cached
    assert 0 < stats["avg_fanout"] <= 2
    assert isinstance(stats["avg_fanout"], float)
    for key in STATS_KEYS - {"avg_fanout"}:
        assert isinstance(stats[key], int), key


def test_stats_without_a_cache(impl: ModuleType) -> None:
    index = impl.SubjectIndex(cache_size=0)
    index.insert("a", 1)
    for _ in range(4):
        index.match("a")
    stats = index.stats()
    assert stats["matches"] == 4
    assert stats["cache_hits"] == 0
    assert stats["cache_entries"] == 0
    assert stats["cache_size"] == 0
    assert stats["max_fanout"] == 0
    assert stats["avg_fanout"] == 0


def test_fanout_is_over_cached_results(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    for i in range(5):
        index.insert("big", i)
    index.insert("small", 0)
    for _ in range(3):
        index.match("big")
        index.match("small")
    stats = index.stats()
    assert stats["cache_entries"] == 2
    assert stats["max_fanout"] == 5
    assert stats["avg_fanout"] == pytest.approx(3.0)
    index.insert("other", 0)  # a change may drop cached results; fan-out follows what stays
    stats = index.stats()
    assert stats["max_fanout"] <= 5
    if stats["cache_entries"] == 0:
        assert stats["max_fanout"] == 0 and stats["avg_fanout"] == 0


@pytest.mark.parametrize("cache_size", CACHE_SIZES)
def test_a_held_result_keeps_what_it_matched(impl: ModuleType, cache_size: int) -> None:
    index = impl.SubjectIndex(cache_size=cache_size)
    handles = [index.insert("a.b", n) for n in range(50)]
    queued = [index.insert("a.*", n, queue="q") for n in range(100, 120)]
    held = [index.match("a.b") for _ in range(3)]  # the later ones may be cache hits
    index.insert("a.b", 50)
    index.insert("a.>", 51)
    for handle in handles[::3] + queued[:5]:
        index.remove(handle)
    for result in held:
        assert result.plain == list(range(50))
        assert result.queues == {"q": list(range(100, 120))}
        assert len(result) == 70
    now = index.match("a.b")
    # Trie order: the `>` child's entries come before the literal's.
    assert now.plain == [51] + [n for n in range(50) if n % 3] + [50]
    assert now.queues == {"q": list(range(105, 120))}


def test_values_keep_insertion_order_through_removals(impl: ModuleType) -> None:
    # Enough entries on one pattern, removed scattered, that the Rust index compacts the
    # pattern's value list more than once.
    index = impl.SubjectIndex(cache_size=0)
    plain = {index.insert("fan.out", n): n for n in range(600)}
    queued = {index.insert("fan.out", n, queue="g"): n for n in range(1000, 1300)}
    for handles in (plain, queued):
        for position, handle in enumerate(list(handles)):
            if position % 4 != 1:
                assert index.remove(handle) is True
                del handles[handle]
    later = {index.insert("fan.out", n): n for n in range(700, 710)}
    result = index.match("fan.out")
    assert result.plain == sorted(plain.values()) + list(range(700, 710))
    assert result.queues == {"g": sorted(queued.values())}
    # Every handle still names its own entry after its value moved.
    for handle, value in [*plain.items(), *later.items()]:
        assert index.remove(handle) is True
        assert value not in index.match("fan.out").plain
    assert index.match("fan.out").queues == {"g": sorted(queued.values())}


@pytest.mark.parametrize("cache_size", [0, 1024])
def test_removed_values_are_released(impl: ModuleType, cache_size: int) -> None:
    class Value:
        pass

    index = impl.SubjectIndex(cache_size=cache_size)
    values = [Value() for _ in range(20)]
    refs = [weakref.ref(v) for v in values]
    handles = [index.insert("x.y", v) for v in values]
    held = index.match("x.y")
    index.match("x.y")
    del values
    for handle in handles[:10]:
        index.remove(handle)
    gc.collect()
    assert all(ref() is not None for ref in refs), "a held result keeps its values"
    del held
    gc.collect()
    assert [ref() is None for ref in refs] == [True] * 10 + [False] * 10
    for handle in handles[10:]:
        index.remove(handle)
    gc.collect()
    assert all(ref() is None for ref in refs)
    assert index.stats()["nodes"] == 1
