"""Subject rules and the subject functions, by hand-written vectors.

Every test runs against both implementations through the ``impl`` fixture.
"""

from __future__ import annotations

import pickle
from types import ModuleType

import pytest

import turnout
import turnout.reference
from turnout._errors import InvalidSubjectError

LONGEST = "a" * 65536
ONE_TOO_LONG = "a" * 65537
MOST_TOKENS = ".".join(["a"] * 1024)
ONE_TOKEN_TOO_MANY = ".".join(["a"] * 1025)

# Strings that are valid patterns and valid literal subjects.
VALID_LITERALS = [
    "foo",
    "foo.bar",
    "foo.bar.baz",
    "1.2.3",
    "$SYS.ACCOUNT.x",
    "a-b_c:d/e=f",
    # nats-server: a wildcard character inside a longer token is an ordinary character.
    "foo*",
    "*bar",
    ">>",
    "foo>",
    "f*o.b>r",
    "a.b*.c",
    "**.>>",
    # Unicode tokens are fine; only the five ASCII whitespace characters are forbidden.
    "ünïcödé.日本語",
    "emoji.🎉.x",
    "a\x0bb",  # vertical tab is not in the forbidden set
    "a\u00a0b",  # neither is a no-break space
    "Foo.BAR",
    LONGEST,
    "é" * 32768,  # exactly 65536 UTF-8 bytes
    "🎉" * 16384,  # exactly 65536 UTF-8 bytes
    MOST_TOKENS,
]

# Valid patterns that are not literal subjects.
WILDCARD_PATTERNS = [
    "*",
    ">",
    "foo.*",
    "foo.>",
    "*.foo",
    "*.*",
    "*.>",
    "foo.*.bar",
    "a.*.>",
    "*.*.*.*.*",
    ".".join(["a"] * 1023 + [">"]),
]

# (string, reason): invalid as a pattern and as a literal, for this reason in both cases.
INVALID = [
    ("", "empty subject"),
    (".", "empty token"),
    (".a", "empty token"),
    ("a.", "empty token"),
    ("a..b", "empty token"),
    ("..", "empty token"),
    ("*..>", "empty token"),
    (">.", "empty token"),  # the empty-token rule comes before the '>'-last rule
    (" ", "contains whitespace"),
    ("a b", "contains whitespace"),
    (" a", "contains whitespace"),
    ("a ", "contains whitespace"),
    ("a\tb", "contains whitespace"),
    ("a\nb", "contains whitespace"),
    ("a\rb", "contains whitespace"),
    ("a\fb", "contains whitespace"),
    ("foo.bar baz", "contains whitespace"),
    (". ", "contains whitespace"),  # a forbidden character outranks every token rule
    ("a..b\t", "contains whitespace"),
    ("a.>.b ", "contains whitespace"),
    ("\0", "contains NUL"),
    ("a\0b", "contains NUL"),
    ("a.b\0", "contains NUL"),
    ("a\0 b", "contains NUL"),  # the first forbidden character decides
    ("a \0b", "contains whitespace"),
    ("a.>.b", "'>' must be the last token"),
    (">.a", "'>' must be the last token"),
    (">.>", "'>' must be the last token"),
    ("a.>.*", "'>' must be the last token"),
    ("\ud800", "not valid UTF-8"),
    ("a.\udfff", "not valid UTF-8"),
    ("\ud83d\ude00", "not valid UTF-8"),  # a surrogate pair as two code points
    ("a b.\ud800", "not valid UTF-8"),  # UTF-8 is checked before everything else
    (ONE_TOO_LONG, "longer than 65536 bytes"),
    ("é" * 32768 + "a", "longer than 65536 bytes"),  # 32769 characters, 65537 bytes
    ("🎉" * 16384 + ".", "longer than 65536 bytes"),
    (" " * 65537, "longer than 65536 bytes"),  # length comes before whitespace
    ("a." * 40000, "longer than 65536 bytes"),
    (ONE_TOKEN_TOO_MANY, "more than 1024 tokens"),
    ("." * 1024, "more than 1024 tokens"),  # 1025 empty tokens: the count comes first
    ("." * 2000 + " ", "contains whitespace"),
    (".".join(["a"] * 1024 + [">"]), "more than 1024 tokens"),
]

