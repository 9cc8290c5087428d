"""Runs of received messages: a transport that reads messages in runs (NATS) hands each run
to the bus in one call, from its own thread. Every mailbox gets its part of the run in one
put and its consumer one wake-up once the run is buffered; the rules of single deliveries
(order, bounds and overflow counters, re-entrancy, errors) hold all the same."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from typing import Any

import pytest

from turnout.bus import Bus, Message, Subscription
from turnout.events import Event
from turnout.nats import connect
from turnout.testing.nats_server import NatsServer

PATIENCE = 20.0
SUBJECT = "events.tool.started"


def numbered(i: int) -> Event:
    return Event("tool.started", "", None, {"i": i})


def number(event: Event) -> int:
    assert event.data is not None
    return int(event.data["i"])


def run_of(numbers: range, subject: str = SUBJECT) -> list[tuple[int, str, bytes]]:
    """A run as a transport reads it: (its subscription id, subject, payload) each."""
    return [(1, subject, numbered(i).to_json()) for i in numbers]


async def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {PATIENCE} s: {what}")
        await asyncio.sleep(0.01)


def in_thread(target: Callable[[], object], *, with_loop: bool) -> threading.Thread:
    """Runs ``target`` on a new daemon thread, inside a running event loop there when
    ``with_loop`` (as a transport's I/O thread does)."""

    def body() -> None:
        if with_loop:

            async def call() -> None:
                target()

            asyncio.run(call())
        else:
            target()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


async def joined(thread: threading.Thread) -> None:
    await asyncio.to_thread(thread.join, PATIENCE)
    assert not thread.is_alive(), "the run was never delivered (a consumer left waiting?)"


class Recorder:
    """An async handler keeping the numbers it handles; subscribed and warmed up by
    :func:`waiting`, after which its worker is waiting on an empty mailbox."""

    def __init__(self) -> None:
        self.got: list[int] = []
        self.pending_at_first: list[int] = []
        self.sub: Subscription[Event] | None = None

    async def __call__(self, event: Event) -> None:
        assert self.sub is not None
        if self.got == [-1]:
            self.pending_at_first.append(self.sub.pending)
        self.got.append(number(event))

    @property
    def run(self) -> list[int]:
        return self.got[1:]


async def waiting(bus: Bus, count: int = 1, **options: Any) -> list[Recorder]:
    """``count`` recorders subscribed to everything, each waiting once it has handled a
    warm-up event."""
    recorders = [Recorder() for _ in range(count)]
    for recorder in recorders:
        recorder.sub = bus.subscribe("events.>", recorder, **options)
    bus.emit(numbered(-1))
    await eventually(lambda: all(r.got == [-1] for r in recorders), "the warm-up handled")
    return recorders


async def test_a_run_is_buffered_whole_before_the_handler_wakes_and_keeps_its_order() -> None:
    async with Bus(node="n") as bus:
        handlers = await waiting(bus, 3)
        await joined(in_thread(lambda: bus._receive_run(run_of(range(200))), with_loop=True))
        await eventually(lambda: all(len(h.run) == 200 for h in handlers), "every delivery")
        for handler in handlers:
            assert handler.run == list(range(200))
            # Woken once the run was buffered: the rest of it waited behind the first.
            assert handler.pending_at_first == [199]
        stats = bus.stats()
        assert (stats["received"], stats["delivered"]) == (200, 3 * 201)


async def test_a_run_also_going_to_sync_handlers_wakes_the_async_ones_once_at_its_end() -> None:
    # Here each event is dispatched alone (a sync handler may publish between them), yet
    # the async handler is woken only once the run is through: the sync handler gives it
    # a second to run early (a woken handler would), and it must not.
    async with Bus(node="n") as bus:
        handled = threading.Event()
        got: list[int] = []

        async def early(event: Event) -> None:
            got.append(number(event))
            handled.set()

        bus.subscribe("events.>", early)
        bus.emit(numbered(-1))
        await eventually(lambda: got == [-1], "the warm-up handled")
        handled.clear()
        handled_mid_run: list[bool] = []

        def sync(event: Event) -> None:
            if number(event) == 1:
                handled_mid_run.append(handled.wait(1.0))

        bus.subscribe("events.>", sync)
        await joined(in_thread(lambda: bus._receive_run(run_of(range(50))), with_loop=True))
        await eventually(lambda: len(got) == 51, "every delivery")
        assert handled_mid_run == [False]
        assert got == [-1, *range(50)]


async def test_runs_arriving_while_the_loop_is_busy_wake_it_with_one_call() -> None:
    # Each call into a loop from another thread writes to its self-pipe, which hands the
    # GIL to that loop's thread: consumers woken while a call is pending join it.
    async with Bus(node="n") as bus:
        got: dict[str, list[int]] = {"a": [], "b": []}
        for name in got:

            async def keep(event: Event, seen: list[int] = got[name]) -> None:
                seen.append(number(event))

            bus.subscribe(f"events.{name}.x", keep)
        bus.emit(Event("a.x", "", None, {"i": -1}))
        bus.emit(Event("b.x", "", None, {"i": -1}))
        await eventually(lambda: got == {"a": [-1], "b": [-1]}, "the warm-up handled")
        loop = asyncio.get_running_loop()
        calls: list[object] = []
        call_soon_threadsafe = loop.call_soon_threadsafe

        def counted(callback: Callable[..., object], *args: Any) -> asyncio.Handle:
            calls.append(callback)
            return call_soon_threadsafe(callback, *args)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        try:

            def deliver() -> None:
                bus._receive_run(run_of(range(3), "events.a.x"))  # wakes a's consumer
                bus._receive_run(run_of(range(3), "events.b.x"))  # b's joins that call

            thread = in_thread(deliver, with_loop=True)
            thread.join(PATIENCE)  # this loop is busy (blocked) meanwhile
            assert not thread.is_alive()
        finally:
            del loop.call_soon_threadsafe
        assert len(calls) == 1
        await eventually(lambda: got == {"a": [-1, 0, 1, 2], "b": [-1, 0, 1, 2]}, "both runs")


@pytest.mark.parametrize(
    ("overflow", "kept"),
    [("drop_newest", range(5)), ("drop_oldest", range(15, 20))],
)
async def test_a_run_into_a_small_mailbox_keeps_the_bound_and_counts_the_drops(
    overflow: str, kept: range
) -> None:
    async with Bus(node="n") as bus:
        (handler,) = await waiting(bus, maxsize=5, overflow=overflow)
        await joined(in_thread(lambda: bus._receive_run(run_of(range(20))), with_loop=True))
        assert handler.sub is not None
        assert handler.sub.dropped == 15
        await eventually(lambda: len(handler.run) == 5, "the kept events handled")
        assert handler.run == list(kept)
        assert bus.stats()["dropped"] == 15


async def test_drop_oldest_reaches_into_the_run_the_handler_is_reading() -> None:
    # The handler reads a run in place; the rest of that run still counts against
    # maxsize, and its oldest items are the first to go.
    async with Bus(node="n") as bus:
        release = asyncio.Event()
        started = asyncio.Event()
        got: list[int] = []

        async def slow(event: Event) -> None:
            started.set()
            await release.wait()
            got.append(number(event))

        sub = bus.subscribe("events.>", slow, maxsize=3, overflow="drop_oldest")
        bus._receive_run(run_of(range(5)))  # before the worker first runs: 0 and 1 drop
        assert (sub.dropped, sub.pending) == (2, 3)
        await started.wait()  # 2 in hand, 3 and 4 behind it in the same run
        assert sub.pending == 2
        bus._receive_run(run_of(range(5, 8)))  # 3 and 4 drop, from the run being read
        assert (sub.dropped, sub.pending) == (4, 3)
        release.set()
        await eventually(lambda: len(got) == 4, "the kept events handled")
        assert got == [2, 5, 6, 7]
        assert bus.stats()["dropped"] == 4


async def test_a_run_into_a_full_block_mailbox_waits_for_the_consumer_it_wakes() -> None:
    # The first put of the run finds the consumer waiting; its wake-up is held until the
    # run is delivered, but a put that must wait for room releases it: otherwise the
    # consumer that would make room never runs.
    async with Bus(node="n") as bus:
        (handler,) = await waiting(bus, maxsize=5, overflow="block")
        await joined(in_thread(lambda: bus._receive_run(run_of(range(50))), with_loop=False))
        await eventually(lambda: len(handler.run) == 50, "every delivery")
        assert handler.run == list(range(50))
        assert handler.sub is not None
        assert (handler.sub.dropped, handler.sub.overfilled) == (0, 0)


async def test_a_run_from_an_event_loop_thread_overfills_a_block_mailbox() -> None:
    async with Bus(node="n") as bus:
        (handler,) = await waiting(bus, maxsize=5, overflow="block")
        await joined(in_thread(lambda: bus._receive_run(run_of(range(20))), with_loop=True))
        assert handler.sub is not None
        assert handler.sub.overfilled == 15
        await eventually(lambda: len(handler.run) == 20, "every delivery")
        assert handler.run == list(range(20))
        assert bus.stats()["overfilled"] == 15


class Abort(BaseException):
    """Escapes the bus's handler isolation, as KeyboardInterrupt would."""


async def test_held_wake_ups_are_released_when_a_handler_raises_out_of_the_run() -> None:
    async with Bus(node="n") as bus:
        (handler,) = await waiting(bus)

        def abort_at_three(event: Event) -> None:
            if number(event) == 3:
                raise Abort

        bus.subscribe("events.>", abort_at_three)
        failed: list[BaseException] = []

        def receive() -> None:
            try:
                bus._receive_run(run_of(range(10)))
            except Abort as exc:
                failed.append(exc)

        await joined(in_thread(receive, with_loop=True))
        assert len(failed) == 1
        # What was put before the escape reaches the handler: its wake-up was released.
        await eventually(lambda: handler.run[:3] == [0, 1, 2], "the run's head handled")
        assert handler.run in ([0, 1, 2], [0, 1, 2, 3])
        bus.emit(numbered(99))  # the bus holds no wake-up any more
        await eventually(lambda: handler.run[-1:] == [99], "the next event handled")


async def test_an_event_published_by_a_sync_handler_mid_run_follows_the_current_one() -> None:
    async with Bus(node="n") as bus:
        (handler,) = await waiting(bus)
        seen: list[int] = []

        def publish_at_two(event: Event) -> None:
            seen.append(number(event))
            if number(event) == 2:
                bus.emit(numbered(100))

        bus.subscribe("events.>", publish_at_two)
        await joined(in_thread(lambda: bus._receive_run(run_of(range(5))), with_loop=True))
        await eventually(lambda: len(handler.run) == 6, "every delivery")
        assert handler.run == [0, 1, 2, 100, 3, 4]
        assert seen == [0, 1, 2, 100, 3, 4]


async def test_a_run_with_undecodable_payloads_and_raw_streams() -> None:
    async with Bus(node="n") as bus:
        (handler,) = await waiting(bus)
        raw = bus.stream("events.>", raw=True)
        run = run_of(range(3))
        run.insert(1, (1, SUBJECT, b"not an event"))
        await joined(in_thread(lambda: bus._receive_run(run), with_loop=True))
        messages: list[Message] = [await anext(raw) for _ in range(4)]
        assert [m.data for m in messages] == [data for _, _, data in run]
        await eventually(lambda: len(handler.run) == 3, "every event")
        assert handler.run == [0, 1, 2]
        stats = bus.stats()
        assert (stats["undecodable"], stats["received"], stats["delivered"]) == (1, 4, 8)


async def test_a_closing_bus_flushes_runs_to_async_handlers(nats_server: NatsServer) -> None:
    bus = await connect(nats_server.url, node="runs")
    sender = await connect(nats_server.url, node="sender")
    try:
        got: list[list[int]] = [[] for _ in range(10)]
        for seen in got:

            async def keep(event: Event, seen: list[int] = seen) -> None:
                seen.append(number(event))

            bus.subscribe("events.>", keep)
        await bus.flush()
        for i in range(2000):
            sender.emit(numbered(i))
        await sender.flush()
        await eventually(lambda: bus.stats()["received"] == 2000, "every message received")
    finally:
        await sender.aclose()
        await bus.aclose()  # what was received is handled before it returns
    assert all(seen == list(range(2000)) for seen in got)
    assert bus.stats()["dropped"] == 0


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest", "block"])
async def test_runs_and_single_events_from_two_threads_lose_nothing_uncounted(
    overflow: str,
) -> None:
    # A receiving thread hands runs of every length while another thread emits one event
    # at a time and the handler takes them: each handler sees each thread's events in
    # order, never more than maxsize waiting, and what it did not see was counted.
    async with Bus(node="n") as bus:
        got: list[int] = []
        most_waiting = [0]
        sub: Subscription[Event] | None = None

        async def handler(event: Event) -> None:
            assert sub is not None
            most_waiting[0] = max(most_waiting[0], sub.pending)
            got.append(number(event))
            if len(got) % 7 == 0:
                await asyncio.sleep(0)

        sub = bus.subscribe("events.>", handler, maxsize=16, overflow=overflow)

        def receive() -> None:
            sizes = itertools.cycle([1, 5, 40, 2, 16, 17, 3])
            start = 0
            while start < 3000:
                size = next(sizes)
                bus._receive_run(run_of(range(start, start + size)))
                start += size

        def emit() -> None:
            for i in range(100_000, 101_000):
                bus.emit(numbered(i))

        threads = [in_thread(receive, with_loop=False), in_thread(emit, with_loop=False)]
        for thread in threads:
            await joined(thread)
        total = bus.stats()["received"] + 1000
        await eventually(lambda: len(got) + sub.dropped == total, "every event seen or counted")
        received = [i for i in got if i < 100_000]
        emitted = [i for i in got if i >= 100_000]
        assert received == sorted(received) and emitted == sorted(emitted)
        assert most_waiting[0] <= 16
        assert sub.overfilled == 0
        if overflow == "block":
            assert sub.dropped == 0 and len(got) == total
