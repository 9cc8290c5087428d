"""A pure-Python twin of turnout's Rust subject functions and ``SubjectIndex``.

It is written to be read, not to be fast: property tests use it as the oracle the Rust core
must agree with, and the benchmarks use it as the plain-Python baseline. It therefore
imports nothing from ``turnout._core``; only the exception class is shared, so both
implementations raise the very same ``InvalidSubjectError``.

Rules, checked in this order (the first one broken is the reason reported):

1. not a ``str``: ``TypeError``;
2. no UTF-8 form (lone surrogates): "not valid UTF-8";
3. empty: "empty subject";
4. more than ``MAX_SUBJECT_LENGTH`` UTF-8 bytes: "longer than 65536 bytes";
5. the first forbidden character: space, tab, newline, carriage return or form feed gives
   "contains whitespace", NUL gives "contains NUL";
6. more than ``MAX_TOKENS`` tokens: "more than 1024 tokens";
7. an empty token: "empty token";
8. a ``>`` token that is not the last one: "'>' must be the last token";
9. for literal subjects only, a ``*`` or ``>`` token: "wildcard in a literal subject".

A subject handed to matching only has to pass rules 1-7 (it is "well-formed"): each of its
tokens is taken literally, so ``*`` and ``>`` in it are ordinary tokens. A pattern passes
1-8, a literal subject 1-9.
"""

from __future__ import annotations

import itertools
import operator
import re
import threading
from collections.abc import Iterable
from typing import Any, Final, Literal

from turnout._errors import InvalidSubjectError

__all__ = [
    "MAX_SUBJECT_LENGTH",
    "MAX_TOKENS",
    "InvalidSubjectError",
    "MatchResult",
    "SubjectIndex",
    "is_subset",
    "is_valid_literal",
    "is_valid_subject",
    "subject_matches",
    "subjects_collide",
    "tokens",
    "validate_subject",
]

MAX_SUBJECT_LENGTH: Final = 65536
"""Longest subject accepted, in UTF-8 bytes: hostile input costs bounded work."""

MAX_TOKENS: Final = 1024
"""Most tokens a subject may have."""

SINGLE_WILDCARD: Final = "*"
"""In a pattern, matches exactly one token."""

FULL_WILDCARD: Final = ">"
"""In a pattern, matches one or more tokens; only allowed as the last token."""

_FORBIDDEN_CHARACTER = re.compile("[ \t\n\r\f\0]")


# ---------------------------------------------------------------------------------------
# Subject rules


# How far down the list of rules (module docstring) a string is checked; each kind adds
# rules to the one before. Plain ints rather than an Enum: an Enum member lookup costs as
# much as a token split, and this runs on every uncached match.
_LastRule = Literal[7, 8, 9]
_WELL_FORMED: Final = 7  # what matching takes
_PATTERN: Final = 8  # what is subscribed
_LITERAL: Final = 9  # what is published


def _require_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    return value


def _utf8_length(text: str) -> int | None:
    """The length of ``text`` in UTF-8 bytes, or None if it has no UTF-8 form."""
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def _parse(subject: str, last_rule: _LastRule) -> list[str]:
    """The tokens of ``subject``, or ``InvalidSubjectError`` naming the first rule broken."""
    length = _utf8_length(subject)
    if length is None:
        raise InvalidSubjectError(subject, "not valid UTF-8")
    if not subject:
        raise InvalidSubjectError(subject, "empty subject")
    if length > MAX_SUBJECT_LENGTH:
        raise InvalidSubjectError(subject, f"longer than {MAX_SUBJECT_LENGTH} bytes")
    forbidden = _FORBIDDEN_CHARACTER.search(subject)
    if forbidden is not None:
        reason = "contains NUL" if forbidden.group() == "\0" else "contains whitespace"
        raise InvalidSubjectError(subject, reason)
    # Counted before splitting so that a flood of dots is refused without building a list.
    if subject.count(".") >= MAX_TOKENS:
        raise InvalidSubjectError(subject, f"more than {MAX_TOKENS} tokens")
    parts = subject.split(".")
    if "" in parts:
        raise InvalidSubjectError(subject, "empty token")
    if last_rule < _PATTERN:
        return parts
    if FULL_WILDCARD in parts[:-1]:
        raise InvalidSubjectError(subject, "'>' must be the last token")
    if last_rule < _LITERAL:
        return parts
    if SINGLE_WILDCARD in parts or FULL_WILDCARD in parts:
        raise InvalidSubjectError(subject, "wildcard in a literal subject")
    return parts