# Strings that are valid patterns only; as literals they give the reason shown.
LITERAL_ONLY_REASONS = [(p, "wildcard in a literal subject") for p in WILDCARD_PATTERNS]


def test_bounds_are_the_documented_ones(impl: ModuleType) -> None:
    assert impl.MAX_SUBJECT_LENGTH == 65536
    assert impl.MAX_TOKENS == 1024


def test_reference_exports_the_same_names_as_turnout() -> None:
    # The subject engine's names: turnout also exports the bus's (loaded on first use).
    wanted = set(turnout.__all__) - {"__version__"} - set(turnout._LAZY)
    assert wanted <= set(turnout.reference.__all__)
    for name in wanted:
        assert hasattr(turnout.reference, name), name


def test_both_raise_the_same_error_class(impl: ModuleType) -> None:
    assert impl.InvalidSubjectError is InvalidSubjectError
    assert issubclass(impl.InvalidSubjectError, ValueError)
    with pytest.raises(InvalidSubjectError) as caught:
        impl.validate_subject("a..b")
    assert caught.value.subject == "a..b"
    assert caught.value.reason == "empty token"
    assert "empty token" in str(caught.value)
    assert "a..b" in str(caught.value)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.subject, copy.reason) == ("a..b", "empty token")


@pytest.mark.parametrize("subject", VALID_LITERALS)
def test_valid_literals(impl: ModuleType, subject: str) -> None:
    assert impl.is_valid_subject(subject)
    assert impl.is_valid_literal(subject)
    assert impl.validate_subject(subject) is None
    assert impl.validate_subject(subject, literal=True) is None


@pytest.mark.parametrize("pattern", WILDCARD_PATTERNS)
def test_wildcard_patterns_are_valid_but_not_literal(impl: ModuleType, pattern: str) -> None:
    assert impl.is_valid_subject(pattern)
    assert not impl.is_valid_literal(pattern)
    impl.validate_subject(pattern)
    with pytest.raises(InvalidSubjectError) as caught:
        impl.validate_subject(pattern, literal=True)
    assert caught.value.reason == "wildcard in a literal subject"
    assert caught.value.subject == pattern


@pytest.mark.parametrize(("subject", "reason"), INVALID, ids=lambda v: repr(v)[:40])
def test_invalid_strings_and_their_reasons(impl: ModuleType, subject: str, reason: str) -> None:
    assert not impl.is_valid_subject(subject)
    assert not impl.is_valid_literal(subject)
    for literal in (False, True):
        with pytest.raises(InvalidSubjectError) as caught:
            impl.validate_subject(subject, literal=literal)
        assert caught.value.reason == reason
        assert caught.value.subject == subject
    with pytest.raises(InvalidSubjectError) as caught:
        impl.tokens(subject)
    assert caught.value.reason == reason


def test_the_gt_rule_comes_before_the_literal_rule(impl: ModuleType) -> None:
    with pytest.raises(InvalidSubjectError) as caught:
        impl.validate_subject(">.a", literal=True)
    assert caught.value.reason == "'>' must be the last token"


def test_literal_is_keyword_only(impl: ModuleType) -> None:
    with pytest.raises(TypeError):
        impl.validate_subject("a.*", True)


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("foo", ["foo"]),
        ("foo.bar.baz", ["foo", "bar", "baz"]),
        ("*.>", ["*", ">"]),
        ("foo*.>>.*bar", ["foo*", ">>", "*bar"]),
        ("日本.語", ["日本", "語"]),
        (MOST_TOKENS, ["a"] * 1024),
        (LONGEST, [LONGEST]),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_tokens(impl: ModuleType, subject: str, expected: list[str]) -> None:
    got = impl.tokens(subject)
    assert type(got) is list
    assert got == expected


