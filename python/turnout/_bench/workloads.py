"""The standard subject-index workloads W1-W4: their data, and the measurements made on it.

- W1: nats-server's own sublist benchmark set (37,451 entries); single matches of 1- to
  4-token subjects, repeated (one subject over and over) and unique (every subject new), each
  with the match cache on and off; ``match_many`` batches; the build.
- W2: fan-out, one subject matching 1,000 entries, plain and in 10 queue groups of 100.
- W3: churn, inserting then removing a mix of literal and wildcard patterns, and an
  insert/match/remove cycle on a populated index.
- W4: scale, 1,000,000 literal entries (fewer in quick mode, and for the pure-Python
  reference in full mode): build, memory per entry, and matches at that size against 1,000.

The data generators (``w1_patterns``, ``w1_unique_subjects``, ...) are shared with the
pytest-benchmark suites in ``benches/``. Every workload function takes the implementation,
the scale and a callback told the name of each case as it starts, and returns result rows.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import Any

from turnout._bench.implementations import Implementation, IndexFactory, SubjectIndexLike
from turnout._bench.memory import index_bytes_per_entry
from turnout._bench.report import CACHE_ON_VS_OFF, ResultRow
from turnout._bench.timing import (
    Batch,
    Trial,
    batches_of,
    measure,
    repeated_batches,
)
from turnout._bench.w4_subjects import w4_patterns

DEFAULT_CACHE_SIZE = 1024
"""The match-cache size of an index with "cache on" (the ``SubjectIndex`` default)."""

StepReporter = Callable[[str], None]
"""Told the name of each case just before it is measured (drives the progress display)."""


class WorkloadError(RuntimeError):
    """An implementation answered wrongly during a workload: its timings would mean nothing."""


# --- scales -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """How big and how long: ``QUICK`` checks everything runs, ``FULL`` gives the figures."""

    name: str
    repeats: int
    """Best-of-k repeats of each timed loop."""
    build_repeats: int
    """Repeats of whole-index builds (each one rebuilds the index)."""
    match_calls: int
    """Single ``match`` calls per repeat."""
    many_batch: int
    """Subjects per ``match_many`` call."""
    many_calls: int
    """``match_many`` calls per repeat."""
    fanout_calls: int
    """W2 ``match`` calls per repeat."""
    churn_entries: int
    """W3 entries inserted then removed."""
    cycle_calls: int
    """W3 insert/match/remove cycles per repeat."""
    scale_entries: int
    """W4 index size for the Rust core."""
    reference_scale_entries: int
    """W4 index size for the pure-Python reference (slow and memory hungry at 1M)."""
    budget_s: float
    """Time cap of one measurement's repeats; a slow implementation stops early."""

    def w4_entries(self, implementation: Implementation) -> int:
        if implementation.name == "reference":
            return self.reference_scale_entries
        return self.scale_entries


QUICK = Scale(
    name="quick",
    repeats=2,
    build_repeats=1,
    match_calls=2_000,
    many_batch=100,
    many_calls=20,
    fanout_calls=200,
    churn_entries=5_000,
    cycle_calls=1_000,
    scale_entries=20_000,
    reference_scale_entries=20_000,
    budget_s=2.0,
)

FULL = Scale(
    name="full",
    repeats=5,
    build_repeats=3,
    match_calls=100_000,
    many_batch=1_000,
    many_calls=100,
    fanout_calls=5_000,
    churn_entries=100_000,
    cycle_calls=50_000,
    scale_entries=1_000_000,
    reference_scale_entries=100_000,
    budget_s=15.0,
)

# --- W1: nats-server's sublist benchmark set ---------------------------------------------

