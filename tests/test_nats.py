"""turnout.nats against real nats-servers: interop with plain clients, shared
subscriptions, queue groups across processes, JetStream history, faults, a cluster."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from nats.js.api import StreamConfig
from plain_nats import connect_plain

from turnout.bus import Message
from turnout.events import Event, tool_installed
from turnout.history import MemoryHistory
from turnout.nats import (
    NatsBus,
    NatsConnectError,
    PersistConfig,
    PersistError,
    connect,
    connect_sync,
)
from turnout.testing.nats_server import NatsCluster, NatsServer, free_port, wait_jetstream

# Every wait below polls until a condition holds, up to this long: long enough for a busy
# machine, and a hung test still ends.
PATIENCE = 20.0


async def eventually(
    condition: Callable[[], bool], what: str, state: Callable[[], object] | None = None
) -> None:
    """Waits for ``condition``; a failure says what it waited for and, given ``state``,
    where things stood then."""
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            where = "" if state is None else f" (then: {state()!r})"
            raise AssertionError(f"not within {PATIENCE} s: {what}{where}")
        await asyncio.sleep(0.01)


def numbered(i: int, kind: str = "tool.started") -> Event:
    return Event(kind, "", None, {"i": i})


def numbers(events: list[Event]) -> list[int]:
    return [int(e.data["i"]) for e in events if e.data is not None]


# -- interop ---------------------------------------------------------------------------


@pytest.mark.parametrize("persist", [None, PersistConfig()], ids=["core", "jetstream"])
async def test_a_plain_subscriber_reads_the_jb_mesh_envelope_byte_for_byte(
    nats_server: NatsServer, persist: PersistConfig | None
) -> None:
    plain = await connect_plain(nats_server.url)
    bus = await connect(nats_server.url, node="n1", persist=persist)
    try:
        wire: list[bytes] = []

        async def keep(msg: Any) -> None:
            wire.append(msg.data)

        await plain.subscribe("events.tool.installed", cb=keep)
        await plain.flush()
        local: list[Message] = []
        bus.subscribe("events.>", local.append, raw=True)
        assert bus.emit(tool_installed("", "calc", "v1.0.0")) == "events.tool.installed"
        await bus.flush()
        await eventually(lambda: len(wire) == 1, "the plain subscriber gets the event")
        assert wire[0] == local[0].data  # exactly the bytes local raw subscribers saw
        doc = orjson.loads(wire[0])
        assert list(doc) == ["type", "node", "timestamp", "data"]  # Go's field order
        assert (doc["type"], doc["node"], doc["data"]) == (
            "tool.installed",
            "n1",
            {"tool": "calc", "version": "v1.0.0"},
        )
        assert Event.from_json(wire[0]).to_json() == wire[0]
    finally:
        await bus.aclose()
        await plain.close()


async def test_a_turnout_subscriber_reads_what_a_plain_client_publishes(
    nats_server: NatsServer,
) -> None:
    bus = await connect(nats_server.url, node="n2")
    plain = await connect_plain(nats_server.url)
    try:
        events: list[Event] = []
        raw: list[Message] = []
        bus.subscribe("events.node.*", events.append)
        bus.subscribe("events.>", raw.append, raw=True)
        await bus.flush()
        go = (
            b'{"type":"node.joined","node":"go-1","timestamp":"2024-05-01T12:00:00.123456789Z",'
            b'"data":{"capabilities":null}}'
        )
        await plain.publish("events.node.joined", go)
        await plain.publish("events.node.left", b"not json")
        await plain.publish("events.node.left", b'{"node":"no type"}')
        await plain.flush()
        await eventually(lambda: len(raw) == 3, "all three messages arrive")
        assert [m.data for m in raw] == [go, b"not json", b'{"node":"no type"}']
        assert events == [Event.from_json(go)]
        assert events[0].to_json() == go  # nanoseconds and null kept when echoed back
        stats = bus.stats()
        assert stats["undecodable"] == 2
        assert stats["received"] == 3
    finally:
        await bus.aclose()
        await plain.close()


# -- shared subscriptions, order, queue groups -----------------------------------------

PATTERNS = [
    ">",
    "events.>",
    "events.tool.>",
    "events.tool.*",
    "events.*.installed",
    "events.tool.installed",
    "*.tool.installed",
    "*.*.installed",
    "*.>",
    "events.*.*",
]


async def test_a_hundred_handlers_share_one_nats_subscription(nats_server: NatsServer) -> None:
    bus = await connect(nats_server.url, node="many")
    sender = await connect(nats_server.url, node="sender")
    try:
        got: list[list[int]] = [[] for _ in range(100)]
        for n, seen in enumerate(got):  # broadest pattern first: it covers the others
            bus.subscribe(
                PATTERNS[n % len(PATTERNS)], lambda e, seen=seen: seen.append(e.data["i"])
            )
        await bus.flush()
        assert bus.stats()["transport"]["nats_subscriptions"] == 1
        for i in range(200):
            sender.emit(numbered(i, "tool.installed"))
        await sender.flush()
        await eventually(lambda: all(len(seen) == 200 for seen in got), "every delivery")
        assert all(seen == list(range(200)) for seen in got)
        stats = bus.stats()
        assert stats["received"] == 200 and stats["delivered"] == 20_000
    finally:
        await bus.aclose()
        await sender.aclose()


async def test_overlapping_nats_subscriptions_deliver_once_in_order(
    nats_server: NatsServer,
) -> None:
    bus = await connect(nats_server.url, node="overlap")
    sender = await connect(nats_server.url, node="sender")
    try:
        narrow: list[Event] = []
        wide: list[Event] = []
        bus.subscribe("events.*.x", narrow.append)
        bus.subscribe("events.tool.*", wide.append)  # collides with the first, not inside it
        await bus.flush()
        assert bus.stats()["transport"]["nats_subscriptions"] == 2
        kinds = ["tool.x", "tool.y", "other.x"]
        for i in range(300):
            sender.emit(numbered(i, kinds[i % 3]))
        await sender.flush()
        await eventually(lambda: len(narrow) == 200 and len(wide) == 200, "every delivery")
        assert numbers(narrow) == [i for i in range(300) if i % 3 != 1]
        assert numbers(wide) == [i for i in range(300) if i % 3 != 2]
        assert bus.stats()["transport"]["duplicates"] == 100  # tool.x came twice, once used
    finally:
        await bus.aclose()
        await sender.aclose()


async def test_nats_subscriptions_follow_local_interest(nats_server: NatsServer) -> None:
    async with await connect(nats_server.url) as bus:

        async def nats_subs() -> int:
            await bus.flush()
            return int(bus.stats()["transport"]["nats_subscriptions"])

        narrow = bus.subscribe("events.tool.*", print)
        assert await nats_subs() == 1
        wide = bus.subscribe("events.>", print)  # broader: takes the narrow one over
        inner = bus.subscribe("events.tool.started", print)  # served by it too
        assert await nats_subs() == 1
        assert bus.stats()["transport"]["handovers"] == 1
        wide.unsubscribe()  # it still serves the others
        assert await nats_subs() == 1
        narrow.unsubscribe()
        inner.unsubscribe()
        assert await nats_subs() == 0
        # Overlapping, neither inside the other: two, and the older one stays while the
        # newer overlaps it (its copies are the ones that count).
        tools = bus.subscribe("events.tool.*", print)
        assert await nats_subs() == 1
        started = bus.subscribe("events.*.started", print)
        assert await nats_subs() == 2
        tools.unsubscribe()
        assert await nats_subs() == 2
        started.unsubscribe()
        assert await nats_subs() == 0
        # Added together (subscriptions made in a row), the broad one serves the others.
        await bus.nats.run(bus.nats._add_plain(["a.b.c", "a.*.c", "a.>", "x.y"]))
        assert await nats_subs() == 2


async def test_a_broader_subscription_takes_over_mid_stream_without_loss_or_doubles(
    nats_server: NatsServer,
) -> None:
    bus = await connect(nats_server.url, node="r")
    sender = await connect(nats_server.url, node="s")
    try:
        narrow: list[Event] = []
        bus.subscribe("events.tool.started", narrow.append)
        await bus.flush()
        # The sender keeps the stream flowing, at most `ahead` events past what the bus
        # handled, until every broader subscription is in place, then sends `tail` more:
        # each takeover happens mid-stream however slow or loaded the machine is.
        ahead, tail, limit = 1000, 500, 100_000
        all_placed = asyncio.Event()

        async def send() -> int:
            i, end = 0, limit
            while i < end:
                sender.emit(numbered(i))
                i += 1
                if i % 50 == 0:
                    await asyncio.sleep(0.001)
                while i - len(narrow) > ahead:
                    await asyncio.sleep(0.001)
                if all_placed.is_set() and end == limit:
                    end = i + tail
            await sender.flush()
            return i

        sending = asyncio.create_task(send())
        later: dict[str, list[Event]] = {}

        def state() -> dict[str, Any]:
            received = numbers(narrow)
            missing = sorted(set(range(max(received, default=0))) - set(received))
            transport = bus.stats()["transport"]
            counters = ("received", "duplicates", "handovers", "nats_subscriptions")
            return {
                "handled": len(received),
                "distinct": len(set(received)),
                "missing": missing[:10],
                "sent": sending.done(),
                **{k: transport[k] for k in (*counters, "disconnects", "errors")},
                "sender": {k: sender.stats()["transport"][k] for k in ("published", "errors")},
            }

        for pattern in ("events.tool.*", "events.tool.>", "events.>"):  # each takes over
            await eventually(
                lambda: len(narrow) > 500 * (len(later) + 1), "the stream flows", state
            )
            later[pattern] = []
            bus.subscribe(pattern, later[pattern].append)
            await bus.flush()
        all_placed.set()
        total = await sending
        assert total < limit  # the takeovers happened while it flowed
        await eventually(lambda: len(narrow) >= total, "every event", state)
        assert numbers(narrow) == list(range(total))  # none lost, none twice, in order
        for pattern, got in later.items():
            assert got, f"{pattern} got nothing though the stream flowed {tail} more"
            first = numbers(got)[0]
            assert numbers(got) == list(range(first, total)), pattern
        transport = bus.stats()["transport"]
        assert transport["nats_subscriptions"] == 1
        assert transport["handovers"] == 3
    finally:
        await bus.aclose()
        await sender.aclose()


async def test_order_from_a_remote_publisher_is_kept(nats_server: NatsServer) -> None:
    bus = await connect(nats_server.url, node="r")
    sender = await connect(nats_server.url, node="s")
    try:
        got: list[Event] = []
        stream = bus.stream("events.>", maxsize=10_000)
        bus.subscribe("events.>", got.append)
        await bus.flush()
        for i in range(3000):
            sender.emit(numbered(i))
        await sender.flush()
        await eventually(lambda: len(got) == 3000, "every event")
        assert numbers(got) == list(range(3000))
        streamed = [await stream.__anext__() for _ in range(3000)]
        assert numbers(streamed) == list(range(3000))
        assert {e.node for e in got} == {"s"}
    finally:
        await bus.aclose()
        await sender.aclose()


async def test_queue_groups_balance_across_processes(nats_server: NatsServer) -> None:
    buses = [await connect(nats_server.url, node=f"w{n}") for n in range(2)]
    plain = await connect_plain(nats_server.url)
    try:
        taken: list[tuple[str, int]] = []
        for bus in buses:
            for _ in range(2):  # two local members: the bus picks one of them
                bus.subscribe(
                    "events.job.*",
                    lambda e, b=bus: taken.append((b.node, e.data["i"])),
                    queue="workers",
                )
            await bus.flush()

        async def plain_member(msg: Any) -> None:
            taken.append(("plain", int(orjson.loads(msg.data)["data"]["i"])))

        await plain.subscribe("events.job.*", queue="workers", cb=plain_member)
        await plain.flush()
        for i in range(300):
            buses[i % 2].emit(numbered(i, "job.run"))
        for bus in buses:
            await bus.flush()
        await eventually(lambda: len(taken) == 300, "each job taken once")
        assert sorted(i for _, i in taken) == list(range(300))  # once across all processes
        assert {name for name, _ in taken} == {"w0", "w1", "plain"}
    finally:
        for bus in buses:
            await bus.aclose()
        await plain.close()


async def test_async_handler_overflow_on_received_messages_is_counted(
    nats_server: NatsServer,
) -> None:
    bus = await connect(nats_server.url, node="slow")
    sender = await connect(nats_server.url, node="fast")
    try:
        release = asyncio.Event()
        handled: list[int] = []

        async def slow(event: Event) -> None:
            await release.wait()
            handled.append(int(event.data["i"]))

        sub = bus.subscribe("events.>", slow, maxsize=10, overflow="drop_newest")
        await bus.flush()
        for i in range(100):
            sender.emit(numbered(i))
        await sender.flush()
        await eventually(lambda: bus.stats()["received"] == 100, "every message received")
        release.set()
        await eventually(lambda: len(handled) + sub.dropped == 100, "handled or dropped")
        assert sub.dropped >= 89  # one in the handler, ten waiting: the rest counted
        assert bus.stats()["dropped"] == sub.dropped
        assert handled == sorted(handled)
    finally:
        await bus.aclose()
        await sender.aclose()


# -- JetStream history -----------------------------------------------------------------


async def test_history_from_jetstream(own_nats_server: NatsServer) -> None:
    bus = await connect(own_nats_server.url, node="h", persist=PersistConfig())
    other = await connect(own_nats_server.url, node="o", persist=PersistConfig())
    try:
        for i in range(30):  # each node's events in order, the other's after they are stored
            (other if i < 10 else bus).emit(numbered(i, "tool.started" if i % 3 else "node.health"))
            if i == 9:
                await other.flush()
        everything = await bus.ahistory("events.>", 100)
        assert numbers(everything) == list(range(30))  # both nodes' events, oldest first
        assert numbers(await bus.ahistory("events.>", 5)) == [0, 1, 2, 3, 4]
        assert numbers(await bus.ahistory("events.>", 5, newest=True)) == [25, 26, 27, 28, 29]
        assert numbers(bus.history("events.node.*", 3, newest=True)) == [21, 24, 27]
        assert numbers(bus.history("events.*.health", 2)) == [0, 3]
        assert bus.history("events.>", 0) == [] and bus.history("events.>", -1) == []
        assert bus.history("orders.>") == []  # outside the stream
        since = everything[20].timestamp
        assert since is not None
        assert numbers(await bus.ahistory_since("events.>", since, 3)) == [20, 21, 22]
        assert numbers(bus.history_since("events.>", since, 3, newest=True)) == [27, 28, 29]
        stats = bus.stats()
        assert stats["transport"]["acked"] == 20
        assert stats["history"]["retained"] == 30
    finally:
        await bus.aclose()
        await other.aclose()


async def test_jetstream_history_answers_as_the_memory_history_does(
    own_nats_server: NatsServer,
) -> None:
    bus = await connect(own_nats_server.url, node="h", persist=PersistConfig())
    try:
        memory = MemoryHistory(max_msgs=0)
        bus.subscribe("events.>", lambda e: memory.append(e.subject, e))  # the same events
        kinds = ["tool.started", "tool.installed", "node.health", "user.a.b", "tool.crashed"]
        rng = random.Random(5)
        for i in range(400):
            bus.emit(numbered(i, rng.choice(kinds)))
        events = memory.history(">", 1000)
        filters = [">", "events.>", "events.tool.*", "events.*.health", "events.user.>", "x.>"]
        for filter in filters:
            for limit in (0, 1, 7, 150, 1000):
                for newest in (False, True):
                    expected = memory.history(filter, limit, newest=newest)
                    got = await bus.ahistory(filter, limit, newest=newest)
                    assert got == expected, (filter, limit, newest)
            since = events[rng.randrange(len(events))].timestamp
            assert since is not None
            for newest in (False, True):
                expected = memory.history_since(filter, since, 20, newest=newest)
                assert await bus.ahistory_since(filter, since, 20, newest=newest) == expected
    finally:
        await bus.aclose()


async def test_undecodable_records_are_skipped_and_counted(own_nats_server: NatsServer) -> None:
    bus = await connect(own_nats_server.url, persist=PersistConfig())
    try:
        bus.emit(numbered(0))
        bus.publish("events.junk", b"\xff not json")
        bus.emit(numbered(1))
        bus.publish("events.junk", b"[1, 2]")
        assert numbers(await bus.ahistory("events.>", 10)) == [0, 1]
        assert numbers(await bus.ahistory("events.>", 2, newest=True)) == [0, 1]
        assert bus.stats()["history"]["undecodable"] >= 2
    finally:
        await bus.aclose()


async def test_history_limits_by_count_and_age(own_nats_server: NatsServer) -> None:
    bus = await connect(own_nats_server.url, persist=PersistConfig(max_msgs=5))
    try:
        for i in range(8):
            bus.emit(numbered(i))
        assert numbers(await bus.ahistory("events.>", 50)) == [3, 4, 5, 6, 7]
    finally:
        await bus.aclose()
    # Connecting again with other limits and update=True updates the stream; max_age takes
    # seconds too.
    bus = await connect(own_nats_server.url, persist=PersistConfig(max_age=1.0, update=True))
    try:
        assert bus.persist is not None and bus.persist.max_age == timedelta(seconds=1)
        bus.emit(numbered(8))
        assert numbers(await bus.ahistory("events.>", 50)) == [3, 4, 5, 6, 7, 8]
        deadline = asyncio.get_running_loop().time() + PATIENCE
        while await bus.ahistory("events.>", 50):  # the server expires them after 1 s
            assert asyncio.get_running_loop().time() < deadline, "events never expired"
            await asyncio.sleep(0.1)
        assert bus.stats()["history"]["retained"] == 0
    finally:
        await bus.aclose()


async def test_a_stream_made_by_another_service_is_used_as_it_is(
    own_nats_server: NatsServer,
) -> None:
    other = await nats.connect(own_nats_server.url)
    try:
        jsm = other.jsm()
        theirs = StreamConfig(name="MESH_EVENTS", subjects=["events.>"], max_msgs=3, max_age=3600.0)
        await jsm.add_stream(theirs)
        bus = await connect(own_nats_server.url, persist=PersistConfig(max_msgs=50))
        try:
            for i in range(5):
                bus.emit(numbered(i))
            assert numbers(await bus.ahistory("events.>", 50)) == [2, 3, 4]  # their limits
        finally:
            await bus.aclose()
        info = await jsm.stream_info("MESH_EVENTS")
        assert (info.config.max_msgs, info.config.max_age) == (3, 3600.0)  # untouched

        # A stream of that name on other subjects: the error names the difference.
        await jsm.add_stream(StreamConfig(name="OTHER", subjects=["orders.>"]))
        with pytest.raises(PersistError, match=r"'OTHER'.*subjects \['orders.>'\]"):
            await connect(own_nats_server.url, persist=PersistConfig(stream_name="OTHER"))
        assert (await jsm.stream_info("OTHER")).config.subjects == ["orders.>"]

        # Asked to, the bus makes it its configuration.
        bus = await connect(own_nats_server.url, persist=PersistConfig(max_msgs=50, update=True))
        await bus.aclose()
        assert (await jsm.stream_info("MESH_EVENTS")).config.max_msgs == 50
    finally:
        await other.close()


def test_sync_history_works_from_threads_but_not_in_a_received_handler(
    own_nats_server: NatsServer,
) -> None:
    bus = connect_sync(own_nats_server.url, node="t", persist=PersistConfig())
    sender = connect_sync(own_nats_server.url, node="u")
    try:
        errors: list[BaseException] = []
        done = threading.Event()

        def handler(event: Event) -> None:  # runs on the NATS I/O thread
            try:
                bus.history("events.>")
            except RuntimeError as exc:
                errors.append(exc)
            done.set()

        bus.subscribe("events.>", handler)
        bus.flush_sync()
        sender.emit(numbered(1))
        assert done.wait(PATIENCE)
        assert "I/O thread" in str(errors[0])
        bus.emit(numbered(2))
        assert numbers(bus.history("events.>")) == [1, 2]
    finally:
        bus.close()
        sender.close()


# -- bad input and faults --------------------------------------------------------------


async def test_an_unreachable_server_fails_with_a_typed_error_in_bounded_time() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(NatsConnectError, match="cannot connect to NATS") as caught:
        await asyncio.wait_for(connect(url, connect_timeout=1.0), PATIENCE)
    assert isinstance(caught.value, ConnectionError)
    assert url in str(caught.value)
    assert not [
        t for t in threading.enumerate() if t.name.startswith("turnout-nats") and t.is_alive()
    ]


def test_persist_config_defaults_and_bad_values() -> None:
    default = PersistConfig()
    assert default == PersistConfig.default()
    assert (default.stream_name, default.max_age, default.max_msgs) == (
        "MESH_EVENTS",
        timedelta(hours=24),
        10_000,
    )
    assert PersistConfig(max_age=90).max_age == timedelta(seconds=90)
    assert PersistConfig(max_age=None, max_msgs=0).stream_config().max_msgs == -1  # unlimited
    for bad in (
        {"stream_name": ""},
        {"stream_name": "a.b"},
        {"stream_name": "a b"},
        {"max_msgs": -1},
        {"max_age": timedelta(seconds=-1)},
        {"replicas": 0},
    ):
        with pytest.raises(ValueError):
            PersistConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        PersistConfig(max_age="24h")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="update"):
        PersistConfig(update="yes")  # type: ignore[arg-type]


async def test_bad_connect_arguments_are_typed_errors() -> None:
    with pytest.raises(TypeError, match="PersistConfig"):
        await connect("nats://127.0.0.1:1", persist={"stream_name": "X"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        await connect([])
    with pytest.raises(ValueError, match="max_outbound"):
        await connect("nats://127.0.0.1:1", max_outbound=0)
    with pytest.raises(TypeError, match="reconnected_cb"):
        await connect("nats://127.0.0.1:1", reconnected_cb=42)


async def test_persist_without_jetstream_is_a_typed_error(tmp_path: Path) -> None:
    server = NatsServer(tmp_path, jetstream=False).start()
    try:
        with pytest.raises(PersistError, match="MESH_EVENTS"):
            await asyncio.wait_for(connect(server.url, persist=PersistConfig()), PATIENCE)
    finally:
        server.kill()


async def test_a_restarted_server_loses_no_acknowledged_event(own_nats_server: NatsServer) -> None:
    options: dict[str, Any] = {"reconnect_time_wait": 0.1, "ack_wait": 3.0}
    bus = await connect(own_nats_server.url, node="p", persist=PersistConfig(), **options)
    listener = await connect(own_nats_server.url, node="l", **options)
    try:
        heard: list[Event] = []
        listener.subscribe("events.>", heard.append)
        await listener.flush()
        for i in range(50):
            bus.emit(numbered(i))
        await bus.flush()
        assert bus.stats()["transport"]["acked"] == 50
        own_nats_server.kill()
        for i in range(50, 100):  # held while the server is down, written after
            bus.emit(numbered(i))
        own_nats_server.start()
        await bus.flush(timeout=PATIENCE)
        transport = bus.stats()["transport"]
        assert transport["reconnects"] >= 1
        assert transport["acked"] == 100
        assert numbers(await bus.ahistory("events.>", 1000)) == list(range(100))
        await eventually(lambda: listener.stats()["transport"]["connected"], "listener back")
        await listener.flush()
        for i in range(100, 110):
            bus.emit(numbered(i))
        await eventually(lambda: numbers(heard)[-1:] == [109], "subscriptions resumed")
        assert numbers(heard)[:50] == list(range(50))
    finally:
        await bus.aclose()
        await listener.aclose()


async def test_nats_py_callbacks_run_after_turnouts_own(own_nats_server: NatsServer) -> None:
    seen: list[tuple[str, int]] = []
    bus: NatsBus | None = None

    def transport(name: str) -> int:
        assert bus is not None
        return int(bus.stats()["transport"][name])

    async def disconnected_cb() -> None:
        seen.append(("disconnected", transport("disconnects")))

    async def reconnected_cb() -> None:
        seen.append(("reconnected", transport("reconnects")))

    def error_cb(exc: Exception) -> None:  # a plain function is called too
        seen.append(("error", transport("errors")))

    async def closed_cb() -> None:
        seen.append(("closed", 0))

    # ack_wait is longer than the test waits: only the resend on reconnect (turnout's own
    # reconnected_cb) can get the publishes lost with the connection acknowledged.
    bus = await connect(
        own_nats_server.url,
        node="p",
        persist=PersistConfig(),
        reconnect_time_wait=0.1,
        ack_wait=600.0,
        disconnected_cb=disconnected_cb,
        reconnected_cb=reconnected_cb,
        error_cb=error_cb,
        closed_cb=closed_cb,
    )
    try:
        for i in range(50):
            bus.emit(numbered(i))
        await bus.flush()
        process = own_nats_server._process
        assert process is not None
        os.kill(process.pid, signal.SIGSTOP)  # written, never read: no acks
        stat = Path(f"/proc/{process.pid}/stat")
        await eventually(lambda: stat.read_text().split()[2] == "T", "the server stopped")
        for i in range(50, 100):
            bus.emit(numbered(i))
        await eventually(
            lambda: transport("published") == 100 and transport("awaiting_ack") >= 1,
            "the second fifty written, some awaiting their acks",
        )
        own_nats_server.kill()  # they die with the connection
        own_nats_server.start()
        # A loaded machine takes a while to recover the stream: the flush below waits
        # for the acks, not for the server's start.
        await wait_jetstream([own_nats_server.url])
        await eventually(lambda: transport("reconnects") >= 1, "the bus reconnected")
        await bus.flush(timeout=PATIENCE)
        assert transport("acked") == 100
        assert numbers(await bus.ahistory("events.>", 1000)) == list(range(100))
    finally:
        await bus.aclose()
    kinds = {kind for kind, _ in seen}
    assert {"disconnected", "reconnected", "error", "closed"} <= kinds
    # Each of the user's callbacks saw turnout's own count already made.
    assert all(count >= 1 for kind, count in seen if kind != "closed")


async def test_history_without_a_server_fails_with_a_typed_error(
    own_nats_server: NatsServer,
) -> None:
    bus = await connect(own_nats_server.url, persist=PersistConfig(), reconnect_time_wait=0.1)
    try:
        bus.emit(numbered(0))
        assert (await asyncio.to_thread(bus.stats))["history"]["retained"] == 1
        own_nats_server.kill()
        await eventually(lambda: not bus.stats()["transport"]["connected"], "disconnected")
        bus.history_store._query_timeout = 0.5  # type: ignore[attr-defined]
        with pytest.raises(PersistError, match="not answered within"):
            await asyncio.wait_for(bus.ahistory("events.>"), PATIENCE)
        with pytest.raises(PersistError):
            await asyncio.to_thread(bus.history, "events.>")
        stats = bus.stats()  # answers from the last known figures
        assert stats["history"]["retained"] == 1 and not stats["transport"]["connected"]
    finally:
        await bus.aclose()


async def test_a_full_outbound_queue_refuses_after_max_block_and_counts_it(
    own_nats_server: NatsServer,
) -> None:
    bus = await connect(
        own_nats_server.url, max_outbound=10, max_block=0.05, reconnect_time_wait=0.1
    )
    try:
        own_nats_server.kill()
        await eventually(lambda: not bus.stats()["transport"]["connected"], "disconnected")
        await asyncio.to_thread(lambda: [bus.emit(numbered(i)) for i in range(30)])
        stats = bus.stats()
        assert stats["published"] == 30  # every emit returned and reached local handlers
        assert stats["transport"]["refused"] == 20  # ten queued, the rest refused
        assert stats["transport_errors"] == 20  # counted by the bus too, and logged
        own_nats_server.start()
        await bus.flush(timeout=PATIENCE)  # the queued ten go out after the reconnect
        assert bus.stats()["transport"]["published"] == 10
    finally:
        await bus.aclose()


async def test_a_cluster_carries_events_and_survives_losing_a_server(
    nats_cluster: NatsCluster,
) -> None:
    cluster = nats_cluster
    first, second, third = cluster.urls
    options: dict[str, Any] = {"reconnect_time_wait": 0.1, "dont_randomize": True}
    persist = PersistConfig(replicas=3)
    publisher = await connect([first, third], node="pub", persist=persist, **options)
    listener = await connect([second, third], node="sub", **options)
    try:
        heard: list[Event] = []
        listener.subscribe("events.>", heard.append)
        await listener.flush()
        await interest_reached(second, first)
        assert publisher.stats()["transport"]["connected_url"] == first
        assert listener.stats()["transport"]["connected_url"] == second
        for i in range(100):
            publisher.emit(numbered(i))
        await publisher.flush()
        await eventually(lambda: len(heard) == 100, "published on one, heard on another")
        cluster.servers[0].kill()  # the publisher's server, mid-stream
        for i in range(100, 200):
            publisher.emit(numbered(i))
            await asyncio.sleep(0.002)
        await publisher.flush(timeout=PATIENCE)
        stats = publisher.stats()["transport"]
        assert stats["connected_url"] == third and stats["reconnects"] >= 1
        # Delivery goes on through the others (what was sent again may come later).
        await eventually(lambda: 199 in numbers(heard), "delivery continues")
        stored = numbers(await listener_history(listener, persist, second))
        # Every event acknowledged, each stored once (those sent again after the
        # loss may be stored after later ones).
        assert stats["acked"] == 200
        assert sorted(stored) == list(range(200)), await stream_state(second, persist)
    finally:
        await publisher.aclose()
        await listener.aclose()


async def interest_reached(subscribed_on: str, published_on: str) -> None:
    """Waits until the subscriptions made on one server of a cluster have reached another:
    a server tells its peers of new interest in order, but in its own time, and a message
    published where the interest has not arrived yet finds no subscriber."""
    receiver = await connect_plain(subscribed_on)
    sender = await connect_plain(published_on)
    try:
        probe = await receiver.subscribe("probe.interest")  # after the ones waited for
        await receiver.flush()
        deadline = asyncio.get_running_loop().time() + PATIENCE
        while True:
            await sender.publish("probe.interest", b"")
            await sender.flush()
            try:
                await probe.next_msg(timeout=0.05)  # not heard yet: asked again
                return
            except nats.errors.TimeoutError:
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"interest never reached {published_on}") from None
    finally:
        await receiver.close()
        await sender.close()


async def stream_state(url: str, persist: PersistConfig) -> str:
    """The stream as one server of the cluster sees it, for a failure's message."""
    client = await nats.connect(url)
    try:
        info = await client.jsm().stream_info(persist.stream_name)
        return f"stream {info.state!r}, cluster {info.cluster!r}"
    finally:
        await client.close()


async def listener_history(listener: NatsBus, persist: PersistConfig, url: str) -> list[Event]:
    """The history as read from another server of the cluster."""
    reader = await connect(url, node="reader", persist=persist)
    try:
        return await reader.ahistory("events.>", 1000)
    finally:
        await reader.aclose()
