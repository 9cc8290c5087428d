"""The Rust emit path under the Bus: its dispatch lock, the history ring, and the rules it
must hand back to Python (history subclasses, errors that are not Exceptions, cycles)."""

from __future__ import annotations

import gc
import threading
import weakref
from datetime import timedelta

import pytest

from turnout._core import DispatchLock, HistoryRing
from turnout.bus import Bus
from turnout.events import Event, tool_started
from turnout.history import MemoryHistory


def test_dispatch_lock_is_reentrant_and_owned() -> None:
    lock = DispatchLock()
    assert lock.acquire() and lock.acquire(False)  # again, on the same thread
    got: list[bool] = []
    other = threading.Thread(target=lambda: got.append(lock.acquire(False)))
    other.start()
    other.join(30)
    assert got == [False]  # another thread does not get it without waiting
    lock.release()
    lock.release()
    with pytest.raises(RuntimeError, match="does not hold"):
        lock.release()


def test_a_blocked_thread_gets_the_dispatch_lock_once_released() -> None:
    lock = DispatchLock()
    lock.acquire()
    waiting = threading.Event()
    taken = threading.Event()

    def take() -> None:
        waiting.set()
        lock.acquire()  # blocks (without the GIL) until released
        taken.set()
        lock.release()

    thread = threading.Thread(target=take)
    thread.start()
    assert waiting.wait(30)
    assert not taken.is_set()
    lock.release()
    assert taken.wait(30)
    thread.join(30)
    assert lock.acquire(False)
    lock.release()


def test_dispatching_flag_round_trips() -> None:
    lock = DispatchLock()
    assert not lock.dispatching
    lock.dispatching = True
    assert lock.dispatching


def _event(n: int) -> Event:
    return tool_started("n", f"t{n}")


def test_history_ring_bounds_by_count_and_age() -> None:
    now = [0]
    ring = HistoryRing(3, 100, lambda: now[0])
    for n in range(5):
        ring.append("events.tool.started", _event(n), position=10 * n)
    assert [e.data["tool"] for e in ring.select(">", 10)] == ["t2", "t3", "t4"]
    assert ring.first_position() == 20
    assert ring.counters() == {"retained": 3, "appended": 5, "expired": 0, "evicted": 2}
    now[0] = 101  # every record was stored at 0: past max_age
    assert ring.select(">", 10) == []
    assert ring.counters()["expired"] == 3
    assert len(ring) == 0 and ring.first_position() is None


def test_history_ring_select_limits_from_either_end() -> None:
    ring = HistoryRing()
    for n in range(6):
        subject = "events.tool.started" if n % 2 else "events.node.joined"
        ring.append(subject, _event(n))
    tools = [e.data["tool"] for e in ring.select("events.tool.*", 2)]
    newest = [e.data["tool"] for e in ring.select("events.tool.*", 2, True)]
    assert tools == ["t1", "t3"] and newest == ["t3", "t5"]
    assert ring.select(">", 0) == [] and ring.select(">", -1) == []
    assert len(ring.select("events.node.>", 10)) == 3


def test_emit_takes_only_events() -> None:
    with Bus("n") as bus, pytest.raises(TypeError, match="Event"):
        bus.emit({"type": "tool.started"})  # type: ignore[arg-type]


def test_a_memory_history_subclass_is_called_through_its_append() -> None:
    class Counting(MemoryHistory):
        __slots__ = ("appended",)

        def __init__(self) -> None:
            super().__init__(max_age=timedelta(hours=1))
            self.appended = 0

        def append(self, subject: str, event: Event, data: bytes | None = None) -> None:
            self.appended += 1
            super().append(subject, event, data)

    history = Counting()
    with Bus("n", history=history) as bus:
        bus.emit(_event(1))
        assert history.appended == 1
        assert [e.data["tool"] for e in bus.history(">")] == ["t1"]


def test_a_base_exception_from_a_handler_propagates_and_frees_the_bus() -> None:
    with Bus("n") as bus:
        got: list[Event] = []

        def interrupt(event: Event) -> None:
            raise KeyboardInterrupt

        sub = bus.subscribe("events.tool.started", interrupt)
        with pytest.raises(KeyboardInterrupt):
            bus.emit(_event(1))
        sub.unsubscribe()
        bus.subscribe("events.tool.started", got.append)
        bus.emit(_event(2))  # the dispatch lock was released on the way out
        assert [e.data["tool"] for e in got] == ["t2"]
        assert bus.stats()["handler_errors"] == 0


def test_an_unclosed_bus_is_collected() -> None:
    bus = Bus("n")
    bus.subscribe("events.>", lambda event: None).unsubscribe()
    bus.emit(_event(1))  # the caches hold the subject and an empty route
    ref = weakref.ref(bus)
    del bus
    gc.collect()
    assert ref() is None