def _parse_or_none(subject: str, last_rule: _LastRule) -> list[str] | None:
    try:
        return _parse(subject, last_rule)
    except InvalidSubjectError:
        return None


def is_valid_subject(subject: str) -> bool:
    """Whether ``subject`` is a valid pattern or literal subject."""
    return _parse_or_none(_require_str(subject, "subject"), _PATTERN) is not None


def is_valid_literal(subject: str) -> bool:
    """Whether ``subject`` is valid and has no wildcard token."""
    return _parse_or_none(_require_str(subject, "subject"), _LITERAL) is not None


def validate_subject(subject: str, *, literal: bool = False) -> None:
    """Raises ``InvalidSubjectError`` naming the subject and the first rule it breaks."""
    _parse(_require_str(subject, "subject"), _LITERAL if literal else _PATTERN)


def tokens(subject: str) -> list[str]:
    """The tokens of a valid pattern or literal subject."""
    return _parse(_require_str(subject, "subject"), _PATTERN)


# ---------------------------------------------------------------------------------------
# Relations between subjects and patterns, token by token


def _tokens_match(subject: list[str], pattern: list[str]) -> bool:
    for at, wanted in enumerate(pattern):
        if wanted == FULL_WILDCARD:
            return len(subject) > at  # one or more tokens remain for it
        if at >= len(subject):
            return False
        if wanted != SINGLE_WILDCARD and wanted != subject[at]:
            return False
    return len(subject) == len(pattern)


def _patterns_collide(a: list[str], b: list[str]) -> bool:
    for mine, theirs in zip(a, b, strict=False):  # up to the end of the shorter
        if FULL_WILDCARD in (mine, theirs):
            # The other pattern has at least this token left, and every subject it
            # matches from here on has one or more tokens, which `>` takes.
            return True
        if SINGLE_WILDCARD not in (mine, theirs) and mine != theirs:
            return False
    # Without a `>` before one of them ends, both match subjects of their own length only.
    return len(a) == len(b)


def _pattern_within(pattern: list[str], of: list[str]) -> bool:
    for at, wider in enumerate(of):
        if wider == FULL_WILDCARD:
            return len(pattern) > at
        if at >= len(pattern):
            return False
        narrower = pattern[at]
        if narrower == FULL_WILDCARD:
            return False  # it takes any number of tokens; `wider` takes exactly one
        if wider != SINGLE_WILDCARD and wider != narrower:
            return False  # `narrower` is `*` or another literal: it admits other tokens
    return len(pattern) == len(of)


def subject_matches(subject: str, pattern: str) -> bool:
    """Whether the valid ``pattern`` matches the well-formed ``subject``, whose every token
    is taken literally. Anything invalid gives False."""
    subject = _require_str(subject, "subject")
    pattern = _require_str(pattern, "pattern")
    subject_tokens = _parse_or_none(subject, _WELL_FORMED)
    pattern_tokens = _parse_or_none(pattern, _PATTERN)
    if subject_tokens is None or pattern_tokens is None:
        return False
    return _tokens_match(subject_tokens, pattern_tokens)


def subjects_collide(a: str, b: str) -> bool:
    """Whether some literal subject is matched by both valid patterns ``a`` and ``b``."""
    a_tokens = _parse_or_none(_require_str(a, "a"), _PATTERN)
    b_tokens = _parse_or_none(_require_str(b, "b"), _PATTERN)
    if a_tokens is None or b_tokens is None:
        return False
    return _patterns_collide(a_tokens, b_tokens)


