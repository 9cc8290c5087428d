"""A fleet of hubs on NATS: the sans-I/O fleet protocol driven directly, then real hubs
in this process on the session's nats-server (state seen from every hub, commands
routed, permissions checked at the operator's hub, services failing over, watchers
fed by NATS). Every wait is bounded and waits for a state, never a time."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from waiting import until

from turnout.coordination import Credentials
from turnout.coordination.fleet import (
    FleetCommand,
    FleetProtocol,
    FleetReply,
    command_subject,
    state_subject,
    validate_hub_id,
)
from turnout.phases import Phase
from turnout.testing.nats_server import NatsServer
from turnout.ws import Coordinator, CoordinatorConfig, Hub, RequestOutcome

pytest.importorskip("nats")

WAIT = 15.0


def service(service_id: str, connected: bool = True, at: str = "2026-01-01T00:00:00Z") -> dict:
    return {
        "service_id": service_id,
        "instance_id": "",
        "service_name": "svc",
        "connected": connected,
        "registered_at": at,
    }


def workflow(workflow_id: str, service_id: str, phase: str = "execution") -> dict:
    return {
        "workflow_id": workflow_id,
        "service_id": service_id,
        "instance_id": "",
        "phase": phase,
        "updated_at": "2026-01-01T00:00:01Z",
    }


# -- the protocol, sans I/O ---------------------------------------------------------------


def test_a_snapshot_is_seen_by_another_hub_with_its_hub_named() -> None:
    a, b = FleetProtocol("a"), FleetProtocol("b")
    for frame in b.snapshot([service("s1")], [workflow("w1", "s1")]):
        assert a.receive_snapshot(frame, now=0.0) == "b"
    assert a.services([]) == [{**service("s1"), "hub": "b"}]
    assert a.locate("w1", None, lambda *_: None) == {**workflow("w1", "s1"), "hub": "b"}
    assert a.locate("w2", None, lambda *_: None) is None
    own = a.services([service("s0")])
    assert {(s["service_id"], s["hub"]) for s in own} == {("s0", "a"), ("s1", "b")}
    assert a.stats()["peers"] == 1


def test_a_hub_ignores_its_own_snapshots_and_older_ones() -> None:
    a, b = FleetProtocol("a"), FleetProtocol("b")
    for frame in a.snapshot([service("mine")], []):
        assert a.receive_snapshot(frame, 0.0) is None
    old = b.snapshot([service("s1")], [])
    new = b.snapshot([], [])
    for frame in new + old:  # the older arrives late
        a.receive_snapshot(frame, 0.0)
    assert a.services([]) == []
    assert a.stats()["snapshot_frames_stale"] == 1


def test_a_large_snapshot_is_cut_into_frames_and_applied_whole() -> None:
    a, b = FleetProtocol("a"), FleetProtocol("b", max_frame=4096)
    workflows = [workflow(f"wf-{i:04d}", "s1") for i in range(400)]
    frames = b.snapshot([service("s1")], workflows)
    assert len(frames) > 5 and all(len(f) <= 4096 for f in frames)
    for frame in frames[:-1]:
        assert a.receive_snapshot(frame, 0.0) is None  # not applied until whole
    assert a.workflows([], []) == []
    assert a.receive_snapshot(frames[-1], 0.0) == "b"
    assert len(a.workflows([], [])) == 400


def test_a_silent_hub_expires_and_a_leaving_one_goes_at_once() -> None:
    a = FleetProtocol("a", heartbeat_interval=1.0, expire_after=3.0)
    b, c = FleetProtocol("b"), FleetProtocol("c")
    for frame in b.snapshot([service("sb")], []) + c.snapshot([service("sc")], []):
        a.receive_snapshot(frame, now=10.0)
    assert a.expire(now=12.9) == []
    for frame in c.snapshot([service("sc")], []):
        a.receive_snapshot(frame, now=12.0)
    assert a.expire(now=13.5) == ["b"]
    for frame in c.snapshot([], [], leaving=True):
        assert a.receive_snapshot(frame, now=13.6) == "c"
    assert a.services([]) == [] and a.stats()["peers_left"] == 1


def test_a_moved_service_is_listed_once_where_it_is_connected() -> None:
    a, b, c = FleetProtocol("a"), FleetProtocol("b"), FleetProtocol("c")
    # b died holding s1 (its snapshot has not expired); s1 registered again at c.
    for frame in b.snapshot([service("s1", at="2026-01-01T00:00:00Z")], [workflow("w", "s1")]):
        a.receive_snapshot(frame, 0.0)
    later = service("s1", at="2026-01-01T00:00:05Z")
    for frame in c.snapshot([later], [workflow("w", "s1", "paused")]):
        a.receive_snapshot(frame, 0.0)
    # and a remembers s1 as disconnected from before it went to b
    (entry,) = a.services([service("s1", connected=False)])
    assert entry["hub"] == "c" and entry["registered_at"] == later["registered_at"]
    (held,) = a.workflows([], [])
    assert (held["hub"], held["phase"]) == ("c", "paused")
    assert a.locate("w", None, lambda *_: None) == held


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"not json",
        b"[]",
        b'{"hub": "b"}',
        b'{"hub": "b b", "epoch": "e", "sequence": 1, "part": 0, "parts": 1}',
        b'{"hub": "b", "epoch": "e", "sequence": 1, "part": 0, "parts": 1}\nx{}',
        b'{"hub": "b", "epoch": "e", "sequence": 1, "part": 0, "parts": 1}\ns{"no": "id"}',
        b'{"hub": "b", "epoch": "e", "sequence": 1, "part": 0, "parts": 1}\nw{"workflow_id": "w"}',
        b'{"hub": "b", "epoch": "e", "sequence": 1, "part": 3, "parts": 1}',
        b'{"hub": "b", "epoch": "e", "sequence": 1, "part": 0, "parts": 0}',
    ],
)
def test_malformed_snapshot_frames_are_counted_and_change_nothing(frame: bytes) -> None:
    a = FleetProtocol("a")
    assert a.receive_snapshot(frame, 0.0) is None
    assert a.services([]) == [] and a.stats()["peers"] == 0
    assert a.stats()["snapshot_frames_malformed"] == 1


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "tab\there", "nl\n"])
def test_bad_hub_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="hub id"):
        validate_hub_id(bad)
    with pytest.raises(ValueError, match="hub id"):
        Hub(port=0, hub_id=bad)


def test_hub_ids_become_safe_subject_tokens() -> None:
    assert state_subject("a.b>") == "turnout.fleet.state.a%2Eb%3E"
    assert command_subject("hub-1") == "turnout.fleet.command.hub-1"


@pytest.mark.parametrize(
    ("document", "error"),
    [
        ({"command": "reboot", "workflow_id": "w"}, "command must be"),
        ({"command": "pause"}, "workflow_id"),
        ({"command": "pause", "workflow_id": "w", "timeout": 0}, "timeout"),
        ({"command": "pause", "workflow_id": "w", "timeout": True}, "timeout"),
        ({"command": "cancel", "workflow_id": "w", "force": "yes"}, "force"),
        ({"command": "pause", "workflow_id": "w", "reason": 3}, "reason"),
    ],
)
def test_routed_commands_are_checked(document: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        FleetCommand.parse(orjson.dumps(document))


def test_commands_and_replies_round_trip() -> None:
    command = FleetCommand("cancel", "w", reason="r", force=True, timeout=2.5, origin="a")
    assert FleetCommand.parse(command.to_json()) == command
    reply = FleetReply("answered", {"id": "x", "type": "phase_changed"}, hub="b")
    assert FleetReply.parse(reply.to_json()) == reply
    with pytest.raises(ValueError, match="outcome"):
        FleetReply.parse(b'{"outcome": "maybe"}')


# -- real hubs on NATS ----------------------------------------------------------------------


def event_key(event: dict[str, Any]) -> tuple[str, str, str]:
    """What tells two coordination events apart: the message id (a disconnection has
    none: its service does)."""
    data = event["data"]
    return (event["type"], data["service_id"], (data.get("message") or {}).get("id", ""))


def fleet_id() -> str:
    return secrets.token_hex(4)


@pytest.fixture
async def fleet(nats_server: NatsServer) -> AsyncIterator[list[Hub]]:
    """Two hubs in one fleet (ids unique to the test), stopped after it."""
    tag = fleet_id()
    hubs = [
        Hub(
            port=0,
            hub_id=f"{name}-{tag}",
            fleet=nats_server.url,
            heartbeat_interval=0.2,
            expire_after=1.0,
        )
        for name in ("a", "b")
    ]
    for hub in hubs:
        await hub.start()
    try:
        yield hubs
    finally:
        for hub in hubs:
            await hub.stop()


def on(hub: Hub, entries: list[dict[str, Any]], key: str, value: str) -> dict[str, Any] | None:
    for entry in entries:
        if entry.get(key) == value:
            return entry
    return None


async def test_every_hub_sees_every_hubs_services_and_workflows(fleet: list[Hub]) -> None:
    a, b = fleet
    config = CoordinatorConfig(b.url, "svc", service_id=f"svc-{fleet_id()}")
    async with Coordinator(config) as coordinator:
        coordinator.phases.register_workflow("wf-1")
        coordinator.phases.transition_to("wf-1", Phase.PRE_FLIGHT)

        def seen_on_a() -> bool:
            entry = on(a, a.fleet_workflows(), "workflow_id", "wf-1")
            return entry is not None and entry["phase"] == "pre-flight"

        await until(seen_on_a, "b's workflow on a")
        (entry,) = [s for s in a.fleet_services() if s["service_id"] == config.service_id]
        assert entry["hub"] == b.hub_id and entry["connected"]
        assert a.fleet_workflow("wf-1")["hub"] == b.hub_id  # type: ignore[index]
        # and b names itself
        (own,) = [s for s in b.fleet_services() if s["service_id"] == config.service_id]
        assert own["hub"] == b.hub_id
    # the service closed: both hubs list it disconnected, still under b
    await until(
        lambda: not on(a, a.fleet_services(), "service_id", config.service_id)["connected"],  # type: ignore[index]
        "the disconnection seen on a",
    )


async def test_a_command_on_one_hub_lands_on_the_hub_holding_the_service(
    fleet: list[Hub],
) -> None:
    a, b = fleet
    config = CoordinatorConfig(b.url, "svc", service_id=f"svc-{fleet_id()}")
    async with Coordinator(config) as coordinator:
        phases = coordinator.phases
        phases.register_workflow("wf-2")
        for p in (Phase.PRE_FLIGHT, Phase.PLANNING, Phase.EXECUTION):
            phases.transition_to("wf-2", p)
        await until(
            lambda: (a.fleet_workflow("wf-2") or {}).get("phase") == "execution", "wf-2 on a"
        )
        settled = await a.pause("wf-2", "from a", timeout=WAIT)
        assert settled.outcome is RequestOutcome.ANSWERED
        assert settled.response is not None
        assert settled.response.payload == {
            "workflow_id": "wf-2",
            "from": "execution",
            "to": "pausing",
            "reason": "from a",
        }
        assert phases.get_phase("wf-2") is Phase.PAUSING
        status = await a.status("wf-2", timeout=WAIT)
        assert status.outcome is RequestOutcome.ANSWERED
        assert status.response.payload["phase"] == "pausing"  # type: ignore[union-attr,index]
        # the service refuses to pause a pausing workflow: REFUSED, as on its own hub
        refused = await a.pause("wf-2", timeout=WAIT)
        assert refused.outcome is RequestOutcome.REFUSED
        assert a.stats()["fleet_commands_routed"] == 3
        assert b.stats()["fleet_commands_served"] == 3
    with pytest.raises(LookupError):
        await a.pause("no-such-workflow", timeout=1.0)


async def test_permissions_are_checked_at_the_operators_hub(nats_server: NatsServer) -> None:
    table = Credentials.from_document(
        {
            "credentials": [
                {"name": "svc", "token": "svc-t", "register": ["*"]},
                {"name": "viewer", "token": "view-t", "control": ["someone-else"]},
            ]
        }
    )
    tag = fleet_id()
    async with (
        Hub(port=0, auth=table, hub_id=f"a-{tag}", fleet=nats_server.url) as a,
        Hub(port=0, auth=table, hub_id=f"b-{tag}", fleet=nats_server.url) as b,
    ):
        config = CoordinatorConfig(b.url, "svc", service_id=f"svc-{tag}", token="svc-t")
        async with Coordinator(config) as coordinator:
            coordinator.phases.register_workflow("wf-3")
            coordinator.phases.transition_to("wf-3", Phase.PRE_FLIGHT)
            await until(lambda: a.fleet_workflow("wf-3") is not None, "wf-3 on a")
            viewer = table.identify("view-t")
            with pytest.raises(PermissionError, match="may not control"):
                await a.pause("wf-3", credential=viewer, timeout=WAIT)
            assert a.protocol.refusals()["control_forbidden"] == 1
            assert b.stats()["fleet_commands_served"] == 0  # it never left a
            assert coordinator.phases.get_phase("wf-3") is Phase.PRE_FLIGHT


async def test_a_command_for_a_workflow_whose_hub_is_gone_settles_in_time(
    nats_server: NatsServer,
) -> None:
    tag = fleet_id()
    a = Hub(port=0, hub_id=f"a-{tag}", fleet=nats_server.url, expire_after=30.0)
    b = Hub(port=0, hub_id=f"b-{tag}", fleet=nats_server.url)
    async with a:
        await b.start()
        config = CoordinatorConfig(b.url, "svc", service_id=f"svc-{tag}")
        coordinator = Coordinator(config)
        await coordinator.connect()
        coordinator.phases.register_workflow("wf-4")
        coordinator.phases.transition_to("wf-4", Phase.PRE_FLIGHT)
        await until(lambda: a.fleet_workflow("wf-4") is not None, "wf-4 on a")
        # b's link to NATS goes as in a crash: no leaving snapshot, a still lists wf-4.
        assert b.fleet is not None and b.fleet._nc is not None
        await b.fleet._nc.close()
        await until(lambda: not b.fleet.connected, "b off NATS")  # type: ignore[union-attr]
        # It settles (never hangs): at once when NATS says nobody answers, else by its
        # own 2 s timeout; the generous bound only keeps a broken build from hanging.
        settled = await asyncio.wait_for(a.pause("wf-4", timeout=2.0), WAIT)
        assert settled.outcome in (RequestOutcome.DISCONNECTED, RequestOutcome.EXPIRED)
        assert a.fleet is not None and a.fleet._replies == {}
        await coordinator.close()
        await b.stop()


async def test_a_service_fails_over_to_the_next_hub_and_is_listed_once(
    fleet: list[Hub],
) -> None:
    a, b = fleet
    config = CoordinatorConfig(
        b.url,
        "svc",
        service_id=f"svc-{fleet_id()}",
        fallback_urls=(a.url,),
        reconnect_initial_delay=0.05,
        reconnect_max_delay=0.2,
    )
    async with Coordinator(config) as coordinator:
        coordinator.phases.register_workflow("wf-5")
        coordinator.phases.transition_to("wf-5", Phase.PRE_FLIGHT)
        coordinator.send_progress("wf-5", "step", 10.0)
        await until(lambda: a.fleet_workflow("wf-5") is not None, "wf-5 on a")
        await b.stop()  # b goes; the service dials a
        await until(lambda: coordinator.url == a.url and coordinator.is_registered, "on a")
        coordinator.phases.transition_to("wf-5", Phase.PLANNING)
        coordinator.phases.transition_to("wf-5", Phase.EXECUTION)

        def moved() -> bool:
            entries = [s for s in a.fleet_services() if s["service_id"] == config.service_id]
            workflow = a.fleet_workflow("wf-5") or {}
            return (
                len(entries) == 1
                and entries[0]["hub"] == a.hub_id
                and entries[0]["connected"]
                and workflow.get("phase") == "execution"
                and workflow.get("hub") == a.hub_id
            )

        await until(moved, "the service under a, once")
        settled = await a.pause("wf-5", timeout=WAIT)
        assert settled.outcome is RequestOutcome.ANSWERED


async def test_connect_tries_the_next_hub_when_the_first_is_unreachable(
    fleet: list[Hub],
) -> None:
    a, _ = fleet
    from turnout.testing.nats_server import free_port

    config = CoordinatorConfig(
        f"ws://127.0.0.1:{free_port()}/v1/coordination", "svc", fallback_urls=(a.url,)
    )
    async with Coordinator(config) as coordinator:
        assert coordinator.url == a.url and coordinator.is_registered
        assert coordinator.stats()["dial_failures"] == 1
    assert config.url_after(config.when_url, 1) == a.url
    assert config.url_after(a.url, 1) == config.when_url
    with pytest.raises(TypeError):
        CoordinatorConfig("ws://x", "svc", fallback_urls="ws://y")  # type: ignore[arg-type]


async def test_the_control_api_of_any_hub_lists_the_fleet(fleet: list[Hub]) -> None:
    from turnout.ws.operator import HubClient

    a, b = fleet
    config = CoordinatorConfig(b.url, "svc", service_id=f"svc-{fleet_id()}")
    async with Coordinator(config) as coordinator:
        coordinator.phases.register_workflow("wf-6")
        coordinator.send_workflow_created("wf-6")
        await until(lambda: a.fleet_workflow("wf-6") is not None, "wf-6 on a")
        client = HubClient(a.base_url)
        services = await asyncio.to_thread(client.services)
        (entry,) = [s for s in services if s["service_id"] == config.service_id]
        assert entry["hub"] == b.hub_id
        (listed,) = await asyncio.to_thread(client.workflows, None, config.service_id)
        assert (listed["workflow_id"], listed["hub"]) == ("wf-6", b.hub_id)
        one = await asyncio.to_thread(client.workflow, "wf-6")
        assert one["hub"] == b.hub_id
        health = await asyncio.to_thread(client.get, "/healthz")
        assert health["hub"] == a.hub_id and health["fleet_connected"] is True
        answer = await client.command("status", "wf-6", timeout=WAIT)
        assert answer["outcome"] == "answered"
        assert answer["response"]["payload"]["phase"] == "pending"


async def test_watchers_on_any_hub_get_every_hubs_events_once(nats_server: NatsServer) -> None:
    import turnout.nats
    from turnout.ws.operator import HubClient

    tag = fleet_id()
    buses = [await turnout.nats.connect(nats_server.url, node=f"{n}-{tag}") for n in "ab"]
    hubs = [
        Hub(port=0, bus=bus, hub_id=f"{n}-{tag}", fleet=nats_server.url)
        for n, bus in zip("ab", buses, strict=True)
    ]
    try:
        for hub in hubs:
            await hub.start()
        pattern = "events.coordination.>"
        seen: list[list[dict[str, Any]]] = [[], []]
        ready = [asyncio.Event(), asyncio.Event()]

        async def watch(index: int) -> None:
            client = HubClient(hubs[index].base_url)
            ready[index].set()
            async for event in client.watch([pattern]):
                if event["data"]["service_id"].startswith(f"svc-{tag}-"):
                    seen[index].append(event)

        watchers = [asyncio.create_task(watch(i)) for i in range(2)]
        for event in ready:
            await event.wait()
        await until(lambda: all(len(h.watchers) == 1 for h in hubs), "both watchers")
        # Each hub's watcher subscription must be on NATS before services speak.
        for bus in buses:
            await bus.flush()
        coordinators = [
            Coordinator(CoordinatorConfig(hub.url, "svc", service_id=f"svc-{tag}-{i}"))
            for i, hub in enumerate(hubs)
        ]
        for coordinator in coordinators:
            await coordinator.connect()
            for n in range(20):
                coordinator.send_progress("wf", "step", float(n))
        published = 2 * (1 + 20)  # a register and 20 progress messages each
        await until(lambda: all(len(s) >= published for s in seen), "every event at both")
        for coordinator in coordinators:
            await coordinator.close()
        expected = published + 2  # and a disconnected each
        await until(lambda: all(len(s) >= expected for s in seen), "the disconnections")
        keys = [[event_key(e) for e in events] for events in seen]
        for each in keys:
            assert len(each) == len(set(each)) == expected  # none doubled, none lost
        assert set(keys[0]) == set(keys[1])
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    finally:
        for hub in hubs:
            await hub.stop()
        for bus in buses:
            await bus.aclose()


async def test_turnout_ctl_names_each_entrys_hub(
    fleet: list[Hub], capsys: pytest.CaptureFixture[str]
) -> None:
    from turnout.cli import main

    a, b = fleet
    config = CoordinatorConfig(b.url, "svc", service_id=f"svc-{fleet_id()}")
    async with Coordinator(config) as coordinator:
        coordinator.phases.register_workflow("wf-7")
        coordinator.send_workflow_created("wf-7")
        await until(lambda: a.fleet_workflow("wf-7") is not None, "wf-7 on a")
        capsys.readouterr()
        assert await asyncio.to_thread(main, ["ctl", "--hub", a.base_url, "services"]) == 0
        table = capsys.readouterr().out.splitlines()
        assert "HUB" in table[0].split()
        (row,) = [line for line in table if config.service_id in line]
        assert b.hub_id in row.split()
        code = await asyncio.to_thread(
            main,
            ["ctl", "--hub", a.base_url, "--json", "workflows", "--service", config.service_id],
        )
        assert code == 0
        (listed,) = orjson.loads(capsys.readouterr().out)
        assert listed["hub"] == b.hub_id


async def test_malformed_routed_commands_are_answered_and_counted(fleet: list[Hub]) -> None:
    from plain_nats import connect_plain

    a, _ = fleet
    assert a.fleet is not None
    client = await connect_plain(a.fleet.servers)
    try:
        for data in (b"not json", b'{"command": "reboot", "workflow_id": "w"}'):
            answer = await client.request(command_subject(a.hub_id), data, timeout=WAIT)
            reply = FleetReply.parse(answer.data)
            assert reply.outcome == "error" and "malformed routed command" in reply.error
        unknown = FleetCommand("status", "no-such-workflow", timeout=1.0).to_json()
        answer = await client.request(command_subject(a.hub_id), unknown, timeout=WAIT)
        assert FleetReply.parse(answer.data).outcome == "error"
        # a snapshot frame that is not one changes nothing
        await client.publish(state_subject("intruder"), b"\x00garbage")
        await client.flush()
        await until(lambda: a.stats()["fleet_snapshot_frames_malformed"] >= 1, "counted")
    finally:
        await client.close()
    assert a.stats()["fleet_commands_malformed"] == 2
    assert all(s["hub"] != "intruder" for s in a.fleet_services())


async def test_a_hub_that_stops_leaves_the_others_views_at_once(nats_server: NatsServer) -> None:
    tag = fleet_id()
    # expire_after is long: only the leaving snapshot can explain b's going
    async with Hub(port=0, hub_id=f"a-{tag}", fleet=nats_server.url, expire_after=60.0) as a:
        b = Hub(port=0, hub_id=f"b-{tag}", fleet=nats_server.url)
        await b.start()
        await until(lambda: a.stats()["fleet_peers"] >= 1, "b heard by a")
        await b.stop()
        await until(lambda: a.stats()["fleet_peers_left"] == 1, "b's leaving")
        assert all(p.hub_id != b.hub_id for p in a.fleet.protocol.peers())  # type: ignore[union-attr]


async def test_a_routed_command_settles_disconnected_expired_or_error_at_the_link(
    fleet: list[Hub],
) -> None:
    from plain_nats import connect_plain

    a, _ = fleet
    assert a.fleet is not None
    data = FleetCommand("status", "wf-x", timeout=1.0).to_json()
    # nobody subscribes to that hub's subject: NATS says so at once
    gone = await a.fleet.route(f"never-{fleet_id()}", data, WAIT)
    assert gone.outcome == "disconnected" and "gone" in gone.error
    client = await connect_plain(a.fleet.servers)
    try:
        silent, bad = f"silent-{fleet_id()}", f"bad-{fleet_id()}"
        await client.subscribe(command_subject(silent))  # takes commands, never answers

        async def answer_badly(msg: Any) -> None:
            await msg.respond(b'{"outcome": "maybe"}')

        await client.subscribe(command_subject(bad), cb=answer_badly)
        await client.flush()
        expired = await a.fleet.route(silent, data, 0.5)
        assert expired.outcome == "expired" and silent in expired.error
        answered = await a.fleet.route(bad, data, WAIT)
        assert answered.outcome == "error" and "answered badly" in answered.error
    finally:
        await client.close()
    assert a.fleet._replies == {}  # nothing left waiting


async def test_a_routed_command_starts_at_once_and_can_be_cancelled_while_it_waits() -> None:
    """The holding hub runs a routed command up to its first wait in the loop turn that
    read it (an eager task); the rest runs as a task, which a stop cancels."""
    from turnout.ws.fleet import _start_now

    loop = asyncio.get_running_loop()
    steps: list[object] = []
    answer: asyncio.Future[int] = loop.create_future()

    async def command() -> None:
        steps.append("sent")
        steps.append(await answer)

    task = _start_now(command())
    assert steps == ["sent"] and task is not None
    answer.set_result(7)
    await task
    assert steps == ["sent", 7]

    async def at_once() -> None:
        steps.append("done")

    assert _start_now(at_once()) is None and steps.pop() == "done"

    async def waits() -> None:
        try:
            await loop.create_future()  # never done
        finally:
            steps.append("left")

    for stepped in (False, True):  # cancelled before the task's first step, then after
        task = _start_now(waits())
        assert task is not None
        if stepped:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert steps[-1] == "left"
        steps.append("-")


async def test_the_holding_hub_answers_expired_and_disconnected_itself(fleet: list[Hub]) -> None:
    """A service on b that takes a routed command and never answers: b's request expires
    and b sends "expired" (not a's own timer); then the service drops mid-command and b
    sends "disconnected". Both replies are written as b's request settles."""
    from websockets.asyncio.client import connect

    from turnout.protocol import (
        MessageType,
        RegisterPayload,
        WorkflowCreatedPayload,
        WSMessage,
    )

    a, b = fleet
    assert a.fleet is not None
    workflow_id, service_id = f"wf-silent-{fleet_id()}", f"silent-{fleet_id()}"

    async def silent_service() -> Any:
        raw = await connect(b.url, additional_headers={"X-Service-Name": "silent"})
        register = RegisterPayload(service_name="silent", service_id=service_id)
        await raw.send(WSMessage.with_payload(MessageType.REGISTER, register).to_json(), text=True)
        registered = WSMessage.parse(await asyncio.wait_for(raw.recv(), WAIT))
        assert registered.type is MessageType.REGISTERED
        created = WorkflowCreatedPayload(workflow_id)
        frame = WSMessage.with_payload(MessageType.WORKFLOW_CREATED, created).to_json()
        await raw.send(frame, text=True)
        return raw

    data = FleetCommand("status", workflow_id, timeout=1.0).to_json()
    raw = await silent_service()
    try:
        await until(lambda: a.fleet_workflow(workflow_id) is not None, "the workflow on a")
        expired = await a.fleet.route(b.hub_id, data, WAIT)
        assert (expired.outcome, expired.hub, expired.error) == ("expired", b.hub_id, "")
        asked = WSMessage.parse(await asyncio.wait_for(raw.recv(), WAIT))
        assert asked.type is MessageType.STATUS
    finally:
        await raw.close()
    raw = await silent_service()
    try:

        def held_again() -> bool:
            workflow = b.protocol.workflow(workflow_id)
            service = None if workflow is None else b.protocol.service(*workflow.service)
            return service is not None and service.connection is not None

        await until(held_again, "the workflow held again on b")
        routed = asyncio.create_task(a.fleet.route(b.hub_id, data, WAIT))
        asked = WSMessage.parse(await asyncio.wait_for(raw.recv(), WAIT))
        assert asked.type is MessageType.STATUS
    finally:
        await raw.close()
    dropped = await routed
    assert (dropped.outcome, dropped.hub) == ("disconnected", b.hub_id)
    assert b.stats()["fleet_command_reply_errors"] == 0