MATCHES = [
    ("foo.bar", "foo.*"),
    ("foo.bar", "foo.>"),
    ("foo.bar", "*.bar"),
    ("foo.bar", ">"),
    ("foo.bar", "*.*"),
    ("foo.bar", "*.>"),
    ("foo.bar", "foo.bar"),
    ("foo", "foo"),
    ("foo", "*"),
    ("foo", ">"),
    ("foo.bar.baz", "foo.>"),
    ("foo.bar.baz", "*.>"),
    ("foo.bar.baz", "*.bar.*"),
    ("foo.bar.baz", ">"),
    ("foo*.bar", "foo*.bar"),
    ("foo*", "*"),
    (">>", ">>"),
    ("foo>", "foo>"),
    ("日本.語", "日本.*"),
    ("é", "é"),
    (MOST_TOKENS, ">"),
    (MOST_TOKENS, "a.>"),
    (MOST_TOKENS, MOST_TOKENS),
    (LONGEST, "*"),
    # The subject's tokens are taken literally: `*` and `>` in it are ordinary tokens.
    ("a.>", "a.>"),
    ("a.>", "a.*"),
    ("a.*", "a.*"),
    ("a.*", "a.>"),
    ("*", "*"),
    (">", ">"),
    (">", "*"),
    ("a.>.b", "a.>"),
    ("a.>.b", "a.*.b"),
    ("a.>.b", ">"),
]

NON_MATCHES = [
    ("foo", "foo.>"),  # `>` needs at least one token
    ("foo", "foo.*"),
    ("foo.bar.baz", "foo.*"),
    ("foo.bar", "foo"),
    ("foo.bar", "bar.*"),
    ("foo.bar", "*"),
    ("foo.bar", "foo.bar.>"),
    ("a.b.c", "a.b"),
    ("Foo", "foo"),  # case matters
    ("foo.bar", "foo*.bar"),  # `foo*` is a literal token
    ("foobar", "foo*"),
    ("foo", "foo*"),
    ("foo*", "foo"),
    ("foo", ">>"),
    ("foo", "f>"),
    ("bar", "*bar"),
    ("a.>", "a.b"),
    ("a.>", "a.b.c"),  # a subject's `>` is one literal token, not a wildcard
    ("a.*", "a.b"),
    (">", "a"),
    (MOST_TOKENS, ".".join(["a"] * 1023)),
]

# (subject, pattern) pairs where one side is not acceptable at all.
INVALID_PAIRS = [
    ("", ">"),
    (".a", "*.a"),
    ("a.", ">"),
    ("a..b", ">"),
    ("a b", ">"),
    ("a\0", ">"),
    ("\ud800", ">"),
    (ONE_TOO_LONG, ">"),
    (ONE_TOKEN_TOO_MANY, ">"),
    ("a.b", "a.>.b"),  # the pattern is not a valid pattern
    ("a.>.b", "a.>.b"),
    ("a.b", ""),
    ("a.b", "a..b"),
    ("a.b", "a.b "),
    ("a", "\ud800"),
    ("a.b", ">."),
]


@pytest.mark.parametrize(("subject", "pattern"), MATCHES, ids=lambda v: repr(v)[:30])
def test_subject_matches(impl: ModuleType, subject: str, pattern: str) -> None:
    assert impl.subject_matches(subject, pattern) is True


@pytest.mark.parametrize(("subject", "pattern"), NON_MATCHES, ids=lambda v: repr(v)[:30])
def test_subject_does_not_match(impl: ModuleType, subject: str, pattern: str) -> None:
    assert impl.subject_matches(subject, pattern) is False


@pytest.mark.parametrize(("subject", "pattern"), INVALID_PAIRS, ids=lambda v: repr(v)[:30])
def test_anything_invalid_matches_nothing(impl: ModuleType, subject: str, pattern: str) -> None:
    assert impl.subject_matches(subject, pattern) is False


COLLIDING = [
    ("foo.*", "*.foo"),
    ("foo.bar", "foo.bar"),
    ("foo.*", "foo.bar"),
    (">", "a"),
    (">", ">"),
    ("*", ">"),
    ("a.>", "*.b"),
    ("a.>", "a.b.c"),
    ("a.>", "a.>"),
    ("a.>", "*.*.*"),
    ("*.*", "a.>"),
    ("a.*.c", "*.b.*"),
    ("foo*.>", "foo*.x"),
    (MOST_TOKENS, ">"),
]

