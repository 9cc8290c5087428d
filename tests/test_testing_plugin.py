"""turnout's pytest plugin: its fixtures give real, working servers and a bus, loading it
needs none of the optional extras, and the old ``turnout.nats_server`` path still works
with a deprecation warning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nats
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from turnout.bus import Bus
from turnout.events import Event, user_event
from turnout.protocol import MessageType, RegisterPayload, WSMessage
from turnout.testing.hub_process import HubProcess
from turnout.testing.nats_server import NatsCluster, NatsServer


def test_the_plugin_is_registered_under_its_entry_point(
    pytestconfig: pytest.Config,
) -> None:
    plugin = pytestconfig.pluginmanager.get_plugin("turnout")
    assert plugin is not None and plugin.__name__ == "turnout.testing.pytest_plugin"


def test_loading_the_plugin_needs_no_optional_extra() -> None:
    # None in sys.modules makes an import fail, as if the package were not installed.
    code = (
        "import sys\n"
        "for name in ('hypothesis', 'nats', 'websockets'):\n"
        "    sys.modules[name] = None\n"
        "import turnout.testing, turnout.testing.pytest_plugin\n"
        "assert 'check_matcher' in dir(turnout.testing)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_old_import_path_warns_and_gives_the_same_objects() -> None:
    code = (
        "import warnings\n"
        "warnings.simplefilter('error')\n"
        "try:\n"
        "    import turnout.nats_server\n"
        "except DeprecationWarning as warning:\n"
        "    assert 'turnout.testing.nats_server' in str(warning), warning\n"
        "else:\n"
        "    raise SystemExit('no warning')\n"
        "warnings.simplefilter('ignore')\n"
        "import turnout.nats_server as old, turnout.testing.nats_server as new\n"
        "assert old.NatsServer is new.NatsServer and old.running_server is new.running_server\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


async def test_nats_server_has_jetstream(nats_server: NatsServer) -> None:
    client = await nats.connect(nats_server.url)
    try:
        info = await client.jsm().account_info()
        assert info.limits is not None
    finally:
        await client.close()


def test_own_nats_server_can_be_killed_and_restarted(own_nats_server: NatsServer) -> None:
    port = own_nats_server.port
    own_nats_server.kill()
    assert not own_nats_server.running
    own_nats_server.start()
    assert own_nats_server.running and own_nats_server.port == port


async def test_nats_cluster_routes_between_members_and_survives_a_kill(
    nats_cluster: NatsCluster,
) -> None:
    _, second, third = nats_cluster.urls
    nats_cluster.servers[0].kill()
    receiver = await nats.connect(second)
    sender = await nats.connect(third)
    try:
        sub = await receiver.subscribe("routed.>")
        await receiver.flush()
        # Interest travels between servers asynchronously: publish until it has arrived.
        for _ in range(200):
            await sender.publish("routed.x", b"hello")
            await sender.flush()
            try:
                message = await sub.next_msg(timeout=0.05)
                break
            except nats.errors.TimeoutError:
                continue
        else:
            pytest.fail("no message crossed the cluster")
        assert message.data == b"hello"
        nats_cluster.servers[0].start()
        assert all(server.running for server in nats_cluster.servers)
    finally:
        await receiver.close()
        await sender.close()


async def test_turnout_hub_serves_registrations_and_requires_its_token(
    turnout_hub: HubProcess,
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(turnout_hub.url)
    assert refused.value.response.status_code == 401
    headers = {**turnout_hub.headers, "X-Service-Name": "svc"}
    async with connect(turnout_hub.url, additional_headers=headers) as ws:
        register = WSMessage.with_payload(
            MessageType.REGISTER, RegisterPayload(service_name="svc", version="1.0.0")
        )
        await ws.send(register.to_json().decode())
        reply = WSMessage.parse(await ws.recv())
        assert reply.type is MessageType.REGISTERED and reply.id == register.id


def test_turnout_bus_is_embedded_and_closed_after_the_test(turnout_bus: Bus) -> None:
    heard: list[Event] = []
    turnout_bus.subscribe("events.user.>", heard.append)
    turnout_bus.emit(user_event("", "ping", {"n": 1}))
    assert [e.data for e in heard] == [{"n": 1}]
    assert turnout_bus.node == "test" and not turnout_bus.closed


def test_the_documented_fixture_example_passes(tmp_path: Path) -> None:
    """docs/testing.md's test file (marked "not run" there: it needs pytest) runs here."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "testing.md").read_text()
    block = page.split("<!-- not run -->\n```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "test_documented.py").write_text(block)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
