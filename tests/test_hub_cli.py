"""``turnout ctl``, ``turnout watch`` and ``turnout pub`` driving a real ``turnout hub``
process (and a real NATS server), as an operator would from a shell."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from turnout.phases import Phase
from turnout.testing.nats_server import NatsServer
from turnout.ws import Coordinator, CoordinatorConfig

WAIT = 30.0
AUTH = {
    "credentials": [
        {"name": "svc", "token": "svc-t", "register": ["svc-1"], "watch": []},
        {"name": "ops", "token": "ops-t", "control": ["*"], "watch": ["events.>"]},
        {"name": "viewer", "token": "view-t", "watch": ["events.coordination.>"]},
    ]
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def turnout(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "turnout",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def hub_process(tmp_path: Path) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps(AUTH))
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "turnout",
        "hub",
        "--port",
        str(port),
        "--auth",
        str(auth),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), WAIT)
    assert b"listening on ws://127.0.0.1:" in line, line
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), WAIT)


async def test_ctl_lists_and_commands_a_real_hub(
    hub_process: tuple[str, asyncio.subprocess.Process],
) -> None:
    url, process = hub_process
    ws_url = url.replace("http://", "ws://") + "/v1/coordination"
    config = CoordinatorConfig(ws_url, "builder", service_id="svc-1", token="svc-t")
    async with Coordinator(config) as coordinator:
        phases = coordinator.phases
        phases.register_workflow("wf-1")
        for phase in (Phase.PRE_FLIGHT, Phase.PLANNING, Phase.EXECUTION):
            phases.transition_to("wf-1", phase)
        env = {"TURNOUT_HUB_URL": url, "TURNOUT_HUB_TOKEN": "ops-t"}
        for _ in range(200):  # until the hub has the phase (bounded)
            code, out, _ = await turnout("ctl", "--json", "workflows", env=env)
            if code == 0 and '"execution"' in out:
                break
            await asyncio.sleep(0.05)
        (workflow,) = json.loads(out)
        assert (workflow["workflow_id"], workflow["service_id"]) == ("wf-1", "svc-1")

        code, out, _ = await turnout("ctl", "services", env=env)
        header, row = out.splitlines()
        assert header.split()[:3] == ["SERVICE_ID", "INSTANCE_ID", "SERVICE_NAME"]
        assert row.split()[:4] == ["svc-1", "-", "builder", "yes"]

        code, out, _ = await turnout("ctl", "status", "wf-1", env=env)
        assert code == 0 and "execution" in out.splitlines()[1]
        code, out, _ = await turnout("ctl", "pause", "wf-1", "--reason", "maintenance", env=env)
        assert (code, out.strip()) == (0, "pause wf-1: answered (phase pausing)")
        assert phases.get_phase("wf-1") is Phase.PAUSING
        code, out, _ = await turnout("ctl", "pause", "wf-1", env=env)  # the service refuses
        assert code == 1 and out.startswith("pause wf-1: refused: workflow wf-1 cannot be paused")
        code, out, _ = await turnout(
            "ctl", "--hub", url, "--token", "view-t", "cancel", "wf-1", "--force"
        )
        assert code == 1 and "'viewer' may not control service 'svc-1'" in out
        code, _, err = await turnout("ctl", "--hub", url, "--token", "nope", "services")
        assert code == 1 and "HTTP 401: turnout hub: invalid token" in err
        code, out, _ = await turnout(
            "ctl",
            "--hub",
            url.replace("http", "ws"),
            "--json",
            "cancel",
            "wf-1",
            "--force",
            env={"TURNOUT_HUB_TOKEN": "ops-t"},
        )
        assert code == 0 and json.loads(out)["outcome"] == "answered"
        assert phases.get_phase("wf-1") is Phase.CANCELLED
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), WAIT) == 0
    assert process.stderr is not None
    log = (await process.stderr.read()).decode()
    assert "registered peer=127.0.0.1:" in log and "service_id=svc-1" in log
    assert "refused peer=127.0.0.1:" in log and "reason=invalid_token" in log
    assert "disconnected peer=127.0.0.1:" in log


async def test_watch_follows_a_hub_and_pub_reaches_watch_over_nats(
    hub_process: tuple[str, asyncio.subprocess.Process], nats_server: NatsServer
) -> None:
    url, _ = hub_process
    watcher = asyncio.create_task(
        turnout("watch", "--hub", url, "--token", "viewer-wrong", "events.coordination.>")
    )
    code, _, err = await watcher
    assert code == 1 and "HTTP 401" in err

    watcher = asyncio.create_task(
        turnout(
            "watch",
            "--hub",
            url,
            "--token",
            "view-t",
            "--count",
            "1",
            "events.coordination.register.>",
        )
    )
    ws_url = url.replace("http://", "ws://") + "/v1/coordination"
    config = CoordinatorConfig(ws_url, "builder", service_id="svc-1", token="svc-t")
    while not watcher.done():  # registrations until the watcher, once connected, sees one
        async with Coordinator(config):
            pass
        await asyncio.sleep(0.05)
    code, out, _ = await watcher
    assert code == 0
    assert out.split()[1] == "events.coordination.register.svc-1._"

    follower = asyncio.create_task(
        turnout("watch", "--nats", nats_server.url, "--json", "--count", "1", "events.deploy.>")
    )
    while not follower.done():
        code, _, err = await turnout("pub", "--nats", nats_server.url, "deploy.started", '{"v": 2}')
        assert code == 0, err
        await asyncio.sleep(0.1)
    code, out, _ = await follower
    event = json.loads(out.splitlines()[0])
    assert (event["type"], event["data"]) == ("deploy.started", {"v": 2})
    code, _, err = await turnout("pub", "--nats", nats_server.url, "x", "{not json")
    assert code == 2 and "not JSON" in err


async def test_sigterm_sends_watchers_every_disconnected_event_before_closing(
    hub_process: tuple[str, asyncio.subprocess.Process],
) -> None:
    url, process = hub_process
    base = url.replace("http://", "ws://")
    pattern = "events.coordination.disconnected.>"
    async with connect(f"{base}/v1/watch?subject={pattern}&token=ops-t") as watcher:
        config = CoordinatorConfig(
            base + "/v1/coordination",
            "builder",
            service_id="svc-1",
            token="svc-t",
            reconnect_max_attempts=1,
            reconnect_initial_delay=0.01,
        )
        async with Coordinator(config):
            process.send_signal(signal.SIGTERM)
            seen = orjson.loads(await asyncio.wait_for(watcher.recv(), WAIT))
            assert seen["type"] == "coordination.disconnected.svc-1._"
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(watcher.recv(), WAIT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert await asyncio.wait_for(process.wait(), WAIT) == 0
