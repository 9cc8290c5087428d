"""The hub as a service people run, tried as an operator and as an attacker would: every
attack here used to do harm (identities, unbounded state, stalled watchers, ambiguous
credentials, a mute hub) and now fails to. Real hubs and clients on loopback, every wait
bounded."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from waiting import until
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

from turnout.coordination import (
    AuthFileError,
    Credentials,
    HubProtocol,
    MessageRefused,
    ServiceMessage,
)
from turnout.events import Event
from turnout.phases import Phase
from turnout.protocol import (
    ErrorPayload,
    MessageType,
    PhaseChangedPayload,
    ProgressPayload,
    RegisterPayload,
    WSMessage,
)
from turnout.ws import Coordinator, CoordinatorConfig, Hub, HubRefusedError, RequestOutcome

WAIT = 10.0


def auth_table(**tokens: dict[str, Any]) -> Credentials:
    return Credentials.from_document(
        {"credentials": [{"name": name, **entry} for name, entry in tokens.items()]}
    )


TABLE = {
    "alpha": {"token": "alpha-t", "register": ["svc-a"], "watch": ["events.coordination.>"]},
    "beta": {"token": "beta-t", "register": ["svc-b"], "watch": []},
    "ops": {"token": "ops-t", "control": ["svc-a"], "watch": [">"]},
}


def register(service_id: str, name: str = "svc") -> bytes:
    return WSMessage.with_payload(MessageType.REGISTER, RegisterPayload(name, service_id)).to_json()


def phase(workflow_id: str, to: Phase, frm: Phase | str = "") -> bytes:
    payload = PhaseChangedPayload(workflow_id, frm, to, reason="test")
    return WSMessage.with_payload(MessageType.PHASE_CHANGED, payload).to_json()


def error_of(frame: bytes | str) -> str:
    message = WSMessage.parse(frame)
    assert message.type is MessageType.ERROR
    return message.payload_as(ErrorPayload).error


# --- identities and permissions, sans I/O ------------------------------------------------


def test_phase_changed_for_another_services_workflow_is_refused_and_counted() -> None:
    hub = HubProtocol()
    for conn, service in (("a", "svc-a"), ("b", "svc-b")):
        hub.connection_opened(conn)
        hub.receive(conn, register(service))
    hub.receive("a", phase("wf-1", Phase.PRE_FLIGHT, Phase.PENDING))
    out = hub.receive("b", phase("wf-1", Phase.CANCELLED, Phase.PRE_FLIGHT))
    assert "belongs to another service" in error_of(out.send[0])
    assert out.publish == []  # nothing republished for the intruder
    assert isinstance(out.events[0], MessageRefused) and out.events[0].label == "not_owner"
    record = hub.workflow("wf-1")
    assert record is not None and record.service == ("svc-a", "") and record.phase == "pre-flight"
    assert hub.pause("wf-1", deadline=1.0).connection == "a"  # commands still go to the owner
    # Naming it only in the payload does not get past either.
    sneaky = WSMessage.with_payload(
        MessageType.PROGRESS, ProgressPayload("wf-1", percent=99.0), workflow_id="wf-b"
    )
    assert "belongs to another service" in error_of(hub.receive("b", sneaky.to_json()).send[0])
    assert hub.refusals() == {"not_owner": 2}


def test_registering_an_id_the_credential_may_not_is_refused() -> None:
    hub = HubProtocol(credentials=auth_table(**TABLE))
    beta = hub.admit([("Authorization", "Bearer beta-t")]).credential
    assert beta is not None
    hub.connection_opened("b", {}, beta)
    reply = hub.receive("b", register("svc-a")).send[0]
    assert error_of(reply) == "register: credential 'beta' may not register 'svc-a'"
    assert hub.service("svc-a") is None
    made_up = hub.receive("b", register("")).send[0]  # an id the hub would make up
    assert "may not register an id of the hub's making" in error_of(made_up)
    assert WSMessage.parse(hub.receive("b", register("svc-b")).send[0]).type is (
        MessageType.REGISTERED
    )
    assert hub.refusals() == {"register_forbidden": 2}


def test_twenty_thousand_unique_workflow_ids_stop_at_the_cap() -> None:
    hub = HubProtocol(max_workflows=100)
    hub.connection_opened("c")
    hub.receive("c", register("svc-1"))
    refused = 0
    for n in range(20_000):
        out = hub.receive("c", phase(f"wf-{n}", Phase.PRE_FLIGHT, Phase.PENDING))
        refused += any(isinstance(e, MessageRefused) for e in out.events)
    assert hub.stats()["workflows"] == 100
    assert refused == 19_900 and hub.refusals() == {"workflow_cap": 19_900}
    assert "at most 100 per service" in error_of(
        hub.receive("c", phase("wf-x", Phase.PRE_FLIGHT)).send[0]
    )
    # A known workflow still reports; one that finished leaves after the retention period.
    out = hub.receive("c", phase("wf-0", Phase.FAILED, Phase.PRE_FLIGHT))
    assert isinstance(out.events[-1], ServiceMessage)


def test_finished_workflows_and_gone_services_are_pruned_after_the_retention() -> None:
    now = [0.0]
    hub = HubProtocol(retention=60.0, clock=lambda: now[0])
    for n in range(2_000):  # register, then disconnect
        hub.connection_opened(n)
        hub.receive(n, register(f"svc-{n}"))
        hub.receive(n, phase(f"wf-{n}", Phase.PRE_FLIGHT, Phase.PENDING))
        hub.connection_closed(n)
    hub.connection_opened("live")
    hub.receive("live", register("live"))
    hub.receive("live", phase("wf-done", Phase.COMPLETED, Phase.EXECUTION))
    hub.receive("live", phase("wf-running", Phase.EXECUTION, Phase.PLANNING))
    assert hub.stats()["services"] == 2_001
    now[0] = 59.0
    assert hub.prune() == 0
    now[0] = 60.0
    assert hub.prune() == 2_000 + 2_000 + 1  # the services, their workflows, wf-done
    assert [s.service_id for s in hub.services()] == ["live"]
    assert [w.workflow_id for w in hub.workflows()] == ["wf-running"]
    stats = hub.stats()
    assert (stats["pruned_services"], stats["pruned_workflows"]) == (2_000, 2_001)


def test_one_connection_registering_many_instances_leaves_one_live() -> None:
    hub = HubProtocol(retention=0.0, clock=lambda: 1.0)
    hub.connection_opened("c")
    for n in range(50):
        payload = RegisterPayload("svc", "svc-1", instance_id=f"i-{n}")
        hub.receive("c", WSMessage.with_payload(MessageType.REGISTER, payload).to_json())
    hub.prune()
    assert [(s.instance_id, s.connection) for s in hub.services()] == [("i-49", "c")]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"credentials": [{"name": "a"}]}, r"credentials\[0\] \('a'\): give exactly one of"),
        (
            {"credentials": [{"name": "a", "token": "x"}, {"name": "b", "token": "x"}]},
            r"credentials\[1\] \('b'\): same token as 'a'",
        ),
        (
            {"credentials": [{"name": "a", "token": "x", "watch": ["a..b"]}]},
            r"credentials\[0\] \('a'\): watch pattern 'a..b'",
        ),
        (
            {"credentials": [{"name": "a", "token": "x", "regster": ["s"]}]},
            r"unknown key\(s\) \['regster'\]",
        ),
        ({"credentials": [{"name": "a", "token_sha256": "abc"}]}, "64 hex digits"),
        ({"creds": []}, "one key, 'credentials'"),
    ],
)
def test_a_bad_auth_document_is_refused_naming_the_entry(document: object, message: str) -> None:
    with pytest.raises(AuthFileError, match=message):
        Credentials.from_document(document, "auth.json")


def test_credentials_match_by_token_or_its_sha256() -> None:
    digest = hashlib.sha256(b"hashed-t").hexdigest()
    table = auth_table(a={"token": "plain-t"}, b={"token_sha256": digest, "watch": ["x.>"]})
    found_a, found_b = table.identify("plain-t"), table.identify("hashed-t")
    assert found_a is not None and found_a.name == "a"
    assert found_b is not None and found_b.may_watch("x.y.*")
    assert not found_b.may_watch("x") and not found_b.may_watch(">")
    assert table.identify("nope") is None


# --- over the wire -----------------------------------------------------------------------


async def http_get(
    port: int, path: str, headers: dict[str, str] | None = None, tls: ssl.SSLContext | None = None
) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=tls, server_hostname="localhost" if tls else None
    )
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), WAIT)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    parsed = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        parsed[key.strip().lower()] = value.strip()
    return int(status_line.split()[1]), parsed, body


async def raw_handshake(port: int, extra: list[str]) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [
        "GET /v1/coordination HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *extra,
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(4096), WAIT)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_two_authorization_headers_get_400_and_lowercase_bearer_gets_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Hub(port=0, token="s3cret") as hub:
        status, body = await raw_handshake(
            hub.port, ["Authorization: Bearer s3cret", "Authorization: Bearer s3cret"]
        )
        assert (status, body) == (400, b"turnout hub: more than one Authorization header\n")
        status, _ = await raw_handshake(hub.port, ["authorization: bearer s3cret"])
        assert status == 101
        assert "Traceback" not in caplog.text
        assert hub.protocol.refusals() == {"duplicate_credentials": 1}


async def test_a_go_style_client_authenticates_with_a_token_in_the_url() -> None:
    # What the when-v3 Go client sends: its own headers, the token only in the URL.
    async with Hub(port=0, token="s3cret") as hub:
        headers = {"X-Service-Name": "gosvc", "X-Service-ID": "go-1"}
        async with connect(f"{hub.url}?token=s3cret", additional_headers=headers) as go:
            await go.send(register("go-1", "gosvc").decode())
            answer = WSMessage.parse(await asyncio.wait_for(go.recv(), WAIT))
            assert answer.type is MessageType.REGISTERED
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{hub.url}?token=wrong")
        assert refused.value.response.status_code == 401
        assert refused.value.response.body == b"turnout hub: invalid token\n"


async def test_permissions_over_the_wire(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"credentials": [{"name": k, **v} for k, v in TABLE.items()]}))
    async with Hub(port=0, auth=path) as hub:
        alpha = CoordinatorConfig(hub.url, "svc", service_id="svc-a", token="alpha-t")
        with pytest.raises(HubRefusedError, match="may not register 'svc-a'"):
            await Coordinator(
                CoordinatorConfig(hub.url, "x", service_id="svc-a", token="beta-t")
            ).connect()
        # beta may watch nothing; alpha only coordination events
        with pytest.raises(InvalidStatus) as forbidden:
            await connect(f"{hub.watch_url}?subject=events.>&token=alpha-t")
        assert forbidden.value.response.status_code == 403
        assert b"may not watch 'events.>'" in forbidden.value.response.body
        async with (
            connect(f"{hub.watch_url}?subject=events.coordination.progress.>&token=alpha-t") as w,
            Coordinator(alpha) as coordinator,
        ):
            await until(lambda: hub.stats()["watchers"] == 1, "the watcher")
            coordinator.send_progress("wf-a", "x", 5.0)
            event = orjson.loads(await asyncio.wait_for(w.recv(), WAIT))
            assert event["data"]["service_id"] == "svc-a"
            credential = hub.protocol.credentials.identify("beta-t")  # type: ignore[union-attr]
            with pytest.raises(PermissionError, match="'beta' may not control service 'svc-a'"):
                await hub.pause("wf-a", credential=credential)
            ops = hub.protocol.credentials.identify("ops-t")  # type: ignore[union-attr]
            status = await hub.status("wf-a", credential=ops, timeout=WAIT)
            assert status.outcome is RequestOutcome.ANSWERED
        assert hub.stats()["refused"] >= 3


async def test_a_non_reading_watcher_is_closed_and_counted() -> None:
    async with Hub(port=0, watcher_buffer=64 * 1024, ping_interval=0.2) as hub:
        stalled_socket = socket.socket()
        stalled_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        stalled_socket.connect(("127.0.0.1", hub.port))
        stalled = await connect(
            f"{hub.watch_url}?subject=events.user.>", sock=stalled_socket, max_queue=1
        )
        stalled.transport.pause_reading()  # it reads nothing, ever
        try:
            await until(lambda: hub.stats()["watchers"] == 1, "the watcher")
            big = {"blob": "x" * 60_000}
            # Past what the kernel's socket buffers take: then the hub's own buffer fills.
            while hub.stats()["watcher_dropped"] < 10 and hub.stats()["watchers"]:
                hub.bus.emit(Event("user.big", data=big))
                await asyncio.sleep(0.001)
            await until(lambda: hub.stats()["watchers_closed_slow"] == 1, "the watcher closed")
            await until(lambda: hub.stats()["watchers"] == 0, "the watcher gone")
        finally:
            stalled.transport.abort()


async def test_a_watcher_that_never_answers_pings_is_closed_and_counted() -> None:
    # A ping is due every 0.5 s, and its pong within as long: an event loop stalled that
    # long on a loaded machine (hub and client share it here) would close the answering
    # watcher below too.
    async with Hub(port=0, ping_interval=0.5) as hub:
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
        writer.write(
            b"GET /v1/watch?subject=events.user.> HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert b" 101 " in await asyncio.wait_for(reader.readline(), WAIT)

        received = bytearray()

        async def read_never_answer() -> None:  # reads every byte, answers nothing
            while chunk := await reader.read(65536):
                received.extend(chunk)

        draining = asyncio.create_task(read_never_answer())
        try:
            await until(lambda: hub.stats()["watchers_closed_slow"] == 1, "the watcher closed")
            await until(lambda: hub.stats()["watchers"] == 0, "the watcher gone")
            await until(lambda: b"\x03\xf0watcher did not answer a ping" in received, "1008")
            # a watcher that answers stays
            async with connect(f"{hub.watch_url}?subject=events.user.>") as answering:
                await until(lambda: hub.stats()["watchers"] == 1, "the answering watcher")
                for _ in range(5):  # three of the hub's pings go by
                    await asyncio.wait_for(answering.ping(), WAIT)
                    await asyncio.sleep(0.3)
                assert hub.stats()["watchers_closed_slow"] == 1
        finally:
            draining.cancel()
            writer.close()


async def test_register_then_disconnect_clients_leave_the_tables() -> None:
    async with Hub(port=0, retention=0.05) as hub:
        for n in range(200):
            async with connect(hub.url, additional_headers={"X-Service-Name": "s"}) as raw:
                await raw.send(register(f"svc-{n}").decode())
                await asyncio.wait_for(raw.recv(), WAIT)
        await until(lambda: hub.stats()["services"] == 0, "the services to be pruned")
        assert hub.stats()["pruned_services"] == 200


async def test_stop_sends_every_disconnected_event_before_closing_watchers() -> None:
    hub = Hub(port=0)
    await hub.start()
    coordinators = [
        Coordinator(
            CoordinatorConfig(hub.url, "s", service_id=f"svc-{n}", reconnect_max_attempts=1)
        )
        for n in range(5)
    ]
    for c in coordinators:
        await c.connect()
    seen: list[str] = []
    async with connect(f"{hub.watch_url}?subject=events.coordination.disconnected.>") as watcher:
        await until(lambda: hub.stats()["watchers"] == 1, "the watcher")
        await hub.stop()
        with pytest.raises(ConnectionClosed):
            while True:
                seen.append(orjson.loads(await asyncio.wait_for(watcher.recv(), WAIT))["type"])
    assert sorted(seen) == [f"coordination.disconnected.svc-{n}._" for n in range(5)]
    for c in coordinators:
        await c.close()


async def test_a_hub_that_never_answers_register_is_dialled_again() -> None:
    dials: list[int] = []

    async def mute_then_answer(connection: ServerConnection) -> None:
        dials.append(1)
        message = WSMessage.parse(await connection.recv())
        if len(dials) >= 3:  # the third dial is answered
            reply = WSMessage.with_payload(
                MessageType.REGISTERED, RegisterPayload("svc"), id=message.id
            )
            await connection.send(reply.to_json().decode())
        await connection.wait_closed()

    async with serve(mute_then_answer, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        config = CoordinatorConfig(
            f"ws://127.0.0.1:{port}/v1/coordination",
            "svc",
            register_timeout=0.1,
            reconnect_initial_delay=0.01,
        )
        coordinator = Coordinator(config, open_timeout=WAIT)
        for n in range(5):
            coordinator.send_progress("wf", "a", float(n))
        await coordinator.connect()
        assert coordinator.is_registered
        assert len(dials) == 3
        assert coordinator.stats()["register_timeouts"] == 2
        await coordinator.close()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "hub.pem", directory / "hub.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls_serves_wss_and_https_and_clients_verify_it(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    async with Hub(port=0, token="s3cret", ssl=context) as hub:
        assert hub.url.startswith("wss://")
        config = CoordinatorConfig(
            hub.url, "svc", service_id="svc-1", token="s3cret", ca_file=str(cert)
        )
        async with Coordinator(config) as coordinator:
            assert coordinator.is_registered
        untrusted = CoordinatorConfig(hub.url, "svc", token="s3cret")
        with pytest.raises(ssl.SSLError):
            await Coordinator(untrusted).connect()
        client = ssl.create_default_context(cafile=str(cert))
        status, _, body = await http_get(hub.port, "/healthz", tls=client)
        assert status == 200 and orjson.loads(body)["status"] == "ok"


async def test_health_metrics_and_the_json_api() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    async with Hub(port=0, token="s3cret") as hub:
        config = CoordinatorConfig(hub.url, "svc", service_id="svc-1", token="s3cret")
        async with Coordinator(config) as coordinator:
            phases = coordinator.phases
            phases.register_workflow("wf-1")
            for p in (Phase.PRE_FLIGHT, Phase.PLANNING, Phase.EXECUTION):
                phases.transition_to("wf-1", p)
            await until(
                lambda: (
                    hub.protocol.workflow("wf-1") is not None
                    and hub.protocol.workflow("wf-1").phase == "execution"
                ),
                "wf-1",
            )  # type: ignore[union-attr]
            await hub.ping("svc-1", timeout=WAIT)

            status, headers, body = await http_get(hub.port, "/healthz")
            assert status == 200 and headers["content-type"] == "application/json"
            assert orjson.loads(body) == {
                "status": "ok",
                "connections": 1,
                "services": 1,
                "workflows": 1,
                "watchers": 0,
            }
            for path in ("/metrics", "/v1/services", "/v1/workflows"):
                status, headers, body = await http_get(hub.port, path)
                assert status == 401 and b"missing bearer token" in body
            bearer = {"Authorization": "Bearer s3cret"}
            status, headers, body = await http_get(hub.port, "/metrics", bearer)
            assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
            families = {f.name: f for f in text_string_to_metric_families(body.decode())}
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for f in families.values()
                for s in f.samples
            }
            assert samples[("turnout_hub_connections", ())] == 1
            assert samples[("turnout_hub_workflows", (("phase", "execution"),))] == 1
            assert samples[("turnout_hub_frames_received_total", (("type", "phase_changed"),))] >= 3
            assert samples[("turnout_hub_frames_sent_total", (("type", "ping"),))] == 1
            assert samples[("turnout_hub_requests_total", (("outcome", "answered"),))] == 1
            assert samples[("turnout_hub_refusals_total", (("reason", "missing_token"),))] == 3
            assert ("turnout_bus_events_total", (("counter", "published"),)) in samples

            status, _, body = await http_get(hub.port, "/v1/services?token=s3cret")
            (service,) = orjson.loads(body)["services"]
            assert (service["service_id"], service["connected"]) == ("svc-1", True)
            status, _, body = await http_get(
                hub.port, "/v1/workflows?phase=execution&service=svc-1", bearer
            )
            assert [w["workflow_id"] for w in orjson.loads(body)["workflows"]] == ["wf-1"]
            status, _, body = await http_get(hub.port, "/v1/workflows?phase=paused", bearer)
            assert orjson.loads(body)["workflows"] == []
            status, _, body = await http_get(hub.port, "/v1/workflows/wf-1", bearer)
            assert orjson.loads(body)["phase"] == "execution"
            status, _, _ = await http_get(hub.port, "/v1/workflows/nope", bearer)
            assert status == 404

            async with connect(hub.base_url + "/v1/control?token=s3cret") as operator:
                await operator.send(
                    orjson.dumps(
                        {"id": 1, "command": "pause", "workflow_id": "wf-1", "reason": "r"}
                    ).decode()
                )
                answer = orjson.loads(await asyncio.wait_for(operator.recv(), WAIT))
                assert (answer["id"], answer["outcome"]) == (1, "answered")
                assert answer["response"]["payload"]["to"] == "pausing"
                await operator.send(
                    orjson.dumps({"id": 2, "command": "pause", "workflow_id": "ghost"}).decode()
                )
                answer = orjson.loads(await asyncio.wait_for(operator.recv(), WAIT))
                assert answer == {"id": 2, "outcome": "error", "error": "workflow not found: ghost"}


def test_a_bad_auth_file_stops_turnout_hub_naming_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"credentials": [{"name": "ops", "token": "t", "control": "*"}]}))
    done = subprocess.run(
        [sys.executable, "-m", "turnout", "hub", "--port", "0", "--auth", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "credentials[0] ('ops'): 'control' must be a list" in done.stderr
