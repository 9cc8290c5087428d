"""The event bus: emit/publish, delivery rules, overflow policies, closing, threads."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from bus_factories import EmbeddedBuses, NatsBuses

from turnout import InvalidSubjectError
from turnout.bus import Bus, BusClosedError, Message, Stream
from turnout.events import Event, tool_crashed, tool_installed, tool_started
from turnout.history import FileHistory, MemoryHistory
from turnout.transport.local import LocalNetwork, LocalTransport

Buses = EmbeddedBuses | NatsBuses

OLD = datetime(2001, 1, 1, tzinfo=timezone.utc)


def numbered(i: int, kind: str = "tool.started") -> Event:
    return Event(kind, "", None, {"i": i})


def number(event: Event) -> int:
    assert event.data is not None
    return int(event.data["i"])


def numbers(found: list[Event]) -> list[int]:
    return [number(e) for e in found]


async def take(stream: Stream[Any], count: int) -> list[Any]:
    taken = []
    async for item in stream:
        taken.append(item)
        if len(taken) == count:
            break
    return taken


# -- emit -----------------------------------------------------------------------------


def test_emit_stamps_a_copy_and_fills_the_node(make_bus: Buses) -> None:
    with make_bus("n1") as bus:
        got: list[Event] = []
        bus.subscribe("events.>", got.append)
        original = Event("tool.started", "", OLD, {"tool": "x"})
        before = datetime.now(timezone.utc)
        assert bus.emit(original) == "events.tool.started"
        after = datetime.now(timezone.utc)
        assert bus.emit(Event("node.left", "other", None, None)) == "events.node.left"
    first, second = got
    assert first.timestamp is not None and first.timestamp.tzinfo is not None
    assert first.timestamp.tzinfo is timezone.utc
    assert before <= first.timestamp <= after
    assert (first.type, first.node, first.data) == ("tool.started", "n1", {"tool": "x"})
    assert second.node == "other"
    assert original == Event("tool.started", "", OLD, {"tool": "x"})  # left as it was


@pytest.mark.parametrize("kind", ["", "a..b", "a b", "tool.*", ">", "tool.>", "a.", "\t"])
def test_emit_rejects_types_that_are_no_literal_subject(make_bus: Buses, kind: str) -> None:
    with make_bus() as bus:
        got: list[Event] = []
        bus.subscribe(">", got.append)
        with pytest.raises(InvalidSubjectError):
            bus.emit(Event(kind))
        assert got == []
        assert bus.stats()["published"] == 0
        assert bus.history(">") == []


def test_subscribe_type_and_patterns(make_bus: Buses) -> None:
    with make_bus("n") as bus:
        crashed: list[Event] = []
        tools: list[Event] = []
        everything: list[Event] = []
        bus.subscribe_type("tool.crashed", crashed.append)
        bus.subscribe("events.tool.*", tools.append)
        bus.subscribe("events.>", everything.append)
        bus.emit(tool_started("n", "embed"))
        bus.emit(tool_crashed("n", "whisper", RuntimeError("OOM killed"), 2))
        bus.emit(tool_installed("n", "calc", "v1.0.0"))
        bus.emit(Event("node.joined"))
        bus.emit(Event("user.training.complete"))
    assert [e.data["error"] for e in crashed if e.data] == ["OOM killed"]
    assert len(tools) == 3
    assert [e.type for e in everything][-2:] == ["node.joined", "user.training.complete"]


def test_invalid_pattern_or_queue_rejected(make_bus: Buses) -> None:
    with make_bus() as bus:
        with pytest.raises(InvalidSubjectError):
            bus.subscribe("events..x", print)
        with pytest.raises(ValueError):
            bus.subscribe("events.>", print, queue="")
        with pytest.raises(TypeError):
            bus.subscribe("events.>", "not callable")  # type: ignore[call-overload]
        assert bus.stats()["subscriptions"] == 0


# -- delivery --------------------------------------------------------------------------


def test_each_sync_subscription_sees_publish_order(make_bus: Buses) -> None:
    with make_bus() as bus:
        first: list[Event] = []
        second: list[Event] = []
        bus.subscribe("events.>", first.append)
        bus.subscribe("events.tool.*", second.append)
        for i in range(500):
            bus.emit(numbered(i))
    assert numbers(first) == numbers(second) == list(range(500))


def test_publish_from_a_handler_is_delivered_after_the_current_event(make_bus: Buses) -> None:
    with make_bus() as bus:
        seen: list[str] = []

        def chain(event: Event) -> None:
            if event.type == "step.one":
                bus.emit(Event("step.two"))

        bus.subscribe("events.step.one", chain)
        bus.subscribe("events.>", lambda e: seen.append(e.type))
        bus.emit(Event("step.one"))
    # The later subscriber still sees one before two, though two was emitted first.
    assert seen == ["step.one", "step.two"]


def test_raising_handler_is_isolated_logged_and_counted(
    make_bus: Buses,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with make_bus() as bus:
        got: list[Event] = []

        def broken(event: Event) -> None:
            raise RuntimeError("handler bug")

        bus.subscribe("events.>", broken)
        bus.subscribe("events.>", got.append)
        with caplog.at_level(logging.ERROR, logger="turnout.bus"):
            for i in range(3):
                bus.emit(numbered(i))
        assert numbers(got) == [0, 1, 2]
        assert bus.stats()["handler_errors"] == 3
    failures = [r for r in caplog.records if r.name == "turnout.bus"]
    assert len(failures) == 3
    assert failures[0].exc_info is not None
    assert "handler bug" in str(failures[0].exc_info[1])


def test_queue_groups_deliver_once_per_group_taking_turns(make_bus: Buses) -> None:
    with make_bus() as bus:
        got: dict[str, list[int]] = {name: [] for name in ("a1", "a2", "a3", "b1", "b2", "p")}

        def keep(name: str) -> Any:
            return lambda event: got[name].append(number(event))

        for name in ("a1", "a2", "a3"):
            bus.subscribe("events.tool.*", keep(name), queue="workers")
        bus.subscribe("events.>", keep("b1"), queue="auditors")
        bus.subscribe("events.tool.started", keep("b2"), queue="auditors")
        bus.subscribe("events.>", keep("p"))
        for i in range(30):
            bus.emit(numbered(i))
        make_bus.settle(bus)
    assert sorted(got["a1"] + got["a2"] + got["a3"]) == list(range(30))
    assert [len(got[name]) for name in ("a1", "a2", "a3")] == [10, 10, 10]
    assert sorted(got["b1"] + got["b2"]) == list(range(30))
    assert got["p"] == list(range(30))


def test_unsubscribe_is_idempotent_and_a_context_manager(make_bus: Buses) -> None:
    with make_bus() as bus:
        got: list[Event] = []
        sub = bus.subscribe("events.>", got.append)
        bus.emit(numbered(0))
        sub.unsubscribe()
        sub.unsubscribe()
        assert not sub.active
        bus.emit(numbered(1))
        with bus.subscribe("events.>", got.append):
            bus.emit(numbered(2))
        bus.emit(numbered(3))
        assert bus.stats()["subscriptions"] == 0
    assert numbers(got) == [0, 2]


def test_routes_follow_every_subscription_change() -> None:
    # Each subject's route is cached after its first emit; every change must show at once.
    with Bus() as bus:
        got: dict[str, list[int]] = {"plain": [], "w1": [], "w2": [], "late": []}

        def keep(name: str) -> Any:
            return lambda event: got[name].append(number(event))

        bus.subscribe("events.tool.started", keep("plain"))
        w1 = bus.subscribe("events.tool.*", keep("w1"), queue="workers")
        bus.emit(numbered(0))
        w2 = bus.subscribe("events.>", keep("w2"), queue="workers")  # the group grows
        bus.emit(numbered(1))
        bus.emit(numbered(2))
        w1.unsubscribe()
        bus.emit(numbered(3))
        w2.unsubscribe()  # the group is gone
        late = bus.subscribe("events.tool.started", keep("late"))
        bus.emit(numbered(4))
        late.unsubscribe()
        bus.emit(numbered(5))
    assert got["plain"] == [0, 1, 2, 3, 4, 5]
    assert sorted(got["w1"] + got["w2"]) == [0, 1, 2, 3]
    assert got["w1"][0] == 0 and 3 in got["w2"] and len(got["w2"]) >= 2
    assert got["late"] == [4]


def test_route_cache_stays_bounded_under_unique_subjects() -> None:
    with Bus(history=MemoryHistory(max_msgs=10)) as bus:
        got: list[Message] = []
        bus.subscribe("flood.>", got.append, raw=True)
        for i in range(5000):
            bus.publish(f"flood.{i}", b"{}")
        assert len(got) == 5000
        assert len(bus._routes) <= 4096


def test_a_subscription_made_while_another_thread_emits_gets_the_next_event() -> None:
    with Bus(history=MemoryHistory(max_msgs=10)) as bus:
        stop = threading.Event()

        def emit_forever() -> None:
            while not stop.is_set():
                bus.emit(numbered(-1))

        emitter = threading.Thread(target=emit_forever)
        emitter.start()
        try:
            for i in range(50):
                got: list[int] = []

                def keep(event: Event, got: list[int] = got) -> None:
                    got.append(number(event))

                sub = bus.subscribe("events.tool.started", keep)
                bus.emit(numbered(i))
                sub.unsubscribe()
                assert i in got
                bus.emit(numbered(i))
                # Gone for every emit that starts after unsubscribe returned (one of the
                # other thread's may have been in flight, and is allowed to finish).
                assert got.count(i) == 1
        finally:
            stop.set()
            emitter.join(10)


def test_threads_emitting_concurrently_lose_nothing(make_bus: Buses) -> None:
    threads, each = 4, 2000
    with make_bus(history=MemoryHistory(max_msgs=0)) as bus:
        got: list[Event] = []
        bus.subscribe("events.>", got.append)
        start = threading.Barrier(threads)

        def work(t: int) -> None:
            start.wait()
            for i in range(each):
                bus.emit(Event(f"t{t}", "", None, {"i": i}))

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        stats = bus.stats()
        history = bus.history("events.>", threads * each)
    assert len(got) == threads * each
    assert (stats["published"], stats["delivered"]) == (threads * each, threads * each)
    for t in range(threads):
        assert numbers([e for e in got if e.type == f"t{t}"]) == list(range(each))
    assert history == got  # the history holds the publish order the handlers saw


# -- raw messages ----------------------------------------------------------------------


def test_raw_publish_and_subscribe(make_bus: Buses) -> None:
    with make_bus("n") as bus:
        raw: list[Message] = []
        events: list[Event] = []
        bus.subscribe("events.>", raw.append, raw=True)
        bus.subscribe("events.>", events.append)
        wire = (
            b'{"type":"node.left","node":"go",'
            b'"timestamp":"2024-05-01T12:00:00.123456789Z","data":{"reason":"x"}}'
        )
        bus.publish("events.node.left", wire)
        bus.publish("events.node.left", bytearray(wire))
        emitted_subject = bus.emit(tool_started("", "t"))
        orders: list[Message] = []
        bus.subscribe("orders.*", orders.append, raw=True)
        bus.publish("orders.eu", b"\x00binary")
    assert raw[0] == Message("events.node.left", wire) == raw[1]
    assert events[0] == Event.from_json(wire) == events[1]
    assert raw[2].subject == emitted_subject
    assert raw[2].data == events[2].to_json()  # raw subscribers see the event's JSON
    assert orders == [Message("orders.eu", b"\x00binary")]


def test_raw_publish_needs_a_literal_subject_and_bytes(make_bus: Buses) -> None:
    with make_bus() as bus:
        for subject in ("orders.*", "orders.>", "", "a..b", "a b"):
            with pytest.raises(InvalidSubjectError):
                bus.publish(subject, b"{}")
        with pytest.raises(TypeError):
            bus.publish("orders.x", "text")  # type: ignore[arg-type]


def test_undecodable_messages_skipped_for_event_subscribers_and_counted(make_bus: Buses) -> None:
    with make_bus() as bus:
        raw: list[Message] = []
        events: list[Event] = []
        bus.subscribe("events.>", raw.append, raw=True)
        bus.subscribe("events.>", events.append)
        bus.subscribe("events.>", events.append)  # two subscribers, one count
        bus.publish("events.x", b"not json")
        bus.publish("events.x", b'{"node":"no type"}')
        bus.publish("events.x", b'{"type":"x"}')
        stats = bus.stats()
        assert stats["undecodable"] == 2
        assert len(raw) == 3
        assert events == [Event("x"), Event("x")]
        assert bus.history("events.>") == [Event("x")]  # only events are recorded
    with make_bus() as quiet:
        only_raw: list[Message] = []
        quiet.subscribe("orders.>", only_raw.append, raw=True)
        quiet.publish("orders.x", b"not json")
        assert quiet.stats()["undecodable"] == 0  # nobody wanted an event
        assert len(only_raw) == 1


# -- async handlers and streams --------------------------------------------------------


async def test_async_handlers_run_on_their_loop_in_order(make_bus: Buses) -> None:
    loop_thread = threading.get_ident()
    async with make_bus() as bus:
        seen: list[tuple[int, int]] = []
        done = asyncio.Event()

        async def slow(event: Event) -> None:
            await asyncio.sleep(0)
            seen.append((number(event), threading.get_ident()))
            if number(event) == 199:
                done.set()

        bus.subscribe("events.>", slow)
        for i in range(100):
            bus.emit(numbered(i))
        producer = threading.Thread(target=lambda: [bus.emit(numbered(i)) for i in range(100, 200)])
        producer.start()
        await done.wait()
        await asyncio.to_thread(producer.join)
    assert [i for i, _ in seen] == list(range(200))
    assert {ident for _, ident in seen} == {loop_thread}


async def test_raising_async_handler_counted(make_bus: Buses) -> None:
    async with make_bus() as bus:

        async def broken(event: Event) -> None:
            raise ValueError("async bug")

        sub = bus.subscribe("events.>", broken)
        bus.emit(numbered(0))
        bus.emit(numbered(1))
    assert sub.errors == 2
    assert bus.stats()["handler_errors"] == 2


def test_async_handler_needs_a_loop(make_bus: Buses) -> None:
    async def handler(event: Event) -> None:
        pass

    with make_bus() as bus, pytest.raises(RuntimeError, match="event loop"):
        bus.subscribe("events.>", handler)


async def test_stream_drop_newest(make_bus: Buses) -> None:
    async with make_bus() as bus:
        stream = bus.stream("events.>", maxsize=3, overflow="drop_newest")
        for i in range(10):
            bus.emit(numbered(i))
        assert (stream.dropped, stream.overfilled, stream.pending) == (7, 0, 3)
        assert numbers(await take(stream, 3)) == [0, 1, 2]
        assert bus.stats()["dropped"] == 7


async def test_stream_drop_oldest(make_bus: Buses) -> None:
    async with make_bus() as bus:
        stream = bus.stream("events.>", maxsize=3, overflow="drop_oldest")
        for i in range(10):
            bus.emit(numbered(i))
        assert (stream.dropped, stream.pending) == (7, 3)
        assert numbers(await take(stream, 3)) == [7, 8, 9]


async def test_stream_block_makes_another_thread_wait(make_bus: Buses) -> None:
    async with make_bus() as bus:
        stream = bus.stream("events.>", maxsize=3, overflow="block")
        producer = threading.Thread(target=lambda: [bus.emit(numbered(i)) for i in range(50)])
        producer.start()
        got = await take(stream, 50)
        await asyncio.to_thread(producer.join)
        assert numbers(got) == list(range(50))
        # Nothing dropped, nothing beyond maxsize: the producer waited for room.
        assert (stream.dropped, stream.overfilled) == (0, 0)


async def test_sync_emit_on_the_loop_overfills_a_block_stream_instead_of_deadlocking(
    make_bus: Buses,
) -> None:
    async with make_bus() as bus:
        stream = bus.stream("events.>", maxsize=3, overflow="block")
        for i in range(10):
            bus.emit(numbered(i))  # the consumer is on this loop: waiting would never end
        assert (stream.dropped, stream.overfilled, stream.pending) == (0, 7, 10)
        assert bus.stats()["overfilled"] == 7
        assert numbers(await take(stream, 10)) == list(range(10))


async def test_aemit_waits_for_room_on_the_loop(make_bus: Buses) -> None:
    async with make_bus() as bus:
        stream = bus.stream("events.>", maxsize=2, overflow="block")
        consumer = asyncio.create_task(take(stream, 20))
        for i in range(20):
            await bus.aemit(numbered(i))
            assert stream.pending <= 2
        assert numbers(await consumer) == list(range(20))
        assert (stream.dropped, stream.overfilled) == (0, 0)


async def test_async_handler_mailbox_overflow_counted(make_bus: Buses) -> None:
    async with make_bus() as bus:
        got: list[int] = []

        async def handler(event: Event) -> None:
            got.append(number(event))

        sub = bus.subscribe("events.>", handler, maxsize=2, overflow="drop_newest")
        for i in range(10):
            bus.emit(numbered(i))  # the handler cannot run before this loop yields
        assert sub.dropped == 8
    assert got == [0, 1]
    assert bus.stats()["dropped"] == 8


async def test_stream_queue_groups_and_raw_streams(make_bus: Buses) -> None:
    async with make_bus() as bus:
        first = bus.stream("events.>", queue="g")
        second = bus.stream("events.>", queue="g")
        raw = bus.stream("events.>", raw=True)
        for i in range(4):
            bus.emit(numbered(i))
        await make_bus.asettle(bus)
        assert (first.pending, second.pending) == (2, 2)
        messages = await take(raw, 4)
        assert [Event.from_json(m.data).data for m in messages] == [{"i": i} for i in range(4)]


async def test_stream_context_manager_closes_it(make_bus: Buses) -> None:
    async with make_bus() as bus:
        async with bus.stream("events.>") as stream:
            bus.emit(numbered(0))
            assert numbers(await take(stream, 1)) == [0]
        assert stream.closed
        bus.emit(numbered(1))
        assert [item async for item in stream] == []
        assert bus.stats()["streams"] == 0
        assert not bus._draining  # nothing left behind by the closed stream


# -- closing ---------------------------------------------------------------------------


async def test_aclose_flushes_handlers_and_ends_streams(make_bus: Buses) -> None:
    bus = make_bus()
    handled: list[int] = []

    async def handler(event: Event) -> None:
        await asyncio.sleep(0)
        handled.append(number(event))

    bus.subscribe("events.>", handler)
    stream = bus.stream("events.>")
    for i in range(100):
        bus.emit(numbered(i))
    await bus.aclose()
    assert handled == list(range(100))  # everything accepted before close was handled
    assert numbers([item async for item in stream]) == list(range(100))  # then it ends
    await bus.aclose()  # idempotent
    with pytest.raises(BusClosedError):
        bus.emit(numbered(100))
    with pytest.raises(BusClosedError):
        bus.subscribe("events.>", print)


def test_close_from_another_thread_waits_for_async_handlers(make_bus: Buses) -> None:
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    try:
        handled: list[int] = []

        async def handler(event: Event) -> None:
            await asyncio.sleep(0)
            handled.append(number(event))

        bus = make_bus(loop=loop)
        bus.subscribe("events.>", handler)
        for i in range(100):
            bus.emit(numbered(i))
        bus.close()
        assert handled == list(range(100))
        with pytest.raises(BusClosedError):
            bus.emit(numbered(100))
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join()
        loop.close()


def test_close_inside_a_handler_is_refused(make_bus: Buses) -> None:
    with make_bus() as bus:
        errors: list[BaseException] = []

        def closer(event: Event) -> None:
            try:
                bus.close()
            except RuntimeError as exc:
                errors.append(exc)

        bus.subscribe("events.>", closer)
        bus.emit(numbered(0))
        assert len(errors) == 1
        assert not bus.closed


# -- history and stats -----------------------------------------------------------------


def test_history_through_the_bus(make_bus: Buses) -> None:
    with make_bus("n") as bus:
        for i in range(6):
            bus.emit(numbered(i, "tool.started" if i % 2 else "node.joined"))
        assert numbers(bus.history("events.>", 2)) == [0, 1]
        assert numbers(bus.history("events.tool.*", 2, newest=True)) == [3, 5]
        everything = bus.history("events.>")
        since = everything[3].timestamp
        assert since is not None
        assert numbers(bus.history_since("events.>", since)) == [3, 4, 5]
        assert bus.history("events.>", 0) == []
        bus.publish("orders.x", b'{"type":"x"}')  # not an event subject: not recorded
        assert len(bus.history(">")) == 6


def test_file_history_through_the_bus_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "events.journal"
    with Bus("n", history=FileHistory(path)) as bus:
        raw: list[Message] = []
        bus.subscribe("events.>", raw.append, raw=True)
        for i in range(5):
            bus.emit(numbered(i))
        before = bus.history("events.>")
    assert path.read_bytes().count(raw[0].data) == 1  # the same bytes as raw subscribers got
    with Bus("n", history=FileHistory(path)) as again:
        assert again.history("events.>") == before


def test_stats_shape(make_bus: Buses) -> None:
    with make_bus() as bus:
        bus.subscribe("events.>", lambda e: None)
        bus.emit(numbered(0))
        stats = bus.stats()
    for key in (
        "published",
        "received",
        "delivered",
        "handler_errors",
        "dropped",
        "overfilled",
        "undecodable",
        "subscriptions",
        "streams",
        "index",
        "history",
    ):
        assert key in stats
    assert (stats["published"], stats["delivered"], stats["subscriptions"]) == (1, 1, 1)
    assert stats["index"]["subscriptions"] == 1
    assert stats["history"]["retained"] == 1


# -- the transport seam ----------------------------------------------------------------


def test_local_network_carries_events_between_buses() -> None:
    network = LocalNetwork()
    a = Bus("a", transport=LocalTransport(network))
    b = Bus("b", transport=LocalTransport(network))
    try:
        at_a: list[Event] = []
        at_b: list[Event] = []
        raw_at_b: list[Message] = []
        a.subscribe("events.>", at_a.append)
        b.subscribe("events.tool.*", at_b.append)
        b.subscribe("events.>", at_b.append)  # two patterns: still once per subscription
        b.subscribe("orders.>", raw_at_b.append, raw=True)
        a.emit(numbered(0))
        b.emit(numbered(1))
        a.publish("orders.x", b"bytes")
        assert numbers(at_a) == [0, 1]
        assert numbers(at_b) == [0, 0, 1, 1]
        assert [e.node for e in at_a] == ["a", "b"]
        assert raw_at_b == [Message("orders.x", b"bytes")]
        assert (a.stats()["published"], a.stats()["received"]) == (2, 1)
    finally:
        a.close()
        b.close()


def keeper(got: list[tuple[str, int]], name: str) -> Callable[[Event], None]:
    return lambda event: got.append((name, number(event)))


def test_local_network_queue_groups_span_buses() -> None:
    network = LocalNetwork()
    buses = [Bus(name, transport=LocalTransport(network)) for name in ("a", "b", "c")]
    try:
        got: list[tuple[str, int]] = []
        for bus in buses:
            bus.subscribe("events.>", keeper(got, bus.node), queue="w")
        for i in range(30):
            buses[i % 3].emit(numbered(i))
        assert sorted(i for _, i in got) == list(range(30))  # once across all buses
        assert {name for name, _ in got} == {"a", "b", "c"}
    finally:
        for bus in buses:
            bus.close()
        assert network._interest.stats()["subscriptions"] == 0


async def test_an_async_handler_has_at_most_maxsize_events_waiting_beyond_the_one_in_hand() -> None:
    # The worker takes one event at a time: while the handler holds one, the mailbox holds
    # the rest, so the bound and drop_oldest apply to everything not yet handled.
    bus = Bus(node="n")
    release = asyncio.Event()
    started = asyncio.Event()
    handled: list[int] = []

    async def slow(event: Event) -> None:
        started.set()
        await release.wait()
        handled.append(int(event.data["i"]))

    sub = bus.subscribe("events.>", slow, maxsize=3, overflow="drop_oldest")
    for i in range(3):  # buffered before the worker first runs
        bus.emit(Event("tool.started", data={"i": i}))
    await started.wait()
    for i in range(3, 10):
        bus.emit(Event("tool.started", data={"i": i}))
    # 1 in hand, 3 waiting: the 6 oldest of those behind it drop. A worker that took all
    # three buffered events at once would hold 1 and 2 beyond the bound: 4 dropped, and
    # [0, 1, 2, 7, 8, 9] handled.
    assert sub.dropped == 6
    release.set()
    await bus.aclose()
    assert handled == [0, 7, 8, 9]
