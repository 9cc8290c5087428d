"""The fleet as it is run: a three-server NATS cluster, three ``turnout hub`` processes,
30 services spread over them. An operator on hub A pauses a workflow on hub C; hub B is
SIGKILLed and its services move to A or C; one NATS server is killed too. Every command
afterwards lands, and the watchers see every event once. Loopback only; every wait is
for a state, bounded."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from turnout.phases import Phase
from turnout.testing.hub_process import HubProcess
from turnout.testing.nats_server import NatsCluster
from turnout.ws import Coordinator, CoordinatorConfig
from turnout.ws.operator import HubClient

pytest.importorskip("nats")

WAIT = 60.0
SERVICES = 30
RECONNECT_MAX_DELAY = 1.0
TOKEN = "fleet-test-token"


async def until(condition: Callable[[], Any], what: str, wait: float = WAIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def event_key(event: dict[str, Any]) -> tuple[str, str, str]:
    data = event["data"]
    return (event["type"], data["service_id"], (data.get("message") or {}).get("id", ""))


class Watcher:
    """A watcher of every coordination event on one hub, in a task."""

    def __init__(self, hub: HubProcess) -> None:
        self.events: list[dict[str, Any]] = []
        self.client = HubClient(hub.base_url, TOKEN)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self.client.watch(["events.coordination.>"]):
            self.events.append(event)

    def keys(self) -> list[tuple[str, str, str]]:
        return [event_key(e) for e in self.events]

    def progress(self, action: str) -> list[tuple[str, str, str]]:
        """The progress events of ``action``."""
        return [
            event_key(e)
            for e in self.events
            if e["type"].startswith("coordination.progress.")
            and e["data"]["message"]["payload"].get("action_id") == action
        ]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def get(client: HubClient, path: str) -> Any:
    return await asyncio.to_thread(client.get, path)


@pytest.mark.timeout(240)
async def test_three_hubs_survive_a_killed_hub_and_a_killed_nats_server(
    nats_cluster: NatsCluster,
) -> None:
    urls = nats_cluster.urls
    # Each hub lists a different NATS server first; killing servers[2] moves hub C's.
    hubs = [
        HubProcess(token=TOKEN, nats_url=urls[i:] + urls[:i], hub_id=f"hub-{name}")
        for i, name in enumerate("abc")
    ]
    coordinators: list[Coordinator] = []
    watchers: list[Watcher] = []
    try:
        for hub in hubs:
            hub.start()
        b = hubs[1]
        clients = [HubClient(hub.base_url, TOKEN) for hub in hubs]

        async def peers_heard() -> bool:
            for client in clients:
                health = await get(client, "/healthz")
                if health.get("fleet_peers") != 2:
                    return False
            return True

        await until(peers_heard, "every hub hearing the two others")
        watchers = [Watcher(hub) for hub in hubs]
        await until(_watchers_ready(clients), "a watcher on every hub")

        for n in range(SERVICES):
            home = hubs[n % 3]
            others = [h.url for h in hubs if h is not home]
            config = CoordinatorConfig(
                home.url,
                "fleet-svc",
                service_id=f"svc-{n:02d}",
                token=TOKEN,
                fallback_urls=tuple(others),
                reconnect_initial_delay=0.2,
                reconnect_max_delay=RECONNECT_MAX_DELAY,
            )
            coordinator = Coordinator(config)
            await coordinator.connect()
            coordinators.append(coordinator)
            phases = coordinator.phases
            phases.register_workflow(f"wf-{n:02d}")
            for phase in (Phase.PRE_FLIGHT, Phase.PLANNING, Phase.EXECUTION):
                phases.transition_to(f"wf-{n:02d}", phase)

        async def whole_view(client: HubClient) -> bool:
            workflows = (await get(client, "/v1/workflows"))["workflows"]
            mine = [w for w in workflows if w["workflow_id"].startswith("wf-")]
            return len(mine) == SERVICES and all(w["phase"] == "execution" for w in mine)

        for client in clients:
            await until(lambda cl=client: whole_view(cl), "every workflow on every hub")
        services = (await get(clients[0], "/v1/services"))["services"]
        assert Counter(s["hub"] for s in services) == {"hub-a": 10, "hub-b": 10, "hub-c": 10}

        # The operator on A pauses a workflow held by C.
        held_by_c = "wf-02"
        assert (await get(clients[0], f"/v1/workflows/{held_by_c}"))["hub"] == "hub-c"
        answer = await clients[0].command("pause", held_by_c, reason="operator on A", timeout=10)
        assert answer["outcome"] == "answered", answer
        assert coordinators[2].phases.get_phase(held_by_c) is Phase.PAUSING

        # A burst of events; every watcher sees every one, once.
        await _burst(coordinators, "burst-1")
        for watcher in watchers:
            await until(_has_progress([watcher], "burst-1"), "burst-1 at every watcher")
        await _same_events_once(watchers)

        # SIGKILL hub B: its services move to A or C.
        moved = [f"svc-{n:02d}" for n in range(1, SERVICES, 3)]
        killed_at = time.monotonic()
        b.kill()
        await watchers[1].stop()
        live = [watchers[0], watchers[2]]

        async def moved_away() -> bool:
            for client in (clients[0], clients[2]):
                listed = {
                    s["service_id"]: s for s in (await get(client, "/v1/services"))["services"]
                }
                for service_id in moved:
                    entry = listed.get(service_id)
                    if entry is None or not entry["connected"] or entry["hub"] == "hub-b":
                        return False
            return True

        await until(moved_away, "hub B's services under A or C")
        took = time.monotonic() - killed_at
        print(
            f"\nhub B's {len(moved)} services listed under A or C after {took:.2f} s "
            f"(reconnect_max_delay {RECONNECT_MAX_DELAY} s)"
        )

        # Every command afterwards lands, from either surviving hub.
        for n in range(SERVICES):
            client = clients[0] if n % 2 else clients[2]
            answer = await client.command("status", f"wf-{n:02d}", timeout=10)
            assert answer["outcome"] == "answered", (n, answer)

        await _burst(coordinators, "burst-2")
        await until(_has_progress(live, "burst-2"), "burst-2 at A and C")
        await _same_events_once(live)

        # Kill the NATS server hub C is on, and send a burst while C's bus reconnects.
        nats_cluster.servers[2].kill()
        await _burst(coordinators, "during")

        async def fleet_whole() -> bool:
            for client in (clients[0], clients[2]):
                health = await get(client, "/healthz")
                if not health.get("fleet_connected") or health.get("fleet_peers") != 1:
                    return False
            return True

        await until(fleet_whole, "A and C back on NATS")
        # Every watcher gets every hub's events of the burst: the others' as they were
        # published, or replayed from their hubs once C's bus is back on the cluster.
        await until(_has_progress(live, "during"), "the 'during' burst at A and C")
        await _burst(coordinators, "burst-3")
        await until(_has_progress(live, "burst-3"), "burst-3 at A and C")
        await _same_events_once(live)

        for n in range(SERVICES):
            answer = await clients[0].command("status", f"wf-{n:02d}", timeout=10)
            assert answer["outcome"] == "answered", (n, answer)
    finally:
        for watcher in watchers:
            await watcher.stop()
        for coordinator in coordinators:
            await coordinator.close(timeout=1.0)
        for hub in hubs:
            hub.kill()


BURST = 5


async def _burst(coordinators: list[Coordinator], action: str) -> None:
    for n, coordinator in enumerate(coordinators):
        for k in range(BURST):
            coordinator.send_progress(f"wf-{n:02d}", action, float(k))


def _has_progress(watchers: list[Watcher], action: str) -> Callable[[], Any]:
    """Whether every watcher got the progress events of ``action`` of every service."""

    async def check() -> bool:
        return all(len(set(w.progress(action))) >= SERVICES * BURST for w in watchers)

    return check


def _watchers_ready(clients: list[HubClient]) -> Callable[[], Any]:
    async def check() -> bool:
        for client in clients:
            if (await get(client, "/healthz"))["watchers"] != 1:
                return False
        return True

    return check


async def _same_events_once(watchers: list[Watcher]) -> None:
    """All the watchers got the same events, and none got one twice."""

    async def same() -> bool:
        first = set(watchers[0].keys())
        return all(set(w.keys()) == first for w in watchers[1:])

    await until(same, "the same events at every watcher")
    for watcher in watchers:
        keys = watcher.keys()
        doubled = len(keys) - len(set(keys))
        assert doubled == 0, f"{doubled} events doubled"