NOT_COLLIDING = [
    ("foo.*", "foo.*.bar.>"),
    ("foo", "foo.>"),
    ("foo", "foo.*"),
    ("foo.bar", "foo.baz"),
    ("a.*", "b.*"),
    ("*", "*.*"),
    ("a.>", "b.>"),
    ("a.*.c", "a.*.d"),
    ("*.a", "*.b"),
    ("foo*", "foo"),
    ("a.b.c", "a.b"),
    # Anything invalid collides with nothing.
    ("a..b", ">"),
    ("a.b", ""),
    ("a.>.b", "a.>.b"),
    ("a b", "a b"),
    ("\ud800", ">"),
]


@pytest.mark.parametrize(("a", "b"), COLLIDING, ids=lambda v: repr(v)[:30])
def test_subjects_collide(impl: ModuleType, a: str, b: str) -> None:
    assert impl.subjects_collide(a, b) is True
    assert impl.subjects_collide(b, a) is True


@pytest.mark.parametrize(("a", "b"), NOT_COLLIDING, ids=lambda v: repr(v)[:30])
def test_subjects_do_not_collide(impl: ModuleType, a: str, b: str) -> None:
    assert impl.subjects_collide(a, b) is False
    assert impl.subjects_collide(b, a) is False


SUBSETS = [
    ("foo.*", "*.*"),
    ("*.*", ">"),
    ("foo.*", ">"),
    ("foo.bar", "foo.*"),
    ("foo.bar", "foo.>"),
    ("foo.>", ">"),
    ("foo.bar.>", "foo.>"),
    ("foo.*.>", "foo.>"),
    ("foo.*.baz", "foo.>"),
    ("a.b", "*.b"),
    ("a", ">"),
    ("*.*", "*.>"),
    ("a.>", "*.>"),
    ("foo*.bar", "*.bar"),
]

NOT_SUBSETS = [
    ("*.*", "foo.*"),
    (">", "*.*"),
    (">", "foo.>"),
    (">", "*"),
    ("foo.>", "foo.*"),  # foo.a.b is in the first only
    ("foo.*", "foo.bar"),
    ("foo", "foo.>"),
    ("foo.>", "foo"),
    ("foo.*", "foo.*.>"),
    ("foo.>", "foo.*.>"),  # foo.a is in the first only
    ("*", "a"),
    ("a.b", "a.c"),
    ("a.b.c", "a.*"),
    ("foo.bar", "foo*.bar"),
    # Anything invalid is a subset of nothing and has no subset.
    ("a..b", ">"),
    (">", "a..b"),
    ("a.>.b", ">"),
    ("", ">"),
    ("a", "\ud800"),
]


@pytest.mark.parametrize(("pattern", "of"), SUBSETS, ids=lambda v: repr(v)[:30])
def test_is_subset(impl: ModuleType, pattern: str, of: str) -> None:
    assert impl.is_subset(pattern, of) is True


@pytest.mark.parametrize(("pattern", "of"), NOT_SUBSETS, ids=lambda v: repr(v)[:30])
def test_is_not_subset(impl: ModuleType, pattern: str, of: str) -> None:
    assert impl.is_subset(pattern, of) is False


def test_subset_chain_from_the_spec(impl: ModuleType) -> None:
    assert impl.is_subset("foo.*", "*.*")
    assert impl.is_subset("*.*", ">")
    assert impl.is_subset("foo.*", ">")
    assert not impl.is_subset(">", "*.*")
    assert not impl.is_subset("*.*", "foo.*")


@pytest.mark.parametrize("pattern", VALID_LITERALS[:12] + WILDCARD_PATTERNS)
def test_every_valid_pattern_relates_to_itself(impl: ModuleType, pattern: str) -> None:
    assert impl.is_subset(pattern, pattern)
    assert impl.subjects_collide(pattern, pattern)
    assert impl.is_subset(pattern, ">")
    assert impl.subjects_collide(pattern, ">")


@pytest.mark.parametrize("literal", VALID_LITERALS)
def test_a_literal_matches_itself_and_the_full_wildcard(impl: ModuleType, literal: str) -> None:
    assert impl.subject_matches(literal, literal)
    assert impl.subject_matches(literal, ">")
    assert impl.subject_matches(literal, "*") == ("." not in literal)
