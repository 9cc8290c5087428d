"""Hostile and wrongly typed input for every public function and method of both
implementations: a clean ``TypeError`` or ``InvalidSubjectError`` (or, where the API says so,
an empty result or False), promptly, and never a crash.

No timings are asserted; pytest-timeout turns a hang into a failure.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from turnout._errors import InvalidSubjectError

pytestmark = pytest.mark.timeout(60)

NOT_STRINGS: list[Any] = [
    None,
    b"a.b",
    bytearray(b"a.b"),
    memoryview(b"a"),
    1,
    1.5,
    ["a"],
    object(),
]

# (name, string, the reason validation gives)
HOSTILE: list[tuple[str, str, str]] = [
    ("1 MB", "a" * 1_000_000, "longer than 65536 bytes"),
    ("1 MB of dots", "." * 1_000_000, "longer than 65536 bytes"),
    ("1 MB of wildcards", "*." * 500_000 + ">", "longer than 65536 bytes"),
    ("1 MB ending in a space", "a" * 1_000_000 + " ", "longer than 65536 bytes"),
    ("1 MB of lone surrogates", "\ud800" * 1_000_000, "not valid UTF-8"),
    ("100,000 tokens", ".".join(["a"] * 100_000), "longer than 65536 bytes"),
    ("65,537 empty tokens", "." * 65536, "more than 1024 tokens"),
    ("1025 tokens", ".".join(["a"] * 1025), "more than 1024 tokens"),
    ("lone surrogate", "a.\ud800.b", "not valid UTF-8"),
    ("NUL", "a.\0.b", "contains NUL"),
    ("only NUL", "\0", "contains NUL"),
    ("space", "a. .b", "contains whitespace"),
    ("newline", "a.b\n", "contains whitespace"),
    ("empty", "", "empty subject"),
    ("empty token", "a..b", "empty token"),
]
HOSTILE_IDS = [name for name, _, _ in HOSTILE]

# A queue group name is not a subject: dots and empty tokens are fine in it.
QUEUE_NAME_REASONS = {
    "longer than 65536 bytes",
    "not valid UTF-8",
    "contains NUL",
    "contains whitespace",
    "empty subject",
}


def subject_functions(impl: ModuleType, index: Any) -> list[tuple[str, Callable[[Any], Any]]]:
    """Every public callable that takes a subject or pattern, with the others held valid."""
    return [
        ("is_valid_subject", impl.is_valid_subject),
        ("is_valid_literal", impl.is_valid_literal),
        ("validate_subject", impl.validate_subject),
        ("validate_subject literal", lambda s: impl.validate_subject(s, literal=True)),
        ("tokens", impl.tokens),
        ("subject_matches subject", lambda s: impl.subject_matches(s, ">")),
        ("subject_matches pattern", lambda s: impl.subject_matches("a", s)),
        ("subjects_collide a", lambda s: impl.subjects_collide(s, ">")),
        ("subjects_collide b", lambda s: impl.subjects_collide(">", s)),
        ("is_subset pattern", lambda s: impl.is_subset(s, ">")),
        ("is_subset of", lambda s: impl.is_subset(">", s)),
        ("insert pattern", lambda s: index.insert(s, "value")),
        ("insert queue", lambda s: index.insert("a", "value", queue=s)),
        ("match", index.match),
        ("match_many item", lambda s: index.match_many(["a", s])),
        ("has_interest", index.has_interest),
        ("count", index.count),
    ]


@pytest.mark.parametrize("bad", NOT_STRINGS, ids=lambda v: type(v).__name__)
def test_anything_but_str_is_a_type_error(impl: ModuleType, bad: Any) -> None:
    index = impl.SubjectIndex()
    index.insert(">", "catch-all")
    for name, call in subject_functions(impl, index):
        if bad is None and name == "insert queue":
            continue  # queue=None is the documented "no queue group"
        with pytest.raises(TypeError):
            call(bad)
            pytest.fail(f"{name} accepted {bad!r}")
    assert len(index) == 1


def test_a_str_subclass_is_a_str(impl: ModuleType) -> None:
    class Subject(str):
        pass

    index = impl.SubjectIndex()
    index.insert(Subject("a.*"), 1, queue=Subject("q"))
    assert impl.is_valid_subject(Subject("a.b"))
    assert impl.subject_matches(Subject("a.b"), Subject("a.*"))
    assert index.match(Subject("a.b")).queues == {"q": [1]}


def test_match_many_needs_an_iterable_of_str(impl: ModuleType) -> None:
    index = impl.SubjectIndex()
    index.insert(">", 1)
    for bad in [None, 1, object()]:
        with pytest.raises(TypeError):
            index.match_many(bad)
    with pytest.raises(TypeError):
        index.match_many(["a", "b", None, "c"])
    with pytest.raises(ZeroDivisionError):  # an iterator's own error comes through
        index.match_many(1 // 0 for _ in range(1))
    assert len(index) == 1
    assert [len(r) for r in index.match_many(["a", "b"])] == [1, 1]


def test_cache_size_must_be_an_int(impl: ModuleType) -> None:
    for bad in [None, "1024", 1.0, b"1"]:
        with pytest.raises(TypeError):
            impl.SubjectIndex(cache_size=bad)


@pytest.mark.parametrize(("name", "subject", "reason"), HOSTILE, ids=HOSTILE_IDS)
def test_hostile_strings_are_refused_with_their_reason(
    impl: ModuleType, name: str, subject: str, reason: str
) -> None:
    assert impl.is_valid_subject(subject) is False
    assert impl.is_valid_literal(subject) is False
    for call in (
        impl.validate_subject,
        lambda s: impl.validate_subject(s, literal=True),
        impl.tokens,
    ):
        with pytest.raises(InvalidSubjectError) as caught:
            call(subject)
        assert caught.value.reason == reason
        assert caught.value.subject == subject
        assert len(str(caught.value)) < 1000  # the message does not repeat a huge subject


@pytest.mark.parametrize(("name", "subject", "reason"), HOSTILE, ids=HOSTILE_IDS)
def test_hostile_strings_relate_to_nothing(
    impl: ModuleType, name: str, subject: str, reason: str
) -> None:
    assert impl.subject_matches(subject, ">") is False
    assert impl.subject_matches(subject, subject) is False
    assert impl.subject_matches("a", subject) is False
    assert impl.subjects_collide(subject, ">") is False
    assert impl.subjects_collide(">", subject) is False
    assert impl.subjects_collide(subject, subject) is False
    assert impl.is_subset(subject, ">") is False
    assert impl.is_subset(">", subject) is False


@pytest.mark.parametrize(("name", "subject", "reason"), HOSTILE, ids=HOSTILE_IDS)
def test_hostile_strings_in_the_index(
    impl: ModuleType, name: str, subject: str, reason: str
) -> None:
    index = impl.SubjectIndex()
    index.insert(">", "catch-all")
    index.insert("*", "one", queue="q")
    before = index.stats()
    with pytest.raises(InvalidSubjectError) as caught:
        index.insert(subject, "bad")
    assert caught.value.reason == reason
    if reason in QUEUE_NAME_REASONS:
        with pytest.raises(ValueError):
            index.insert("a", "bad", queue=subject)
    assert len(index) == 2
    assert index.stats()["inserts"] == before["inserts"]
    for _ in range(3):  # the cache must not change the answer either
        result = index.match(subject)
        assert len(result) == 0 and result.plain == [] and result.queues == {}
    assert index.count(subject) == 0
    assert index.has_interest(subject) is False
    assert [len(r) for r in index.match_many([subject, "a", subject])] == [0, 2, 0]
    assert len(index.match("a")) == 2


def test_deepest_patterns_and_subjects_match(impl: ModuleType) -> None:
    """1024-token patterns of every kind against 1024-token subjects: no recursion limit."""
    index = impl.SubjectIndex()
    deepest = ".".join(["a"] * 1024)
    stars = ".".join(["*"] * 1024)
    index.insert(deepest, "literal")
    index.insert(stars, "stars")
    index.insert(".".join(["*"] * 1023 + [">"]), "full")
    index.insert(".".join(["a"] * 1023), "shorter")
    for length in range(1, 1025, 97):  # chains of `*` of many lengths share one branch
        index.insert(".".join(["*"] * length), f"stars-{length}")
    assert sorted(index.match(deepest).plain) == ["full", "literal", "stars"]
    assert index.count(deepest) == 3
    assert impl.subject_matches(deepest, stars)
    assert impl.is_subset(deepest, stars)
    assert impl.subjects_collide(deepest, stars)
    assert sorted(index.match(".".join(["b"] * 1024)).plain) == ["full", "stars"]


def test_many_wildcard_branches_stay_cheap(impl: ModuleType) -> None:
    """Wildcards at every depth of one branch: each pattern is counted once, whichever
    path through the trie reaches it."""
    index = impl.SubjectIndex(cache_size=0)
    depth = 20
    for position in range(depth):
        for star in range(position + 1):
            tokens = ["*" if i == star else "a" for i in range(position + 1)]
            index.insert(".".join(tokens), position)
    subject = ".".join(["a"] * depth)
    assert index.count(subject) == depth
    assert index.match(subject).plain == [depth - 1] * depth