def is_subset(pattern: str, of: str) -> bool:
    """Whether every subject matched by the valid ``pattern`` is matched by the valid ``of``."""
    pattern_tokens = _parse_or_none(_require_str(pattern, "pattern"), _PATTERN)
    of_tokens = _parse_or_none(_require_str(of, "of"), _PATTERN)
    if pattern_tokens is None or of_tokens is None:
        return False
    return _pattern_within(pattern_tokens, of_tokens)


# ---------------------------------------------------------------------------------------
# Match results


class MatchResult:
    """The entries one subject matched: plain values, and the members of each queue group.

    A result may be shared through the match cache, so ``plain`` and ``queues`` hand out
    fresh lists: a caller changing them cannot change what later matches return.
    """

    __slots__ = ("_plain", "_queues")

    def __init__(
        self, plain: list[Any] | None = None, queues: dict[str, list[Any]] | None = None
    ) -> None:
        self._plain: list[Any] = plain if plain is not None else []
        self._queues: dict[str, list[Any]] = queues if queues is not None else {}

    @property
    def plain(self) -> list[Any]:
        """Values of the matched entries that are in no queue group."""
        return list(self._plain)

    @property
    def queues(self) -> dict[str, list[Any]]:
        """Each matched queue group and the values of all its matched members."""
        return {group: list(members) for group, members in self._queues.items()}

    def __len__(self) -> int:
        return len(self._plain) + sum(map(len, self._queues.values()))

    def __repr__(self) -> str:
        return f"MatchResult(plain={self._plain!r}, queues={self._queues!r})"


_NOTHING_MATCHED: Final = MatchResult()


# ---------------------------------------------------------------------------------------
# The trie


class _Node:
    """One token position: children by literal token, the `*` and `>` children apart, and
    the entries of the patterns that end here (keyed by handle, in insertion order)."""

    __slots__ = ("full", "literals", "plain", "queues", "single")

    def __init__(self) -> None:
        self.literals: dict[str, _Node] = {}
        self.single: _Node | None = None
        self.full: _Node | None = None
        self.plain: dict[int, Any] = {}
        self.queues: dict[str, dict[int, Any]] = {}

    def child(self, token: str) -> _Node | None:
        if token == SINGLE_WILDCARD:
            return self.single
        if token == FULL_WILDCARD:
            return self.full
        return self.literals.get(token)

    def child_or_new(self, token: str) -> _Node:
        found = self.child(token)
        if found is not None:
            return found
        made = _Node()
        if token == SINGLE_WILDCARD:
            self.single = made
        elif token == FULL_WILDCARD:
            self.full = made
        else:
            self.literals[token] = made
        return made

    def drop_child(self, token: str) -> None:
        if token == SINGLE_WILDCARD:
            self.single = None
        elif token == FULL_WILDCARD:
            self.full = None
        else:
            del self.literals[token]

    def entry_count(self) -> int:
        return len(self.plain) + sum(len(members) for members in self.queues.values())

    def is_empty(self) -> bool:
        return (
            not self.plain
            and not self.queues
            and not self.literals
            and self.single is None
            and self.full is None
        )

    def count_nodes(self) -> int:
        """Nodes in the subtree rooted here, this one included (walked without recursion:
        a pattern may be 1024 tokens deep)."""
        counted = 0
        pending = [self]
        while pending:
            node = pending.pop()
            counted += 1
            pending.extend(node.literals.values())
            pending.extend(child for child in (node.single, node.full) if child is not None)
        return counted


