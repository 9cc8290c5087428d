"""One index shared by eight Python threads that insert, remove and match at once.

Each thread owns a namespace (``t<n>.…``) and knows exactly which of its own entries are
live, so every result it sees can be checked: its live values must all be there, its removed
values must not, and anything else must come from another thread's ``*.<k>`` pattern (the
only patterns that reach into other namespaces) or from the stable ``>`` entry.
"""

from __future__ import annotations

import functools
import random
import sys
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import turnout.reference

pytestmark = pytest.mark.timeout(120)

THREADS = 8
OPERATIONS = 1500
STABLE = (-1, 0, ">")  # owned by no thread
KEYS = range(4)


@functools.cache
def matches(subject: str, pattern: str) -> bool:
    """The reference's verdict, remembered: the checks ask about the same few pairs often."""
    return turnout.reference.subject_matches(subject, pattern)


@pytest.fixture(autouse=True)
def frequent_thread_switches() -> Iterator[None]:
    """More interleavings: Python switches threads every 10 µs instead of every 5 ms."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


class Worker:
    """One thread's share of the work and its exact knowledge of its own entries."""

    def __init__(self, index: Any, me: int, start: threading.Barrier) -> None:
        self.index, self.me, self.start = index, me, start
        self.random = random.Random(me)
        self.live: dict[int, tuple[int, int, str]] = {}  # handle -> value
        self.removed: list[tuple[int, tuple[int, int, str]]] = []
        self.serial = 0
        self.subjects = [f"t{me}.{k}" for k in KEYS] + [f"t{me}.{k}.x" for k in KEYS]
        self.patterns = (
            [f"t{me}.{k}" for k in KEYS]
            + [f"t{me}.{k}.x" for k in KEYS]
            + [f"t{me}.*", f"t{me}.>", f"t{me}.*.x"]
            + [f"*.{k}" for k in KEYS]  # these reach every thread's namespace
        )
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.start.wait()
            for _ in range(OPERATIONS):
                self.step()
        except BaseException as error:  # handed to the test, which fails with it
            self.error = error

    def step(self) -> None:
        choice = self.random.random()
        # Keep between a few and a few dozen live entries: enough to overlap, few enough
        # that checking every result stays cheap.
        if len(self.live) < 4 or (choice < 0.3 and len(self.live) < 24):
            self.insert()
        elif choice < 0.6:
            self.remove()
        elif choice < 0.75:
            self.check(self.random.choice(self.subjects))
        elif choice < 0.9:
            self.check_many()
        else:
            self.read_elsewhere()

    def insert(self) -> None:
        pattern = self.random.choice(self.patterns)
        self.serial += 1
        value = (self.me, self.serial, pattern)
        queue = "q" if self.random.random() < 0.3 else None
        self.live[self.index.insert(pattern, value, queue=queue)] = value

    def remove(self) -> None:
        handle = self.random.choice(list(self.live))
        value = self.live.pop(handle)
        assert self.index.remove(handle) is True
        assert self.index.remove(handle) is False
        self.removed.append((handle, value))

    def own_expected(self, subject: str) -> set[tuple[int, int, str]]:
        return {v for v in self.live.values() if matches(subject, v[2])}

    def verify(self, subject: str, result: Any, mine_expected: set[tuple[int, int, str]]) -> None:
        found = list(result.plain)
        for members in result.queues.values():
            found.extend(members)
        assert len(found) == len(result)
        mine = {v for v in found if v[0] == self.me}
        assert mine == mine_expected, subject
        assert len(mine) == sum(1 for v in found if v[0] == self.me)  # no duplicates
        assert STABLE in found
        for value in found:
            if value[0] != self.me and value != STABLE:
                # Another thread's entry: only its `*.<k>` patterns can match here.
                assert value[2].startswith("*."), (subject, value)
                assert matches(subject, value[2]), (subject, value)

    def check(self, subject: str) -> None:
        mine_expected = self.own_expected(subject)
        self.verify(subject, self.index.match(subject), mine_expected)
        assert self.index.count(subject) >= len(mine_expected) + 1
        assert self.index.has_interest(subject)

    def read_elsewhere(self) -> None:
        """Matches in other threads' namespaces. What it sees there cannot be checked
        exactly, but it fills the cache with results their owners will check: a result
        cached after a change it does not include is caught that way."""
        other = (self.me + self.random.randrange(1, THREADS)) % THREADS
        subjects = [f"t{other}.{k}" for k in KEYS] + [f"t{other}.{k}.x" for k in KEYS]
        for result in self.index.match_many(subjects):
            found = list(result.plain) + [v for m in result.queues.values() for v in m]
            assert STABLE in found
            assert len(found) == len(result)
        assert self.index.has_interest(self.random.choice(subjects))

    def check_many(self) -> None:
        batch = [self.random.choice(self.subjects) for _ in range(50)]
        results = self.index.match_many(batch)
        assert len(results) == len(batch)
        expected = {subject: self.own_expected(subject) for subject in set(batch)}
        for subject, result in zip(batch, results, strict=True):
            self.verify(subject, result, expected[subject])


@pytest.mark.parametrize("cache_size", [0, 64, 1024])
def test_eight_threads_share_one_index(impl: ModuleType, cache_size: int) -> None:
    index = impl.SubjectIndex(cache_size=cache_size)
    index.insert(">", STABLE)
    start = threading.Barrier(THREADS)
    workers = [Worker(index, me, start) for me in range(THREADS)]
    threads = [threading.Thread(target=w.run, name=f"worker-{w.me}") for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=100)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    for worker in workers:
        if worker.error is not None:
            raise worker.error

    # Quiet now: every result is fully determined by what the threads left behind.
    live = {v for w in workers for v in w.live.values()}
    assert len(index) == len(live) + 1
    assert index.stats()["subscriptions"] == len(index)
    for worker in workers:
        for subject in worker.subjects:
            result = index.match(subject)
            found = list(result.plain) + [v for m in result.queues.values() for v in m]
            expected = [STABLE] + [v for v in live if matches(subject, v[2])]
            assert sorted(found) == sorted(expected), subject
            assert index.count(subject) == len(expected)
        for handle, _ in worker.removed:
            assert index.remove(handle) is False


@pytest.mark.parametrize("cache_size", [0, 1024])
def test_fan_out_results_are_snapshots_under_change(impl: ModuleType, cache_size: int) -> None:
    """A writer appends increasing values to one pattern (and one queue group) and removes
    old ones while readers match it: every result must be one consistent state, in
    insertion order, and read the same every time."""
    index = impl.SubjectIndex(cache_size=cache_size)
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        rng = random.Random(7)
        live: list[int] = []
        try:
            for value in range(3000):
                live.append(index.insert("fan.out", value, queue="g" if value % 5 == 0 else None))
                if len(live) > 300:
                    index.remove(live.pop(rng.randrange(len(live))))
        except BaseException as error:
            errors.append(error)
        finally:
            done.set()

    def read() -> None:
        try:
            for _ in range(100_000):  # bounded; the writer normally finishes first
                if done.is_set():
                    return
                for result in [index.match("fan.out"), *index.match_many(["fan.out"] * 3)]:
                    plain, queues = result.plain, result.queues
                    members = queues.get("g", [])
                    assert plain == sorted(plain) and members == sorted(members)
                    assert len(result) == len(plain) + len(members)
                    assert (result.plain, result.queues) == (plain, queues)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=100)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    if errors:
        raise errors[0]
    assert len(index.match("fan.out")) == len(index) == 300
