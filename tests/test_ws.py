"""The WebSocket client and hub (``turnout.ws``): real servers and clients
on loopback, every wait bounded."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from plain_nats import connect_plain
from waiting import until
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

import turnout
from turnout.events import Event
from turnout.logs import ForwardingHandler, LogEntry
from turnout.phases import Phase, PhaseManager
from turnout.protocol import MessageType, RegisteredPayload, WSMessage
from turnout.testing.nats_server import NatsServer
from turnout.ws import (
    Coordinator,
    CoordinatorConfig,
    Hub,
    HubRefusedError,
    RequestOutcome,
    coordination_pattern,
    coordination_subject,
    subject_token,
)

WAIT = 10.0  # the longest any single step may take before the test fails


async def next_event(watcher: ClientConnection) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(await asyncio.wait_for(watcher.recv(), WAIT))
    return document


def config(url: str, **changes: Any) -> CoordinatorConfig:
    return CoordinatorConfig(url, "containerservice", **{"service_id": "svc-1", **changes})


def into_execution(phases: PhaseManager, workflow_id: str) -> None:
    phases.register_workflow(workflow_id)
    for phase in (Phase.PRE_FLIGHT, Phase.PLANNING, Phase.EXECUTION):
        phases.transition_to(workflow_id, phase, "test")


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    async with Hub(port=0) as running:
        yield running


def watch(hub: Hub, *patterns: str) -> Any:
    query = "&".join(f"subject={p}" for p in patterns)
    return connect(f"{hub.watch_url}?{query}")


# --- subjects ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("wf-1_a", "wf-1_a"),
        ("", "_"),
        ("_", "%5F"),
        ("a.b", "a%2Eb"),
        ("*", "%2A"),
        (">", "%3E"),
        ("a b\tc", "a%20b%09c"),
        ("100%", "100%25"),
        ("é", "%C3%A9"),
    ],
)
def test_ids_become_single_literal_tokens(text: str, token: str) -> None:
    assert subject_token(text) == token
    assert turnout.is_valid_literal(token)
    assert turnout.tokens(token) == [token]


def test_long_ids_are_cut_hashed_and_stay_distinct() -> None:
    long_a, long_b = "x" * 5000 + "a", "x" * 5000 + "b"
    tokens = {subject_token(long_a), subject_token(long_b), subject_token("." * 5000)}
    assert len(tokens) == 3
    assert all(len(t) <= 128 and turnout.is_valid_literal(t) for t in tokens)


def test_coordination_subjects_and_patterns_match_each_other() -> None:
    subject = coordination_subject("phase_changed", "svc.1", "wf 1")
    assert subject == "events.coordination.phase_changed.svc%2E1.wf%201"
    assert turnout.subject_matches(subject, coordination_pattern(kind="phase_changed"))
    assert turnout.subject_matches(subject, coordination_pattern(workflow_id="wf 1"))
    assert not turnout.subject_matches(subject, coordination_pattern(service_id="svc"))
    assert coordination_subject("register", "svc-1") == "events.coordination.register.svc-1._"


# --- client against a real hub ------------------------------------------------------


async def test_register_and_registered(hub: Hub) -> None:
    seen: list[Any] = []

    async def connected() -> None:  # async callbacks are awaited
        seen.append("connected")

    coordinator = Coordinator(config(hub.url, instance_id="i-1", capabilities=("run",)))
    coordinator.on_connected(connected)
    coordinator.on_registered(lambda service_id: seen.append(("registered", service_id)))
    async with coordinator:
        assert coordinator.is_connected and coordinator.is_registered
        assert seen == ["connected", ("registered", "svc-1")]
        record = hub.protocol.service("svc-1", "i-1")
        assert record is not None
        assert record.service_name == "containerservice"
        assert record.capabilities == ("run",)
        assert record.protocol_version == "1.0"
    await until(lambda: hub.protocol.service("svc-1", "i-1").connection is None, "disconnect")  # type: ignore[union-attr]


async def test_the_hub_assigns_a_service_id_when_none_is_given(hub: Hub) -> None:
    async with Coordinator(config(hub.url, service_id="")) as coordinator:
        assert coordinator.service_id.startswith("containerservice-")
        assert hub.protocol.service(coordinator.service_id) is not None


async def test_ping_and_status_are_answered_with_the_same_ids(hub: Hub) -> None:
    async with Coordinator(config(hub.url)) as coordinator:
        into_execution(coordinator.phases, "wf-1")
        coordinator.phases.set_progress("wf-1", 40.0, "step-2")
        pong = await hub.ping("svc-1", timeout=WAIT)
        assert pong.outcome is RequestOutcome.ANSWERED
        assert pong.response is not None
        assert pong.response.type is MessageType.PONG
        assert pong.response.id == pong.request.id

        await until(lambda: hub.protocol.workflow("wf-1") is not None, "wf-1 at the hub")
        status = await hub.status("wf-1", timeout=WAIT)
        assert status.outcome is RequestOutcome.ANSWERED
        assert status.response is not None
        assert status.response.id == status.request.id
        assert status.response.type is MessageType.STATUS_RESPONSE
        payload = status.response.payload or {}
        assert (payload["phase"], payload["progress"], payload["current_action"]) == (
            "execution",
            40,
            "step-2",
        )

        unknown = await hub.status("nope", timeout=WAIT, service=("svc-1", ""))
        assert unknown.response is not None
        assert (unknown.response.payload or {})["message"] == "workflow not found"


async def test_commands_drive_the_phases_and_come_back_as_phase_changes(hub: Hub) -> None:
    async with (
        watch(hub, coordination_pattern(kind="phase_changed", workflow_id="wf-1")) as watcher,
        Coordinator(config(hub.url)) as coordinator,
    ):
        phases = coordinator.phases
        into_execution(phases, "wf-1")
        for _ in range(3):  # pre-flight, planning, execution
            await next_event(watcher)
        handled: list[str] = []
        coordinator.on_message(MessageType.PAUSE, lambda m: handled.append(m.id))

        paused = await hub.pause("wf-1", "maintenance", timeout=WAIT)
        assert paused.outcome is RequestOutcome.ANSWERED
        assert phases.get_phase("wf-1") is Phase.PAUSING
        assert handled == [paused.request.id]
        change = (await next_event(watcher))["data"]["message"]["payload"]
        assert (change["from"], change["to"], change["reason"]) == (
            "execution",
            "pausing",
            "maintenance",
        )
        phases.complete_pause("wf-1", "cp-1")
        change = (await next_event(watcher))["data"]["message"]["payload"]
        assert (change["to"], change["checkpoint_id"]) == ("paused", "cp-1")
        await until(lambda: hub.protocol.workflow("wf-1").phase == "paused", "paused")  # type: ignore[union-attr]

        resumed = await hub.resume("wf-1", "cp-1", timeout=WAIT)
        assert resumed.outcome is RequestOutcome.ANSWERED
        assert phases.get_phase("wf-1") is Phase.RESUMING
        assert (await next_event(watcher))["data"]["message"]["payload"]["to"] == "resuming"
        phases.complete_resume("wf-1")
        assert (await next_event(watcher))["data"]["message"]["payload"]["to"] == "execution"

        cancelled = await hub.cancel("wf-1", "stop", force=True, timeout=WAIT)
        assert cancelled.outcome is RequestOutcome.ANSWERED
        assert phases.get_phase("wf-1") is Phase.CANCELLED
        tos = [(await next_event(watcher))["data"]["message"]["payload"]["to"] for _ in range(2)]
        assert tos == ["cancelling", "cancelled"]

        refused = await hub.pause("wf-1", timeout=WAIT)
        assert refused.outcome is RequestOutcome.REFUSED
        assert refused.response is not None
        assert (refused.response.payload or {})["error"] == (
            "workflow wf-1 cannot be paused from phase cancelled"
        )


async def test_a_request_nobody_answers_expires(hub: Hub) -> None:
    async with connect(hub.url) as raw:
        await raw.send(WSMessage.new(MessageType.REGISTER).to_json(), text=True)
        # service_name comes from the header when the payload has none: here neither does
        assert "service_name is required" in (await raw.recv())
    async with connect(hub.url, additional_headers={"X-Service-Name": "mute"}) as raw:
        register = WSMessage.new(MessageType.REGISTER)
        await raw.send(register.to_json(), text=True)
        answer = WSMessage.parse(await asyncio.wait_for(raw.recv(), WAIT))
        assert (answer.type, answer.id) == (MessageType.REGISTERED, register.id)
        service_id = (answer.payload or {})["service_id"]
        settled = await hub.ping(service_id, timeout=0.05)
        assert settled.outcome is RequestOutcome.EXPIRED
        assert settled.response is None
        assert hub.stats()["pending"] == 0


async def test_the_client_sends_the_go_handshake_headers_and_registers() -> None:
    seen: dict[str, Any] = {}

    async def fake_hub(connection: ServerConnection) -> None:
        assert connection.request is not None
        seen["headers"] = dict(connection.request.headers.raw_items())
        register = WSMessage.parse(await connection.recv())
        seen["register"] = register
        answer = WSMessage.with_payload(
            MessageType.REGISTERED,
            RegisteredPayload(service_id="svc-9", message="registered", protocol_version="1.0"),
            id=register.id,
        )
        await connection.send(answer.to_json(), text=True)
        await connection.wait_closed()

    async with serve(fake_hub, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}/v1/coordination"
        async with Coordinator(config(url, token="t0k", version="2.1")) as coordinator:
            assert coordinator.service_id == "svc-9"  # the hub's answer wins
    headers = seen["headers"]
    assert headers["X-Service-Name"] == "containerservice"
    assert headers["X-Service-ID"] == "svc-1"
    assert headers["Authorization"] == "Bearer t0k"
    register = seen["register"]
    assert register.type is MessageType.REGISTER
    payload = register.payload or {}
    assert (payload["service_name"], payload["service_id"], payload["version"]) == (
        "containerservice",
        "svc-1",
        "2.1",
    )


async def test_pending_requests_settle_as_disconnected_when_the_hub_stops() -> None:
    hub = Hub(port=0)
    await hub.start()
    async with connect(hub.url, additional_headers={"X-Service-Name": "mute"}) as raw:
        await raw.send(WSMessage.new(MessageType.REGISTER).to_json(), text=True)
        service_id = (WSMessage.parse(await raw.recv()).payload or {})["service_id"]
        waiting = asyncio.create_task(hub.ping(service_id, timeout=WAIT))
        await until(lambda: hub.stats()["pending"] == 1, "the ping to be sent")
        await hub.stop()
        settled = await asyncio.wait_for(waiting, WAIT)
    assert settled.outcome is RequestOutcome.DISCONNECTED


async def test_events_emitted_on_other_threads_reach_watchers(hub: Hub) -> None:
    async with watch(hub, "events.user.>") as watcher:
        await until(lambda: hub.stats()["watchers"] == 1, "the watcher")
        for n in range(3):
            await asyncio.to_thread(hub.bus.emit, Event("user.thread", data={"n": n}))
        assert [(await next_event(watcher))["data"]["n"] for _ in range(3)] == [0, 1, 2]


async def test_serve_forever_starts_the_hub_and_returns_once_it_stops() -> None:
    hub = Hub(port=0)
    serving = asyncio.create_task(hub.serve_forever())
    await until(lambda: hub.port != 0, "the hub to listen")
    async with Coordinator(config(hub.url)) as coordinator:
        assert coordinator.is_registered
    assert not serving.done()
    await hub.stop()
    await asyncio.wait_for(serving, WAIT)
    assert hub.bus.closed  # the hub made it, so the hub closed it


async def test_unknown_workflows_are_a_lookup_error(hub: Hub) -> None:
    with pytest.raises(LookupError, match="workflow not found: ghost"):
        await hub.pause("ghost")


# --- the hub's refusals ---------------------------------------------------------------


async def test_a_malformed_frame_gets_an_error_and_the_connection_stays(hub: Hub) -> None:
    async with connect(hub.url, additional_headers={"X-Service-Name": "raw"}) as raw:
        for bad in ("not json", '{"id": "m-1"}', "[1, 2]"):
            await raw.send(bad)
            reply = WSMessage.parse(await asyncio.wait_for(raw.recv(), WAIT))
            assert reply.type is MessageType.ERROR
            assert "malformed message" in (reply.payload or {})["error"]
        early = WSMessage.new(MessageType.PROGRESS)
        await raw.send(early.to_json(), text=True)
        reply = WSMessage.parse(await asyncio.wait_for(raw.recv(), WAIT))
        assert (reply.type, reply.id) == (MessageType.ERROR, early.id)
        assert "not registered" in (reply.payload or {})["error"]
        register = WSMessage.new(MessageType.REGISTER)
        await raw.send(register.to_json(), text=True)
        reply = WSMessage.parse(await asyncio.wait_for(raw.recv(), WAIT))
        assert reply.type is MessageType.REGISTERED
    assert hub.stats()["malformed"] == 3


async def test_wrong_or_missing_tokens_are_refused_with_401_and_a_reason() -> None:
    async with Hub(port=0, token="s3cret") as hub:
        with pytest.raises(HubRefusedError, match="HTTP 401: turnout hub: invalid token") as bad:
            await Coordinator(config(hub.url, token="wrong")).connect()
        assert bad.value.status == 401
        with pytest.raises(HubRefusedError, match="missing bearer token"):
            await Coordinator(config(hub.url)).connect()
        with pytest.raises(InvalidStatus) as watcher:
            await connect(f"{hub.watch_url}?subject=>")
        assert watcher.value.response.status_code == 401
        async with Coordinator(config(hub.url, token="s3cret")) as coordinator:
            assert coordinator.is_registered


async def test_an_oversize_frame_closes_with_1009_and_a_reason() -> None:
    async with Hub(port=0, max_message_size=1000) as hub:
        # The hub announces a service's disconnection after it has forgotten the connection:
        # the client may see the close before the hub has processed it.
        loop = asyncio.get_running_loop()
        forgotten = asyncio.Event()
        hub.bus.subscribe(
            coordination_pattern("disconnected"),
            lambda event: loop.call_soon_threadsafe(forgotten.set),
        )
        async with connect(hub.url, additional_headers={"X-Service-Name": "big"}) as raw:
            register = WSMessage.new(MessageType.REGISTER)
            await raw.send(register.to_json(), text=True)
            answer = WSMessage.parse(await asyncio.wait_for(raw.recv(), WAIT))
            assert answer.type is MessageType.REGISTERED
            await raw.send("x" * 1001)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(raw.recv(), WAIT)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
        assert "1000" in closed.value.rcvd.reason
        await asyncio.wait_for(forgotten.wait(), WAIT)
        assert hub.stats()["connections"] == 0


async def test_unknown_paths_and_bad_watch_patterns_are_refused(hub: Hub) -> None:
    base = hub.url.removesuffix("/v1/coordination")
    refusals = {
        f"{base}/elsewhere": (404, "unknown path"),
        hub.watch_url: (400, "at least one subject"),
        f"{hub.watch_url}?subject=a..b": (400, "empty token"),
        f"{hub.watch_url}?subject=a.>.b": (400, "must be the last token"),
    }
    for url, (status, reason) in refusals.items():
        with pytest.raises(InvalidStatus) as refused:
            await connect(url)
        assert refused.value.response.status_code == status
        assert reason in refused.value.response.body.decode()


# --- watchers --------------------------------------------------------------------------


async def test_watchers_receive_exactly_the_events_their_patterns_match(hub: Hub) -> None:
    async with (
        watch(hub, "events.coordination.progress.>", "events.coordination.*.*.wf-2") as mixed,
        watch(hub, "events.user.>") as users,
        Coordinator(config(hub.url)) as coordinator,
    ):
        await until(lambda: hub.stats()["watchers"] == 2, "two watchers")
        coordinator.send_progress("wf-1", "a-1", 10.0, "build", "one")
        coordinator.send_checkpoint("wf-1", "cp-1", "not watched")
        coordinator.send_progress("wf-2", "a-2", 20.0)  # matches both patterns: sent once
        coordinator.send_checkpoint("wf-2", "cp-2", "watched")
        hub.bus.emit(Event("user.deploy", data={"n": 1}))
        coordinator.send_progress("wf-3", "a-3", 30.0)

        types = [(await next_event(mixed))["type"] for _ in range(4)]
        assert types == [
            "coordination.progress.svc-1.wf-1",
            "coordination.progress.svc-1.wf-2",
            "coordination.checkpoint.svc-1.wf-2",
            "coordination.progress.svc-1.wf-3",
        ]
        user = await next_event(users)
        assert (user["type"], user["node"], user["data"]) == ("user.deploy", "hub", {"n": 1})
        # Nothing else was due: a marker event proves the queues held no more.
        hub.bus.emit(Event("user.marker"))
        assert (await next_event(users))["type"] == "user.marker"
        coordinator.send_progress("wf-2", "a-2", 99.0)
        last = await next_event(mixed)
        assert last["data"]["message"]["payload"]["percent"] == 99
        assert last["data"]["service_name"] == "containerservice"


async def test_a_slow_watcher_is_dropped_from_not_waited_for() -> None:
    async with Hub(port=0, watcher_buffer=64 * 1024) as hub:
        big = {"blob": "x" * 60_000}
        # The watcher never reads, and its socket takes little: the kernel buffers fill,
        # then the hub's limit applies.
        stalled_socket = socket.socket()
        stalled_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        stalled_socket.connect(("127.0.0.1", hub.port))
        stalled = await connect(
            f"{hub.watch_url}?subject=events.user.>", sock=stalled_socket, max_queue=1
        )
        try:
            async with watch(hub, "events.user.>") as reader:
                await until(lambda: hub.stats()["watchers"] == 2, "two watchers")
                # The reading watcher gets every event, whatever the other one does.
                for n in range(400):
                    hub.bus.emit(Event("user.big", data={**big, "n": n}))
                    assert (await next_event(reader))["data"]["n"] == n
                stats = hub.stats()
                assert stats["watcher_dropped"] > 0
                assert stats["watcher_delivered"] + stats["watcher_dropped"] == 800
        finally:
            stalled.transport.abort()


async def test_watchers_with_compression_get_the_same_events() -> None:
    async with (
        Hub(port=0, compression="deflate") as hub,
        watch(hub, "events.user.>") as watcher,
    ):
        assert watcher.protocol.extensions  # permessage-deflate was negotiated
        await until(lambda: hub.stats()["watchers"] == 1, "the watcher")
        for n in range(3):
            hub.bus.emit(Event("user.n", data={"n": n}))
        assert [(await next_event(watcher))["data"]["n"] for _ in range(3)] == [0, 1, 2]


async def test_two_hundred_clients_at_once_are_all_served(hub: Hub) -> None:
    coordinators = [
        Coordinator(config(hub.url, service_id=f"svc-{n}", ping_interval=60.0)) for n in range(200)
    ]
    await asyncio.wait_for(asyncio.gather(*(c.connect() for c in coordinators)), 60)
    try:
        assert all(c.is_registered for c in coordinators)
        assert sum(1 for s in hub.protocol.services() if s.connection is not None) == 200
        pongs = await asyncio.wait_for(
            asyncio.gather(*(hub.ping(f"svc-{n}", timeout=WAIT) for n in range(200))), 60
        )
        assert all(p.outcome is RequestOutcome.ANSWERED for p in pongs)
    finally:
        await asyncio.wait_for(asyncio.gather(*(c.close() for c in coordinators)), 60)


# --- logs --------------------------------------------------------------------------------


async def test_logs_reach_the_hub_as_log_batches_through_a_forwarding_handler(hub: Hub) -> None:
    async with (
        watch(
            hub, coordination_pattern(kind="log_batch"), coordination_pattern(kind="log")
        ) as watcher,
        Coordinator(config(hub.url), log_buffer_size=50) as coordinator,
    ):
        await until(lambda: hub.stats()["watchers"] == 1, "the watcher")
        log = logging.getLogger("test_ws.forwarding")
        log.propagate = False
        handler = ForwardingHandler(coordinator)
        log.addHandler(handler)
        try:
            for n in range(120):
                log.warning("entry %d", n, extra={"workflow_id": "wf-9", "n": n})
        finally:
            log.removeHandler(handler)
        coordinator.flush_logs()
        coordinator.log_info("direct", {"k": "v"})

        entries: list[dict[str, Any]] = []
        while len(entries) < 120:
            event = await next_event(watcher)
            assert event["type"] == "coordination.log_batch.svc-1._"
            entries.extend(event["data"]["message"]["payload"]["logs"])
        assert [e["message"] for e in entries] == [f"entry {n}" for n in range(120)]
        assert {(e["level"], e["workflow_id"]) for e in entries} == {("warn", "wf-9")}
        assert entries[7]["fields"] == {"n": 7}
        single = await next_event(watcher)
        assert single["type"] == "coordination.log.svc-1._"
        payload = single["data"]["message"]["payload"]
        assert (payload["message"], payload["level"], payload["fields"]) == (
            "direct",
            "info",
            {"k": "v"},
        )
        assert coordinator.stats()["logs"]["sent"] == 120


async def test_log_batches_carry_stamped_entries(hub: Hub) -> None:
    async with (
        watch(hub, coordination_pattern(kind="log_batch")) as watcher,
        Coordinator(config(hub.url)) as coordinator,
    ):
        await until(lambda: hub.stats()["watchers"] == 1, "the watcher")
        coordinator.send_log_batch([LogEntry(message="a"), LogEntry(message="b", level="error")])
        logs = (await next_event(watcher))["data"]["message"]["payload"]["logs"]
        assert [(e["message"], e["level"]) for e in logs] == [("a", "info"), ("b", "error")]
        assert all(not e["timestamp"].startswith("0001") for e in logs)


# --- the hub process killed and restarted ---------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def start_hub_process(
    port: int, *options: str, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "turnout",
        "hub",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *options,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    assert b"listening on ws://127.0.0.1:" in line, line
    return process


async def test_the_client_redials_a_restarted_hub_and_delivers_what_waited() -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/v1/coordination"
    process = await start_hub_process(port)
    coordinator = Coordinator(
        config(
            url,
            reconnect_initial_delay=0.05,
            reconnect_backoff_factor=2.0,
            reconnect_max_delay=0.4,
        )
    )
    delays: list[float] = []
    disconnected = asyncio.Event()
    fourth_attempt = asyncio.Event()
    hub_back = asyncio.Event()

    async def reconnecting(attempt: int, delay: float) -> None:
        delays.append(delay)
        if attempt >= 4:
            fourth_attempt.set()
            await hub_back.wait()  # holds the client until the watcher is in place

    coordinator.on_disconnected(lambda error: disconnected.set())
    coordinator.on_reconnecting(reconnecting)
    try:
        done = coordination_pattern(kind="phase_changed", workflow_id="wf-done")
        async with connect(f"ws://127.0.0.1:{port}/v1/watch?subject={done}") as first:
            await coordinator.connect()
            phases = coordinator.phases
            into_execution(phases, "wf-live")
            into_execution(phases, "wf-done")
            phases.complete("wf-done")
            # What was sent before the kill has arrived (the last of it is this change).
            while (await next_event(first))["data"]["message"]["payload"]["to"] != "completed":
                pass

        process.kill()
        await asyncio.wait_for(process.wait(), WAIT)
        await asyncio.wait_for(disconnected.wait(), WAIT)
        assert not coordinator.is_connected
        for n in range(3):
            coordinator.send_progress("wf-live", "a", float(n))
        phases.pause("wf-live", "while down")

        await asyncio.wait_for(fourth_attempt.wait(), WAIT)
        process = await start_hub_process(port)
        async with connect(
            f"ws://127.0.0.1:{port}/v1/watch?subject=events.coordination.>"
        ) as watcher:
            hub_back.set()
            seen = [await next_event(watcher) for _ in range(6)]
        kinds = [(e["type"].split(".")[1], e["data"]["message"]) for e in seen]
        assert kinds[0][0] == "register"
        assert [m["payload"]["percent"] for k, m in kinds[1:4]] == [0, 1, 2]
        assert all(k == "progress" for k, _ in kinds[1:4])
        # the change made while down, then the current phase of each active workflow
        assert [(k, m["payload"]["workflow_id"], m["payload"]["to"]) for k, m in kinds[4:]] == [
            ("phase_changed", "wf-live", "pausing"),
            ("phase_changed", "wf-live", "pausing"),
        ]
        assert delays[:4] == [0.05, 0.1, 0.2, 0.4]
        stats = coordinator.stats()
        assert stats["reconnects"] == 1
        assert stats["dial_failures"] >= 3
        assert stats["connections"] == 2
        assert stats["dropped"] == 0
        assert coordinator.is_registered
    finally:
        await coordinator.close()
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), WAIT) == 0


async def test_the_client_gives_up_after_max_attempts_with_jittered_delays() -> None:
    hub = Hub(port=0)
    await hub.start()
    coordinator = Coordinator(
        config(
            hub.url,
            reconnect_initial_delay=0.01,
            reconnect_max_delay=0.04,
            reconnect_max_attempts=3,
        ),
        jitter=0.5,
    )
    delays: list[tuple[int, float]] = []
    coordinator.on_reconnecting(lambda attempt, delay: delays.append((attempt, delay)))
    await coordinator.connect()
    await hub.stop()  # closes with 1001 and listens no more
    await until(lambda: not coordinator.running, "the client to give up")
    assert [attempt for attempt, _ in delays] == [1, 2, 3]
    for (attempt, delay), base in zip(delays, (0.01, 0.02, 0.04), strict=True):
        assert base * 0.5 <= delay <= base * 1.5, (attempt, delay)
    assert coordinator.stats()["dial_failures"] == 3
    assert isinstance(coordinator.last_error, OSError)
    await coordinator.close()


async def test_the_send_queue_is_bounded_while_disconnected() -> None:
    port = free_port()
    coordinator = Coordinator(config(f"ws://127.0.0.1:{port}/v1/coordination"), queue_size=10)
    with pytest.raises(OSError):
        await coordinator.connect()
    for n in range(15):
        coordinator.send_progress("wf", "a", float(n))
    stats = coordinator.stats()
    assert (stats["queued"], stats["dropped"], stats["pending"]) == (15, 5, 10)
    async with Hub(port=port) as hub, watch(hub, coordination_pattern(kind="progress")) as w:
        await until(lambda: hub.stats()["watchers"] == 1, "the watcher")
        await coordinator.connect()
        percents = [
            (await next_event(w))["data"]["message"]["payload"]["percent"] for _ in range(10)
        ]
        assert percents == list(range(5, 15))  # drop_oldest kept the newest ten
        await coordinator.close()


async def test_turnout_hub_on_nats_republishes_onto_the_nats_server(
    nats_server: NatsServer,
) -> None:
    port = free_port()
    process = await start_hub_process(port, "--nats", nats_server.url, "--node", "hub-n")
    plain = await connect_plain(nats_server.url)
    try:
        subscription = await plain.subscribe("events.coordination.>")
        await plain.flush()
        url = f"ws://127.0.0.1:{port}/v1/coordination"
        async with Coordinator(config(url)) as coordinator:
            coordinator.send_progress("wf.7", "a-1", 70.0, "deploy")
            seen = []
            while len(seen) < 2:
                message = await subscription.next_msg(timeout=WAIT)
                seen.append((message.subject, Event.from_json(message.data)))
        (registered_subject, registered), (subject, progress) = seen
        assert registered_subject == "events.coordination.register.svc-1._"
        assert registered.node == "hub-n"
        assert subject == "events.coordination.progress.svc-1.wf%2E7"
        assert progress.type == subject.removeprefix("events.")
        assert progress.data is not None
        payload = progress.data["message"]["payload"]
        assert (payload["workflow_id"], payload["percent"], payload["stage"]) == (
            "wf.7",
            70,
            "deploy",
        )
    finally:
        await plain.close()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), WAIT) == 0


async def test_turnout_hub_takes_its_token_from_the_environment() -> None:
    port = free_port()
    process = await start_hub_process(port, env={"TURNOUT_HUB_TOKEN": "from-env"})
    url = f"ws://127.0.0.1:{port}/v1/coordination"
    try:
        with pytest.raises(HubRefusedError, match="missing bearer token"):
            await Coordinator(config(url)).connect()
        async with Coordinator(config(url, token="from-env")) as coordinator:
            assert coordinator.is_registered
    finally:
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), WAIT) == 0
