"""turnout.testing: the strategies draw what they promise, and the matcher and index checks
pass turnout's own implementations and catch naive ones."""

from __future__ import annotations

import fnmatch
import itertools
import re
from typing import Any

import pytest
from hypothesis import find, given, settings

import turnout
import turnout.reference as reference
from turnout.events import Event
from turnout.protocol import MessageType, WSMessage
from turnout.testing import check_index, check_matcher
from turnout.testing import strategies as ts

# -- the strategies -----------------------------------------------------------------------


@given(ts.literal_subjects())
def test_literal_subjects_are_valid_literals(subject: str) -> None:
    assert reference.is_valid_literal(subject)


@given(ts.subjects())
def test_subjects_are_well_formed_for_matching(subject: str) -> None:
    assert reference.subject_matches(subject, ">")


@given(ts.patterns(alphabet=["x", "yy"], min_tokens=2, max_tokens=3, star=1.0, full_wildcard=0))
def test_pattern_controls_are_obeyed(pattern: str) -> None:
    assert pattern.split(".") in (["*", "*"], ["*", "*", "*"])


@given(ts.patterns(star=0.0, full_wildcard=0.0))
def test_patterns_without_wildcards_are_literal(pattern: str) -> None:
    assert reference.is_valid_literal(pattern)


@given(ts.patterns())
def test_patterns_are_valid(pattern: str) -> None:
    assert reference.is_valid_subject(pattern)


@given(ts.matching_pairs())
def test_matching_pairs_match(pair: tuple[str, str]) -> None:
    assert reference.subject_matches(*pair)


@given(ts.non_matching_pairs())
def test_non_matching_pairs_do_not(pair: tuple[str, str]) -> None:
    subject, pattern = pair
    assert reference.is_valid_literal(subject) and reference.is_valid_subject(pattern)
    assert not reference.subject_matches(subject, pattern)


@given(ts.malformed_subjects())
def test_malformed_subjects_are_odd_strings(text: str) -> None:
    assert isinstance(text, str)


@pytest.mark.parametrize("bad", [{"alphabet": []}, {"alphabet": ["a.b"]}, {"alphabet": ["*"]}])
def test_bad_alphabets_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ts.literal_subjects(**bad)


def test_bad_controls_are_refused() -> None:
    with pytest.raises(ValueError, match="star"):
        ts.patterns(star=2.0)
    with pytest.raises(ValueError, match="min_tokens"):
        ts.literal_subjects(min_tokens=3, max_tokens=2)


def test_go_times_cover_the_shapes() -> None:
    seen: set[str] = set()

    @settings(max_examples=300, database=None)
    @given(ts.go_times())
    def look(text: str) -> None:
        if text == "0001-01-01T00:00:00Z":
            seen.add("zero")
        seen.add("Z" if text.endswith("Z") else "offset")
        fraction = re.search(r"\.(\d+)", text)
        seen.add(f"digits-{len(fraction.group(1)) if fraction else 0}")

    look()
    assert {"zero", "Z", "offset", "digits-0", "digits-9"} <= seen


@settings(max_examples=100)
@given(ts.events())
def test_events_round_trip_through_go_json(event: Event) -> None:
    encoded = event.to_json()
    assert Event.from_json(encoded).to_json() == encoded
    assert turnout.is_valid_literal(event.subject)


@given(ts.ws_messages())
def test_ws_messages_round_trip(message: WSMessage) -> None:
    encoded = message.to_json()
    assert WSMessage.parse(encoded).to_json() == encoded
    assert message.known_type


@pytest.mark.parametrize("kind", list(MessageType), ids=str)
def test_ws_messages_of_every_type_round_trip(kind: MessageType) -> None:
    @settings(max_examples=20, database=None)
    @given(ts.ws_messages(types=[kind]))
    def round_trip(message: WSMessage) -> None:
        assert message.type is kind
        assert WSMessage.parse(message.to_json()).to_json() == message.to_json()

    round_trip()


@given(ts.ws_messages(types=["ping", MessageType.CANCEL]))
def test_ws_messages_of_chosen_types(message: WSMessage) -> None:
    assert message.type in (MessageType.PING, MessageType.CANCEL)


# -- check_matcher ------------------------------------------------------------------------


def regex_matches(subject: str, pattern: str) -> bool:
    """A translation to a regular expression that looks right but is not anchored."""
    regex = pattern.replace(".", r"\.").replace("*", r"[^.]+").replace(">", ".+")
    return re.match(regex, subject) is not None


def fnmatch_matches(subject: str, pattern: str) -> bool:
    """Shell globbing: its ``*`` crosses dots."""
    return fnmatch.fnmatchcase(subject, pattern.replace(">", "*"))


@pytest.mark.parametrize("impl", [turnout, reference], ids=["rust", "reference"])
def test_check_matcher_passes_turnout(impl: Any) -> None:
    check_matcher(impl.subject_matches, max_examples=500)


@pytest.mark.parametrize(
    ("naive", "found"),
    [
        (regex_matches, "matches('a.a', 'a') returned True; NATS says False"),
        (fnmatch_matches, "matches('a.a', '*') returned True; NATS says False"),
    ],
)
def test_check_matcher_finds_the_smallest_counterexample(naive: Any, found: str) -> None:
    with pytest.raises(AssertionError) as failed:
        check_matcher(naive, seed=1)
    assert found in str(failed.value)


# -- check_index --------------------------------------------------------------------------


class FirstMemberOnly:
    """An index that keeps one member per queue group: a plausible shortcut, and wrong."""

    def __init__(self) -> None:
        self.entries: dict[int, tuple[str, Any, str | None]] = {}
        self.handles = itertools.count(1)

    def insert(self, pattern: str, value: Any, queue: str | None = None) -> int:
        handle = next(self.handles)
        self.entries[handle] = (pattern, value, queue)
        return handle

    def remove(self, handle: int) -> bool:
        return self.entries.pop(handle, None) is not None

    def match(self, subject: str) -> tuple[list[Any], dict[str, list[Any]]]:
        plain: list[Any] = []
        queues: dict[str, list[Any]] = {}
        for pattern, value, queue in self.entries.values():
            if turnout.subject_matches(subject, pattern):
                if queue is None:
                    plain.append(value)
                else:
                    queues.setdefault(queue, [value])
        return plain, queues


@pytest.mark.parametrize("impl", [turnout, reference], ids=["rust", "reference"])
def test_check_index_passes_turnout(impl: Any) -> None:
    check_index(lambda: impl.SubjectIndex(cache_size=4), max_examples=50)


def test_check_index_catches_an_index_losing_queue_members() -> None:
    with pytest.raises(AssertionError, match=r"match\('.*'\) gave"):
        check_index(FirstMemberOnly, max_examples=100, steps=12)


# -- shrinking ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "condition", "smallest"),
    [
        (ts.literal_subjects(), lambda s: True, "a"),
        (ts.patterns(), lambda p: "*" in p, "*"),
        (ts.patterns(), lambda p: ">" in p, ">"),
        (ts.matching_pairs(), lambda pair: pair[0] != pair[1], ("a", "*")),
        (ts.go_times(), lambda t: "." in t, "2000-01-01T00:00:00.1Z"),
        (ts.go_times(), lambda t: t[-1] != "Z", "2000-01-01T00:00:00+00:01"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_strategies_shrink_to_small_readable_examples(
    strategy: Any, condition: Any, smallest: Any
) -> None:
    found = find(
        strategy, condition, settings=settings(database=None, max_examples=1000, derandomize=True)
    )
    assert found == smallest