W1_TOKENS = ("synadia", "nats", "jetstream", "nkeys", "jwt", "deny", "auth", "drain")
W1_MAX_DEPTH = 5
W1_WILDCARD_PATTERNS = ("cloud.>", "cloud.nats.component.>", "cloud.*.*.nkeys.*")
W1_ENTRIES = sum(len(W1_TOKENS) ** d for d in range(1, W1_MAX_DEPTH + 1)) + len(
    W1_WILDCARD_PATTERNS
)
W1_SUBJECT_TOKENS = (1, 2, 3, 4)
"""Token counts of the subjects matched, as in nats-server's benchmarks."""

# Unique subjects of 2+ tokens alternate between a walk down the literal set that misses at
# the last token and a subject under "cloud" that the wildcard entries match.
_W1_CLOUD_PREFIXES = ("cloud", "cloud.nats", "cloud.nats.component")


def w1_patterns() -> list[str]:
    """Every literal of 1..5 tokens over ``W1_TOKENS``, then the three wildcard patterns."""
    patterns = [
        ".".join(combination)
        for depth in range(1, W1_MAX_DEPTH + 1)
        for combination in itertools.product(W1_TOKENS, repeat=depth)
    ]
    patterns += W1_WILDCARD_PATTERNS
    return patterns


def w1_repeated_subject(tokens: int) -> str:
    """The subject of ``tokens`` tokens that nats-server's benchmarks match over and over
    (``synadia``, ``synadia.nats``, ...): it matches exactly one literal entry."""
    return ".".join(W1_TOKENS[:tokens])


class UniqueTokens:
    """Mints tokens never minted before by this object, all eight characters long like the
    W1 vocabulary, so a subject built on one has never been matched (nor cached) before."""

    def __init__(self, prefix: str = "u") -> None:
        self._prefix = prefix
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):07x}"


