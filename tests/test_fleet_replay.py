"""The fleet's replay of coordination events across a hub's NATS reconnect: sans I/O,
the ring a hub replays from, the window that hands each event over once, and the
documents between them; then two real hubs in this process whose NATS server restarts."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from waiting import until

from turnout.bus import Message
from turnout.coordination.fleet_replay import (
    REPLAY_MAX_SECONDS,
    RESYNC_SUBJECT,
    EventRing,
    SeenWindow,
    parse_replay_reply,
    parse_replay_request,
    replay_reply,
    replay_request,
    replay_subject,
)
from turnout.events import Event
from turnout.testing.nats_server import NatsServer


def payload(n: int) -> bytes:
    return b'{"type":"coordination.progress.svc.wf","id":"%d"}' % n


def test_the_ring_gives_the_events_of_the_window_oldest_first() -> None:
    ring = EventRing()
    for n in range(10):
        ring.record(float(n), f"events.e{n}", payload(n))
    events, truncated = ring.since(now=9.5, seconds=3.0)
    assert [subject for subject, _ in events] == ["events.e7", "events.e8", "events.e9"]
    assert events[0][1] == payload(7)
    assert not truncated
    assert ring.since(now=100.0, seconds=1.0) == ([], False)


def test_the_ring_says_when_its_window_is_cut() -> None:
    ring = EventRing(limit=4)
    for n in range(10):
        ring.record(float(n), "events.e", payload(n))
    # Events 0..5 were pushed out, and they were in the window.
    events, truncated = ring.since(now=9.0, seconds=20.0)
    assert [data for _, data in events] == [payload(n) for n in range(6, 10)]
    assert truncated
    # A window the ring covers whole is not cut.
    assert ring.since(now=9.0, seconds=2.0)[1] is False
    # Longer than REPLAY_MAX_SECONDS: cut to it.
    long = EventRing()
    long.record(0.0, "events.old", payload(0))
    long.record(REPLAY_MAX_SECONDS + 5, "events.new", payload(1))
    events, truncated = long.since(now=REPLAY_MAX_SECONDS + 6, seconds=REPLAY_MAX_SECONDS + 10)
    assert [subject for subject, _ in events] == ["events.new"] and truncated
    # Beyond max_bytes: the newest that fit.
    events, truncated = ring.since(now=9.0, seconds=3.0, max_bytes=2 * (8 + len(payload(9))))
    assert [data for _, data in events] == [payload(8), payload(9)] and truncated


def test_the_window_admits_each_payload_once_whichever_copy_comes_first() -> None:
    seen = SeenWindow()
    live = Message("events.coordination.x", payload(1))
    assert seen.admit(live.data, live)
    assert seen.admit(live.data, live)  # the same copy again: a second matching pattern
    replayed = Message("events.coordination.x", bytes(payload(1)))
    assert not seen.admit(replayed.data, replayed)
    # The other way round: the replay first, the late live copy refused.
    first = Message("events.coordination.x", payload(2))
    assert seen.admit(first.data, first)
    assert not seen.admit(payload(2), Message("events.coordination.x", payload(2)))


def test_the_window_is_bounded_and_forgets_the_oldest() -> None:
    seen = SeenWindow(limit=3)
    copies = [object() for _ in range(4)]
    for n in range(4):
        assert seen.admit(payload(n), copies[n])
    assert len(seen) == 3
    assert seen.admit(payload(0), object())  # forgotten: handed over again
    assert not seen.admit(payload(3), object())
    with pytest.raises(ValueError):
        SeenWindow(limit=0)
    with pytest.raises(ValueError):
        EventRing(limit=0)


def test_a_reconnect_replayed_twice_hands_each_missed_event_over_once() -> None:
    """Hub Y publishes 0..9; hub X's watchers got 0..2 and 7..9 live (3..6 were sent
    while X's bus reconnected). X asks for the window twice (a retry), and a late live
    copy of 8 comes after: the watchers end with 0..9, each once."""
    y = EventRing()
    for n in range(10):
        y.record(float(n), "events.coordination.progress.svc.wf", payload(n))
    seen = SeenWindow()
    handed: list[bytes] = []

    def offer(message: Message) -> None:
        if seen.admit(message.data, message):
            handed.append(message.data)

    for n in (0, 1, 2, 7, 8, 9):
        offer(Message("events.coordination.progress.svc.wf", payload(n)))
    for _ in range(2):
        events, truncated = parse_replay_reply(replay_reply(*y.since(now=9.5, seconds=8.0)))
        assert not truncated
        for subject, data in events:
            offer(Message(subject, data))
    offer(Message("events.coordination.progress.svc.wf", payload(8)))
    assert sorted(handed) == sorted(payload(n) for n in range(10))
    assert len(handed) == 10


def test_the_documents_round_trip_and_refuse_what_they_are_not() -> None:
    assert parse_replay_request(replay_request("hub-a", 2.5)) == ("hub-a", 2.5)
    for bad in (
        b"nope",
        b"[]",
        b'{"hub": "", "seconds": 1}',
        b'{"hub": "a", "seconds": -1}',
        b'{"hub": "a", "seconds": true}',
        b'{"hub": "a"}',
    ):
        with pytest.raises(ValueError):
            parse_replay_request(bad)
    events = [("events.coordination.a", payload(1)), ("events.coordination.b", "é".encode())]
    assert parse_replay_reply(replay_reply(events, True)) == (events, True)
    for bad in (b"{}", b'{"events": [["only-subject"]]}', b'{"events": [[1, "x"]]}', b"x"):
        with pytest.raises(ValueError):
            parse_replay_reply(bad)


# -- real hubs --------------------------------------------------------------------------

WAIT = 30.0


def event_key(event: dict[str, Any]) -> tuple[str, str, str]:
    data = event["data"]
    return (event["type"], data["service_id"], (data.get("message") or {}).get("id", ""))


async def test_a_hub_whose_nats_server_restarts_gets_what_it_missed_once(
    own_nats_server: NatsServer,
) -> None:
    """Hub B holds an event that never reached NATS (as one written to a dying
    server's connection); the server restarts, both hubs' buses reconnect and replay
    each other's stretch (fetched, and pushed on the other's resync: overlapping on
    purpose, while more events come live). A's watcher then has B's lost event once,
    and nothing else twice."""
    pytest.importorskip("nats")
    import turnout.nats
    from turnout.ws import Coordinator, CoordinatorConfig, Hub
    from turnout.ws.operator import HubClient

    tag = secrets.token_hex(4)
    url = own_nats_server.url
    buses = [await turnout.nats.connect(url, node=f"{n}-{tag}") for n in "ab"]
    hubs = [
        Hub(port=0, bus=bus, hub_id=f"{n}-{tag}", fleet=url, heartbeat_interval=0.2)
        for n, bus in zip("ab", buses, strict=True)
    ]
    seen: list[list[dict[str, Any]]] = [[], []]
    watchers: list[asyncio.Task[None]] = []
    coordinators: list[Coordinator] = []
    try:
        for hub in hubs:
            await hub.start()

        async def watch(index: int) -> None:
            async for event in HubClient(hubs[index].base_url).watch(["events.coordination.>"]):
                if event["data"]["service_id"].startswith(f"svc-{tag}-"):
                    seen[index].append(event)

        watchers = [asyncio.create_task(watch(i)) for i in range(2)]
        await until(lambda: all(len(h.watchers) == 1 for h in hubs), "both watchers", WAIT)
        for bus in buses:
            await bus.flush()
        coordinators = [
            Coordinator(CoordinatorConfig(hub.url, "svc", service_id=f"svc-{tag}-{i}"))
            for i, hub in enumerate(hubs)
        ]
        for coordinator in coordinators:
            await coordinator.connect()
            for n in range(10):
                coordinator.send_progress("wf", "before", float(n))
        before = 2 * (1 + 10)  # a register and 10 progress messages each
        await until(lambda: all(len(s) >= before for s in seen), "every event at both", WAIT)

        b = hubs[1]
        assert b.fleet is not None and b.fleet.replays
        lost = Event(
            "coordination.progress.lost.wf",
            data={"service_id": f"svc-{tag}-lost", "message": {"id": "lost-1"}},
        )
        payload = lost._stamped(buses[1].node).to_json()
        b.fleet.record("events.coordination.progress.lost.wf", payload)

        own_nats_server.restart()
        lost_key = ("coordination.progress.lost.wf", f"svc-{tag}-lost", "lost-1")
        await until(
            lambda: lost_key in {event_key(e) for e in seen[0]}, "B's lost event at A", WAIT
        )
        for coordinator in coordinators:
            for n in range(10):
                coordinator.send_progress("wf", "after", float(n))
        after = before + 2 * 10
        await until(lambda: len(seen[0]) >= after + 1 and len(seen[1]) >= after, "after", WAIT)

        keys = [[event_key(e) for e in events] for events in seen]
        for each in keys:
            assert len(each) == len(set(each)), "an event doubled"
        assert set(keys[0]) == set(keys[1]) | {lost_key}
        # The lost event came by a replay (others may have, had A's bus missed them
        # live); the copies A's watcher had already were dropped (no doubles above).
        stats = hubs[0].stats()
        assert stats["fleet_replay_events_delivered"] == stats["watcher_replayed"] >= 1
        await until(lambda: hubs[0].stats()["fleet_replays"] >= 1, "A saw its bus back", WAIT)
    finally:
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        for coordinator in coordinators:
            await coordinator.close()
        for hub in hubs:
            await hub.stop()
        for bus in buses:
            await bus.aclose()


class SmallPayloadServer(NatsServer):
    """A nats-server that refuses messages over 4 KiB: a replay answer bigger than
    that cannot be sent."""

    def _command(self) -> list[str]:
        config = self.store / "small.conf"
        config.write_text("max_payload: 4096\n")
        return [*super()._command(), "-c", str(config)]


async def test_an_answer_that_cannot_be_sent_is_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A hub answers replay requests and resyncs from its ring; once the ring holds more
    than the server's max_payload, the answer is refused by the client (nats-py's
    MaxPayloadError) and counted, not lost silently; so is a routed command's reply."""
    pytest.importorskip("nats")
    import nats

    from turnout.coordination.fleet import FleetCommand, FleetProtocol, FleetReply
    from turnout.ws.fleet import FleetLink

    async def run(command: FleetCommand, answer: Callable[[FleetReply], None]) -> None:
        raise AssertionError("no command is routed here")

    tag = secrets.token_hex(4)
    server = SmallPayloadServer(tmp_path, jetstream=False).start()
    link = FleetLink(
        FleetProtocol(f"a-{tag}"),
        [server.url],
        lambda: ([], []),
        run,
        bus_state=lambda: (True, 0),
        deliver=lambda subject, data: True,
    )
    client: Any = None
    try:
        await link.start()
        client = await nats.connect(server.url)
        asking = replay_request(f"b-{tag}", 10.0)

        async def ask_until(subject: str, done: Callable[[], bool], what: str) -> None:
            # Published again until done: the link's subscription may reach the
            # server after its start() returned.
            for _ in range(600):
                await client.publish(subject, asking, reply=client.new_inbox())
                await client.flush()
                if done():
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"timed out waiting for {what}")

        def warned(text: str) -> Callable[[], bool]:
            return lambda: any(text in r.getMessage() for r in caplog.records)

        # An empty ring: answered.
        await ask_until(
            replay_subject(link.protocol.hub_id),
            lambda: link.counts["replays_served"] > 0,
            "an answer",
        )
        assert link.counts["replay_reply_errors"] == 0
        served = link.counts["replays_served"]
        for _ in range(8):
            link.record("events.coordination.progress.svc.wf", b"x" * 1024)
        with caplog.at_level(logging.WARNING, logger="turnout.ws.hub"):
            await ask_until(
                replay_subject(link.protocol.hub_id),
                warned("cannot answer the replay request"),
                "a failed answer",
            )
            await ask_until(RESYNC_SUBJECT, warned("cannot answer the resync"), "a failed resync")
        assert link.counts["replay_reply_errors"] >= 2
        assert link.counts["replays_served"] == served  # none of these was answered
        # A routed command's reply over the limit: counted as well.
        link._answer(client.new_inbox(), FleetReply("answered", {"status": "x" * 8192}))
        assert link.counts["command_reply_errors"] == 1
    finally:
        if client is not None:
            await client.close()
        await link.stop()
        server.stop()