def _nodes_matching(root: _Node, subject: list[str]) -> list[_Node]:
    """The nodes whose entries match ``subject`` (every token taken literally), each once.

    Walked token by token, keeping the nodes reached so far, rather than recursively:
    subjects may have 1024 tokens.
    """
    found: list[_Node] = []
    reached = [root]
    for token in subject:
        following: list[_Node] = []
        for node in reached:
            if node.full is not None:
                found.append(node.full)  # `>` takes this token and all that follow
            if node.single is not None:
                following.append(node.single)
            literal = node.literals.get(token)
            if literal is not None:
                following.append(literal)
        if not following:
            return found
        reached = following
    found.extend(reached)
    return found


class _Entry:
    """Where an entry lives, so that it can be found again from its handle."""

    __slots__ = ("path", "queue")

    def __init__(self, path: list[str], queue: str | None) -> None:
        self.path = path
        self.queue = queue


def _check_queue_name(queue: str) -> None:
    length = _utf8_length(queue)
    if length is None:
        raise ValueError("queue group name is not valid UTF-8")
    if not queue:
        raise ValueError("empty queue group name")
    if length > MAX_SUBJECT_LENGTH:
        raise ValueError(f"queue group name longer than {MAX_SUBJECT_LENGTH} bytes")
    forbidden = _FORBIDDEN_CHARACTER.search(queue)
    if forbidden is not None:
        what = "NUL" if forbidden.group() == "\0" else "whitespace"
        raise ValueError(f"queue group name contains {what}")


# ---------------------------------------------------------------------------------------
# The index