def w1_unique_subjects(tokens: int, count: int, minted: UniqueTokens) -> list[str]:
    """``count`` subjects of ``tokens`` tokens, each ending in a freshly minted token.

    One-token subjects match nothing (only the eight W1 literals have one token). Longer ones
    alternate: ``tokens - 1`` vocabulary tokens then the new one, so the walk goes down the
    literal trie and misses at the last level; and a subject under ``cloud`` that the
    wildcard entries match (``cloud.nats.component.<new>`` matches two of them).
    """
    if not 1 <= tokens <= len(_W1_CLOUD_PREFIXES) + 1:
        raise ValueError(f"unique W1 subjects have 1 to {len(_W1_CLOUD_PREFIXES) + 1} tokens")
    base = len(W1_TOKENS)
    subjects: list[str] = []
    for i in range(count):
        fresh = minted.next()
        if tokens == 1:
            subjects.append(fresh)
        elif i % 2 == 0:
            path = (W1_TOKENS[(i // 2 // base**level) % base] for level in range(tokens - 1))
            subjects.append(".".join((*path, fresh)))
        else:
            subjects.append(f"{_W1_CLOUD_PREFIXES[tokens - 2]}.{fresh}")
    return subjects


def run_w1(implementation: Implementation, scale: Scale, step: StepReporter) -> list[ResultRow]:
    make_index = implementation.factory()
    cases = _Cases("W1", implementation, scale, step)
    patterns = w1_patterns()
    values: list[int] = list(range(len(patterns)))
    last_built: list[SubjectIndexLike] = []

    def build(_repeat: int) -> Trial:
        last_built.clear()  # free the previous build before making the next
        index = make_index(DEFAULT_CACHE_SIZE)
        last_built.append(index)
        return Trial(index.insert, batches_of((patterns, values)), whole=True)

    cases.measure(
        "build", build, repeats=scale.build_repeats, extra={"entries": float(len(patterns))}
    )
    cached = last_built.pop()
    _expect_size(cached, len(patterns), "W1 build")
    step("build, cache off (untimed)")
    uncached = make_index(0)
    insert_all(uncached, patterns, values)
    indexes = (("cache on", cached), ("cache off", uncached))

    minted = UniqueTokens()
    for tokens in W1_SUBJECT_TOKENS:
        noun = "token" if tokens == 1 else "tokens"
        subject = w1_repeated_subject(tokens)
        _expect_matches(cached, subject, 1)
        for cache_label, index in indexes:
            cases.measure(
                f"match {tokens} {noun}, repeated, {cache_label}",
                _repeated_match_trials(index, subject, scale.match_calls),
                extra_after=_CacheHits(index).extra,
            )
        # Cache off first, so the cache-on row can say how it compares (a flood of unique
        # subjects must not make the cache a cost).
        for cache_label, index in reversed(indexes):
            cases.measure(
                f"match {tokens} {noun}, unique, {cache_label}",
                _unique_match_trials(index, tokens, scale.match_calls, minted),
                extra_after=_CacheHits(index).extra,
            )
        cases.compare_last_two(CACHE_ON_VS_OFF)

    tokens = W1_SUBJECT_TOKENS[-1]
    cases.measure(
        f"match_many {tokens} tokens, repeated, cache on",
        _repeated_match_many_trials(cached, w1_repeated_subject(tokens), scale),
    )
    for cache_label, index in reversed(indexes):
        cases.measure(
            f"match_many {tokens} tokens, unique, {cache_label}",
            _unique_match_many_trials(index, tokens, scale, minted),
        )
    cases.compare_last_two(CACHE_ON_VS_OFF)
    return cases.rows


def _repeated_match_trials(
    index: SubjectIndexLike, subject: str, calls: int
) -> Callable[[int], Trial]:
    batches = repeated_batches((subject,), calls)
    return lambda _repeat: Trial(index.match, batches)


def _unique_match_trials(
    index: SubjectIndexLike, tokens: int, calls: int, minted: UniqueTokens
) -> Callable[[int], Trial]:
    # New subjects for every repeat: a repeat must not find the previous one's in the cache.
    return lambda _repeat: Trial(
        index.match, batches_of((w1_unique_subjects(tokens, calls, minted),))
    )


def _repeated_match_many_trials(
    index: SubjectIndexLike, subject: str, scale: Scale
) -> Callable[[int], Trial]:
    calls = batches_of(([[subject] * scale.many_batch] * scale.many_calls,), size=1)
    return lambda _repeat: Trial(index.match_many, calls, ops_per_call=scale.many_batch)


def _unique_match_many_trials(
    index: SubjectIndexLike, tokens: int, scale: Scale, minted: UniqueTokens
) -> Callable[[int], Trial]:
    def trial(_repeat: int) -> Trial:
        calls = [
            w1_unique_subjects(tokens, scale.many_batch, minted) for _ in range(scale.many_calls)
        ]
        return Trial(index.match_many, batches_of((calls,), size=1), ops_per_call=scale.many_batch)

    return trial


class _CacheHits:
    """The share of matches answered from the cache between creation and ``extra()``, read
    from ``stats()``: shows whether a "cache on" case was really served by the cache."""

    def __init__(self, index: SubjectIndexLike) -> None:
        self._index = index
        self._before = self._counts()

    def _counts(self) -> tuple[float, float] | None:
        stats = self._index.stats()
        if "cache_hits" not in stats or "cache_misses" not in stats:
            return None
        return float(stats["cache_hits"]), float(stats["cache_misses"])

    def extra(self) -> dict[str, float]:
        after = self._counts()
        if self._before is None or after is None:
            return {}
        hits = after[0] - self._before[0]
        misses = after[1] - self._before[1]
        if hits + misses <= 0:
            return {}
        return {"cache_hit_rate": hits / (hits + misses)}


# --- W2: fan-out ------------------------------------------------------------------------

W2_SUBJECT = "w2.fanout.orders"
W2_ENTRIES = 1_000
W2_GROUPS = 10
_W2_BATCH = 10  # calls per latency sample: one call returns 1,000 values


def w2_entries(entries: int = W2_ENTRIES, groups: int = 0) -> list[tuple[str, int, str | None]]:
    """``(pattern, value, queue)`` for ``entries`` entries all on ``W2_SUBJECT``; with
    ``groups`` > 0 they are spread round-robin over queue groups ``q0``, ``q1``, ..."""
    return [
        (W2_SUBJECT, value, f"q{value % groups}" if groups else None) for value in range(entries)
    ]


def run_w2(implementation: Implementation, scale: Scale, step: StepReporter) -> list[ResultRow]:
    make_index = implementation.factory()
    cases = _Cases("W2", implementation, scale, step)
    shapes = (
        (f"{W2_ENTRIES:,} plain", w2_entries(), "plain"),
        (f"{W2_GROUPS} groups x {W2_ENTRIES // W2_GROUPS}", w2_entries(groups=W2_GROUPS), "queues"),
    )
    calls = repeated_batches((W2_SUBJECT,), scale.fanout_calls, size=_W2_BATCH)
    for shape, entries, attribute in shapes:
        for cache_label, cache_size in (("cache on", DEFAULT_CACHE_SIZE), ("cache off", 0)):
            index = make_index(cache_size)
            insert_entries(index, entries)
            _expect_matches(index, W2_SUBJECT, len(entries))
            for what, read in (("match", None), (f"match + .{attribute}", attrgetter(attribute))):
                cases.measure(f"{shape}: {what}, {cache_label}", _fanout_trials(index, calls, read))
    return cases.rows


def _fanout_trials(
    index: SubjectIndexLike, calls: Sequence[Batch], read: Callable[[Any], object] | None
) -> Callable[[int], Trial]:
    return lambda _repeat: Trial(index.match, calls, read=read)


# --- W3: churn --------------------------------------------------------------------------

_W3_SEED = 3


def w3_patterns(count: int, start: int = 0) -> list[str]:
    """Patterns ``start`` .. ``start + count - 1``: half literal, a quarter with ``*``, a
    quarter ending in ``>``; each has a token of its own, so every insert makes new nodes
    and every remove must prune them."""
    return [_w3_pattern(i) for i in range(start, start + count)]


def w3_subjects(count: int, start: int = 0) -> list[str]:
    """For each of ``w3_patterns(count, start)``, a literal subject that it matches."""
    return [_w3_subject(i) for i in range(start, start + count)]


def w3_removal_order(count: int, seed: int = _W3_SEED) -> list[int]:
    """Positions ``0 .. count - 1`` in a fixed random order: entries are removed in an
    order unrelated to their insertion, as subscribers come and go."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return order


def _w3_pattern(i: int) -> str:
    a, b = i % 100, i % 64
    kind = i % 4
    if kind == 1:
        return f"churn.a{a}.*.e{i}"
    if kind == 3:
        return f"churn.a{a}.e{i}.>"
    return f"churn.a{a}.b{b}.e{i}"


def _w3_subject(i: int) -> str:
    if i % 4 == 3:
        return f"churn.a{i % 100}.e{i}.tail"
    return f"churn.a{i % 100}.b{i % 64}.e{i}"


def run_w3(implementation: Implementation, scale: Scale, step: StepReporter) -> list[ResultRow]:
    make_index = implementation.factory()
    cases = _Cases("W3", implementation, scale, step)
    entries = scale.churn_entries
    size = {"entries": float(entries)}
    patterns = w3_patterns(entries)
    values: list[int] = list(range(entries))

    def insert(_repeat: int) -> Trial:
        index = make_index(DEFAULT_CACHE_SIZE)
        return Trial(index.insert, batches_of((patterns, values)))

    cases.measure("insert (mixed literal/wildcard)", insert, extra=size)

    removal_order = w3_removal_order(entries)
    nodes_left: list[float] = []  # what pruning left behind, where the index reports nodes

    def remove(_repeat: int) -> Trial:
        index = make_index(DEFAULT_CACHE_SIZE)
        handles = insert_all(index, patterns, values)

        def check() -> None:
            _expect_size(index, 0, "W3 after removing every entry")
            nodes = index.stats().get("nodes")
            if nodes is not None:
                nodes_left.append(float(nodes))

        shuffled = [handles[i] for i in removal_order]
        return Trial(index.remove, batches_of((shuffled,)), after=check, whole=True)

    cases.measure(
        "remove (random order)",
        remove,
        extra=size,
        extra_after=lambda: {"nodes_left": max(nodes_left)} if nodes_left else {},
    )

    resident = make_index(DEFAULT_CACHE_SIZE)
    insert_all(resident, patterns, values)
    cycles = (
        w3_patterns(scale.cycle_calls, start=entries),
        w3_subjects(scale.cycle_calls, start=entries),
    )
    _expect_cycle(resident, cycles[0][0], cycles[1][0])
    cycle_batches = batches_of(cycles)
    cases.measure(
        f"insert+match+remove cycle, {entries:,} resident",
        lambda _repeat: Trial(subscriber_cycle(resident), cycle_batches),
        extra=size,
    )
    _expect_size(resident, entries, "W3 cycle")
    return cases.rows


_CYCLE_VALUE = "w3-cycle"


def subscriber_cycle(index: SubjectIndexLike) -> Callable[[str, str], object]:
    """``cycle(pattern, subject)``: one subscriber's life on ``index`` (subscribe to
    ``pattern``, receive one message on ``subject``, unsubscribe)."""
    insert, match, remove = index.insert, index.match, index.remove

    def cycle(pattern: str, subject: str) -> object:
        handle = insert(pattern, _CYCLE_VALUE)
        match(subject)
        return remove(handle)

    return cycle


def _expect_cycle(index: SubjectIndexLike, pattern: str, subject: str) -> None:
    handle = index.insert(pattern, _CYCLE_VALUE)
    found = _CYCLE_VALUE in index.match(subject).plain
    index.remove(handle)
    if not found or _CYCLE_VALUE in index.match(subject).plain:
        raise WorkloadError(f"an entry for {pattern!r} was not matched, or outlived its removal")


# --- W4: scale --------------------------------------------------------------------------

W4_SMALL_ENTRIES = 1_000
_W4_SEED = 4


def w4_hit_subjects(patterns: Sequence[str], count: int, seed: int = _W4_SEED) -> list[str]:
    """``count`` of the entries' own subjects in random order, so each match finds one
    entry somewhere in the whole index (repeating only once the index is exhausted)."""
    rng = random.Random(seed)
    chosen: list[str] = []
    while len(chosen) < count:
        chosen += rng.sample(patterns, min(len(patterns), count - len(chosen)))
    return chosen


def run_w4(implementation: Implementation, scale: Scale, step: StepReporter) -> list[ResultRow]:
    make_index = implementation.factory()
    cases = _Cases("W4", implementation, scale, step)
    entries = scale.w4_entries(implementation)
    patterns = w4_patterns(entries)

    step(f"memory of {entries:,} entries (child process)")
    build_extra = {"entries": float(entries)}
    bytes_per_entry = index_bytes_per_entry(implementation, entries)
    if bytes_per_entry is not None:
        build_extra["bytes_per_entry"] = bytes_per_entry

    shared_values = [object()] * entries  # one value for all: only the index's cost counts
    last_built: list[SubjectIndexLike] = []

    def build(_repeat: int) -> Trial:
        last_built.clear()  # at 1M entries two indexes at once would double the footprint
        index = make_index(0)
        last_built.append(index)
        return Trial(index.insert, batches_of((patterns, shared_values)), whole=True)

    cases.measure(
        "build",
        build,
        repeats=scale.build_repeats,
        shown_as=f"build {entries:,} entries",
        extra=build_extra,
    )
    _expect_size(last_built[0], entries, "W4 build")

    for where, these_patterns in (("@scale", patterns), ("@1k", w4_patterns(W4_SMALL_ENTRIES))):
        size = len(these_patterns)
        # The index built above serves the first size; at most one big index lives at a time.
        uncached = (
            last_built.pop() if last_built else shared_value_index(make_index, 0, these_patterns)
        )
        subjects = w4_hit_subjects(these_patterns, scale.match_calls)
        _expect_matches(uncached, subjects[0], 1)
        case = f"match hit, cache off, {where}"
        cases.measure(
            case,
            _match_trials(uncached, subjects),
            shown_as=f"{case} ({size:,} entries)",
            extra={"entries": float(size)},
        )
        del uncached

        cached = shared_value_index(make_index, DEFAULT_CACHE_SIZE, these_patterns)
        case = f"match repeated, cache on, {where}"
        cases.measure(
            case,
            _repeated_match_trials(cached, subjects[0], scale.match_calls),
            shown_as=f"{case} ({size:,} entries)",
            extra={"entries": float(size)},
        )
        del cached
    return cases.rows


def _match_trials(index: SubjectIndexLike, subjects: list[str]) -> Callable[[int], Trial]:
    batches = batches_of((subjects,))
    return lambda _repeat: Trial(index.match, batches)


# --- measuring cases, filling an index, checking its answers ----------------------------


class _Cases:
    """Measures the cases of one workload on one implementation and keeps their rows."""

    def __init__(
        self, workload: str, implementation: Implementation, scale: Scale, step: StepReporter
    ) -> None:
        self._workload = workload
        self._implementation = implementation
        self._scale = scale
        self._step = step
        self.rows: list[ResultRow] = []

    def measure(
        self,
        case: str,
        prepare: Callable[[int], Trial],
        *,
        repeats: int | None = None,
        shown_as: str | None = None,
        extra: Mapping[str, float] | None = None,
        extra_after: Callable[[], Mapping[str, float]] | None = None,
    ) -> None:
        """Measures ``case`` (shown in the progress as ``shown_as``, default the case) and
        records its row with ``extra`` and whatever ``extra_after()`` says once it is done."""
        self._step(shown_as or case)
        measured = measure(
            prepare, repeats=repeats or self._scale.repeats, budget_s=self._scale.budget_s
        )
        figures = {**(extra or {}), **(extra_after() if extra_after else {})}
        self.rows.append(
            ResultRow.from_measurement(
                self._workload, case, self._implementation.name, measured, figures
            )
        )

    def compare_last_two(self, key: str) -> None:
        """Adds to the last row ``key``: its ns/op over the ns/op of the row before it."""
        before, last = self.rows[-2], self.rows[-1]
        self.rows[-1] = replace(last, extra={**last.extra, key: last.ns_per_op / before.ns_per_op})


def insert_all(
    index: SubjectIndexLike, patterns: Sequence[str], values: Sequence[Any]
) -> list[int]:
    """Inserts each pattern with its value (untimed set-up); returns the handles in order."""
    return list(map(index.insert, patterns, values))


def insert_entries(
    index: SubjectIndexLike, entries: Iterable[tuple[str, Any, str | None]]
) -> list[int]:
    """Inserts ``(pattern, value, queue)`` entries; returns the handles in order."""
    return [index.insert(pattern, value, queue) for pattern, value, queue in entries]


def shared_value_index(
    make_index: IndexFactory, cache_size: int, patterns: Sequence[str]
) -> SubjectIndexLike:
    """A new index holding every pattern, all with one shared value object."""
    index = make_index(cache_size)
    insert_all(index, patterns, [object()] * len(patterns))
    return index


def _expect_size(index: SubjectIndexLike, size: int, where: str) -> None:
    if len(index) != size:
        raise WorkloadError(f"{where}: the index holds {len(index)} entries, expected {size}")


def _expect_matches(index: SubjectIndexLike, subject: str, count: int) -> None:
    found = len(index.match(subject))
    if found != count:
        raise WorkloadError(f"{subject!r} matched {found} entries, expected {count}")
