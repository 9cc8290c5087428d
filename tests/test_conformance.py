"""Property tests: the Rust core and the pure-Python reference agree, and both agree with the
definition of matching.

Subjects and patterns come from turnout.testing.strategies (a tiny token alphabet, so that
wildcards really hit and patterns really overlap). The Hypothesis profile ("ci" or "long")
is chosen in conftest.py.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

from hypothesis import event, given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import turnout
import turnout.reference as reference
from turnout._errors import InvalidSubjectError
from turnout.testing import strategies as ts

IMPLEMENTATIONS = {"rust": turnout, "reference": reference}

# -- strategies (turnout.testing's, as users get them) -----------------------------------

# `*` and `>` as a subject carries them, taken literally.
ANY_TOKENS = [*ts.DEFAULT_ALPHABET, "*", ">"]

# What `match` is given: well-formed subjects, and strings breaking the rules.
SUBJECTS = st.one_of(ts.literal_subjects(), ts.subjects(), ts.malformed_subjects())

# What `insert` and the pattern functions are given: mostly valid patterns; `ts.subjects()`
# puts `>` anywhere (sometimes invalid as a pattern).
PATTERNS = st.one_of(
    ts.patterns(),
    ts.patterns(),
    ts.literal_subjects(max_tokens=4),
    ts.subjects(),
    ts.malformed_subjects(),
)

QUEUES = st.sampled_from([None, None, None, "q1", "q2", "", "bad q", "q\0"])

# -- the definition, independent of both implementations ----------------------------------


def well_formed(subject: str) -> bool:
    """What `match` accepts: valid UTF-8, within bounds, no whitespace or NUL, no empty token."""
    try:
        size = len(subject.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return (
        0 < size <= reference.MAX_SUBJECT_LENGTH
        and not any(c in subject for c in " \t\n\r\f\0")
        and subject.count(".") < reference.MAX_TOKENS
        and "" not in subject.split(".")
    )


def valid_pattern(pattern: str) -> bool:
    return well_formed(pattern) and ">" not in pattern.split(".")[:-1]


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """`*` is one token of any characters but a dot; a final `>` is anything non-empty."""
    parts = {"*": "[^.]+", ">": ".+"}
    return re.compile(r"\.".join(parts.get(t, re.escape(t)) for t in pattern.split(".")))


def matches_by_definition(subject: str, pattern: str) -> bool:
    if not (well_formed(subject) and valid_pattern(pattern)):
        return False
    return pattern_regex(pattern).fullmatch(subject) is not None


# Patterns of up to 4 tokens over a, b, c: any subject two of them share, and any subject
# telling them apart, can be written with at most 5 tokens of a, b, c and one unused token.
WITNESSES = [
    ".".join(tokens)
    for size in range(1, 6)
    for tokens in itertools.product(["a", "b", "c", "z"], repeat=size)
]


def collide_by_definition(a: str, b: str) -> bool:
    return any(matches_by_definition(s, a) and matches_by_definition(s, b) for s in WITNESSES)


def subset_by_definition(pattern: str, of: str) -> bool:
    if not (valid_pattern(pattern) and valid_pattern(of)):
        return False
    return all(matches_by_definition(s, of) for s in WITNESSES if matches_by_definition(s, pattern))


# -- helpers ------------------------------------------------------------------------------


def outcome(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """What a call did, in a form two implementations can be compared on."""
    try:
        return ("returned", call(*args, **kwargs))
    except InvalidSubjectError as error:
        return ("InvalidSubjectError", error.subject, error.reason)
    except (TypeError, ValueError) as error:
        return (type(error).__name__,)


def agree(name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """Calls the function ``name`` of both implementations and checks they did the same."""
    rust = outcome(getattr(turnout, name), *args, **kwargs)
    ref = outcome(getattr(reference, name), *args, **kwargs)
    assert rust == ref, (name, args, kwargs)
    return ref


def contents(result: Any) -> tuple[list[Any], dict[str, list[Any]]]:
    return sorted(result.plain), {group: sorted(m) for group, m in result.queues.items()}


# -- the free functions -------------------------------------------------------------------


@given(st.one_of(SUBJECTS, PATTERNS))
def test_validation_agrees(text: str) -> None:
    pattern_ok = agree("is_valid_subject", text)[1]
    literal_ok = agree("is_valid_literal", text)[1]
    assert pattern_ok == valid_pattern(text)
    assert literal_ok == (pattern_ok and not {"*", ">"} & set(text.split(".")))
    agree("validate_subject", text)
    agree("validate_subject", text, literal=True)
    tokens = agree("tokens", text)
    if pattern_ok:
        assert tokens == ("returned", text.split("."))


@given(SUBJECTS, PATTERNS)
def test_subject_matches_agrees(subject: str, pattern: str) -> None:
    note(f"subject={subject!r} pattern={pattern!r}")
    assert agree("subject_matches", subject, pattern)[1] == matches_by_definition(subject, pattern)


@given(PATTERNS, PATTERNS)
def test_subjects_collide_agrees(a: str, b: str) -> None:
    assert agree("subjects_collide", a, b) == agree("subjects_collide", b, a)


@given(PATTERNS, PATTERNS)
def test_is_subset_agrees(pattern: str, of: str) -> None:
    agree("is_subset", pattern, of)


SHORT_PATTERNS = st.one_of(ts.patterns(max_tokens=4), ts.subjects(max_tokens=4))


@given(SHORT_PATTERNS, SHORT_PATTERNS)
def test_collide_and_subset_follow_the_definition(a: str, b: str) -> None:
    note(f"a={a!r} b={b!r}")
    assert agree("subjects_collide", a, b)[1] == collide_by_definition(a, b)
    assert agree("is_subset", a, b)[1] == subset_by_definition(a, b)
    assert agree("is_subset", b, a)[1] == subset_by_definition(b, a)


@given(st.sampled_from(WITNESSES), SHORT_PATTERNS, SHORT_PATTERNS)
def test_subset_means_every_match_carries_over(subject: str, pattern: str, of: str) -> None:
    for impl in IMPLEMENTATIONS.values():
        if impl.is_subset(pattern, of) and impl.subject_matches(subject, pattern):
            assert impl.subject_matches(subject, of)
        if impl.subject_matches(subject, pattern) and impl.subject_matches(subject, of):
            assert impl.subjects_collide(pattern, of)


# -- the index ----------------------------------------------------------------------------


class Entry:
    """One entry as the test remembers it, with the handle each implementation gave it."""

    def __init__(self, rust: int, ref: int, pattern: str, queue: str | None, value: int) -> None:
        self.rust, self.ref = rust, ref
        self.pattern, self.queue, self.value = pattern, queue, value


class IndexesAgree(RuleBasedStateMachine):
    """Drives a Rust index and a reference index with the same operations; after every
    step they must agree with each other and with the entries the test knows are live."""

    def __init__(self) -> None:
        super().__init__()
        self.rust: Any = None
        self.ref: Any = None
        self.live: list[Entry] = []
        self.removed: list[Entry] = []
        self.values = itertools.count()

    @initialize(
        cache_size=st.sampled_from([0, 1, 2, 8, 1024]),
        patterns=st.lists(st.tuples(ts.patterns(), QUEUES), max_size=8),
    )
    def make_indexes(self, cache_size: int, patterns: list[tuple[str, str | None]]) -> None:
        self.rust = turnout.SubjectIndex(cache_size=cache_size)
        self.ref = reference.SubjectIndex(cache_size=cache_size)
        for pattern, queue in patterns:  # a head start, so that short runs match something
            self.insert(pattern, queue, reuse_value=False)

    def expected(self, subject: str) -> tuple[list[int], dict[str, list[int]]]:
        plain: list[int] = []
        queues: dict[str, list[int]] = {}
        for entry in self.live:
            if matches_by_definition(subject, entry.pattern):
                if entry.queue is None:
                    plain.append(entry.value)
                else:
                    queues.setdefault(entry.queue, []).append(entry.value)
        return sorted(plain), {group: sorted(m) for group, m in queues.items()}

    @rule(pattern=PATTERNS, queue=QUEUES, reuse_value=st.booleans())
    def insert(self, pattern: str, queue: str | None, reuse_value: bool) -> None:
        value = self.live[-1].value if reuse_value and self.live else next(self.values)
        rust = outcome(self.rust.insert, pattern, value, queue=queue)
        ref = outcome(self.ref.insert, pattern, value, queue=queue)
        assert rust[0] == ref[0], (pattern, queue, rust, ref)
        if ref[0] == "returned":
            self.live.append(Entry(rust[1], ref[1], pattern, queue, value))
        else:
            assert rust == ref
            assert not (valid_pattern(pattern) and queue in (None, "q1", "q2"))

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        entry = self.live.pop(data.draw(st.integers(0, len(self.live) - 1)))
        assert self.rust.remove(entry.rust) is True
        assert self.ref.remove(entry.ref) is True
        self.removed.append(entry)

    @precondition(lambda self: self.removed)
    @rule(data=st.data())
    def remove_again(self, data: st.DataObject) -> None:
        entry = data.draw(st.sampled_from(self.removed))
        assert self.rust.remove(entry.rust) is False
        assert self.ref.remove(entry.ref) is False

    @rule(handle=st.integers(max_value=-1))
    def remove_impossible_handle(self, handle: int) -> None:
        assert self.rust.remove(handle) is False
        assert self.ref.remove(handle) is False

    @rule(subject=SUBJECTS)
    def match(self, subject: str) -> None:
        want = self.expected(subject)
        event("match found entries" if want != ([], {}) else "match found nothing")
        for index in (self.rust, self.ref):
            result = index.match(subject)
            assert contents(result) == want, (subject, index)
            assert len(result) == len(want[0]) + sum(map(len, want[1].values()))

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def match_a_live_pattern(self, data: st.DataObject) -> None:
        """Matches a subject made from a live pattern, so that results are rarely empty."""
        pattern = data.draw(st.sampled_from(self.live)).pattern
        token = st.sampled_from(ANY_TOKENS)
        parts = []
        for part in pattern.split("."):
            if part == "*":
                parts.append(data.draw(token))
            elif part == ">":
                parts.extend(data.draw(st.lists(token, min_size=1, max_size=3)))
            else:
                parts.append(part)
        self.match(".".join(parts))

    @rule(subjects=st.lists(SUBJECTS, max_size=8))
    def match_many(self, subjects: list[str]) -> None:
        want = [self.expected(s) for s in subjects]
        assert [contents(r) for r in self.rust.match_many(subjects)] == want
        assert [contents(r) for r in self.ref.match_many(subjects)] == want

    @rule(subject=SUBJECTS)
    def count_and_has_interest(self, subject: str) -> None:
        plain, queues = self.expected(subject)
        count = len(plain) + sum(map(len, queues.values()))
        assert self.rust.count(subject) == self.ref.count(subject) == count
        assert self.rust.has_interest(subject) == self.ref.has_interest(subject) == (count > 0)

    @invariant()
    def same_size(self) -> None:
        if self.rust is None:
            return
        assert len(self.rust) == len(self.ref) == len(self.live)
        rust, ref = self.rust.stats(), self.ref.stats()
        for key in ("subscriptions", "inserts", "removes", "matches", "cache_size"):
            assert rust[key] == ref[key], key
        for stats in (rust, ref):
            assert 0 <= stats["cache_entries"] <= stats["cache_size"]
            assert stats["cache_hits"] + stats["cache_misses"] <= stats["matches"]


IndexesAgree.TestCase.settings = settings(settings(), stateful_step_count=40)
TestIndexesAgree = IndexesAgree.TestCase