class SubjectIndex:
    """A trie of subject patterns with a match cache and queue groups, the twin
    of :class:`turnout.SubjectIndex`.

    Safe to share between threads: changes and uncached matches hold one lock. A cache hit
    takes no lock (a dict lookup is atomic), which keeps the cached benchmark a fair
    dict-hit baseline; the hit and match counters may then undercount under contention.
    """

    def __init__(self, cache_size: int = 1024) -> None:
        size = operator.index(cache_size)
        if size < 0:
            raise ValueError(f"cache_size must be 0 or more, not {size}")
        self._cache_size = size
        # Subject -> result. Emptied entirely on any change; when full, the oldest goes.
        self._cache: dict[str, MatchResult] = {}
        self._lock = threading.Lock()
        self._root = _Node()
        self._entries: dict[int, _Entry] = {}
        self._handles = itertools.count(1)  # never reused
        self._matches = 0
        self._cache_hits = 0
        self._cache_misses = 0
        self._inserts = 0
        self._removes = 0

    @property
    def cache_size(self) -> int:
        """Results the match cache holds at most (0: no cache)."""
        return self._cache_size

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"SubjectIndex(entries={len(self._entries)}, cache_size={self._cache_size})"

    def insert(self, pattern: str, value: Any, queue: str | None = None) -> int:
        """Stores ``value`` under ``pattern``, in queue group ``queue`` if given, and returns
        the handle that removes it. A refused insert leaves the index as it was."""
        pattern = _require_str(pattern, "pattern")
        if queue is not None:
            _require_str(queue, "queue")
        path = _parse(pattern, _PATTERN)
        if queue is not None:
            _check_queue_name(queue)
        with self._lock:
            handle = next(self._handles)
            node = self._root
            for token in path:
                node = node.child_or_new(token)
            if queue is None:
                node.plain[handle] = value
            else:
                node.queues.setdefault(queue, {})[handle] = value
            self._entries[handle] = _Entry(path, queue)
            self._inserts += 1
            self._forget_cached_results()
        return handle

    def remove(self, handle: int) -> bool:
        """Removes the entry ``handle`` names; False if there is none (any more)."""
        if isinstance(handle, bool) or not isinstance(handle, int):
            raise TypeError("handle must be an int from insert()")
        with self._lock:
            entry = self._entries.pop(handle, None)
            if entry is None:
                return False
            # The value and the dropped results outlive the lock on purpose: releasing the
            # last reference may run a finaliser, which must be free to use this index.
            value, retired = self._unlink(handle, entry), self._forget_cached_results()
            self._removes += 1
        del value, retired
        return True

    def _unlink(self, handle: int, entry: _Entry) -> Any:
        """Takes the entry out of its node and prunes the nodes left empty; returns its value."""
        trail = [self._root]
        for token in entry.path:
            child = trail[-1].child(token)
            assert child is not None, "an entry's path always exists"
            trail.append(child)
        node = trail[-1]
        if entry.queue is None:
            value = node.plain.pop(handle)
        else:
            members = node.queues[entry.queue]
            value = members.pop(handle)
            if not members:
                del node.queues[entry.queue]
        # trail[depth] is reached from trail[depth - 1] by the token path[depth - 1].
        for depth in range(len(entry.path), 0, -1):
            if not trail[depth].is_empty():
                break
            trail[depth - 1].drop_child(entry.path[depth - 1])
        return value

    def _forget_cached_results(self) -> dict[str, MatchResult]:
        """Empties the cache (called with the lock held); returns what it held."""
        retired = self._cache
        self._cache = {}
        return retired

    def match(self, subject: str) -> MatchResult:
        """Every entry matching ``subject``, its tokens taken literally. A subject that is not
        well-formed matches nothing."""
        subject = _require_str(subject, "subject")
        self._matches += 1
        if self._cache_size:
            cached = self._cache.get(subject)
            if cached is not None:
                self._cache_hits += 1
                return cached
        path = _parse_or_none(subject, _WELL_FORMED)
        with self._lock:
            if self._cache_size:
                self._cache_misses += 1
            if path is None:
                return _NOTHING_MATCHED
            result = self._collect(path)
            # Stored under the lock: no change can come between computing and storing.
            if self._cache_size:
                if len(self._cache) >= self._cache_size:
                    del self._cache[next(iter(self._cache))]
                self._cache[subject] = result
        return result

    def _collect(self, path: list[str]) -> MatchResult:
        plain: list[Any] = []
        queues: dict[str, list[Any]] = {}
        for node in _nodes_matching(self._root, path):
            if node.plain:
                plain.extend(node.plain.values())
            for group, members in node.queues.items():
                queues.setdefault(group, []).extend(members.values())
        return MatchResult(plain, queues) if plain or queues else _NOTHING_MATCHED

    def match_many(self, subjects: Iterable[str]) -> list[MatchResult]:
        """``match`` for each subject, in order. Every item is checked to be a ``str`` before
        any is matched."""
        batch = [_require_str(subject, "subject") for subject in subjects]
        return [self.match(subject) for subject in batch]

    def has_interest(self, subject: str) -> bool:
        """Whether any entry matches ``subject``."""
        subject = _require_str(subject, "subject")
        cached = self._cache.get(subject)
        if cached is not None:
            return len(cached) > 0
        path = _parse_or_none(subject, _WELL_FORMED)
        if path is None:
            return False
        with self._lock:
            return any(node.entry_count() > 0 for node in _nodes_matching(self._root, path))

    def count(self, subject: str) -> int:
        """How many entries match ``subject``, every overlapping pattern counted."""
        subject = _require_str(subject, "subject")
        cached = self._cache.get(subject)
        if cached is not None:
            return len(cached)
        path = _parse_or_none(subject, _WELL_FORMED)
        if path is None:
            return 0
        with self._lock:
            return sum(node.entry_count() for node in _nodes_matching(self._root, path))

    def stats(self) -> dict[str, int | float]:
        """Counters and gauges. The fan-out figures are over the results currently cached
        (0 when none are)."""
        with self._lock:
            fanouts = [len(result) for result in self._cache.values()]
            return {
                "subscriptions": len(self._entries),
                "matches": self._matches,
                "cache_hits": self._cache_hits,
                "cache_misses": self._cache_misses,
                "cache_entries": len(fanouts),
                "cache_size": self._cache_size,
                "inserts": self._inserts,
                "removes": self._removes,
                "max_fanout": max(fanouts, default=0),
                "avg_fanout": sum(fanouts) / len(fanouts) if fanouts else 0.0,
                "nodes": self._root.count_nodes(),
            }
