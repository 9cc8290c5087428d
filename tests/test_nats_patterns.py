"""A wildcard character inside a token (``svc-*``) on a NATS-backed bus: NATS has no such
wildcard and nats-py refuses to subscribe to it, so the bus refuses it at once with a typed
error naming the token (it used to log the failure and deliver only local events), and a
hub on such a bus refuses a watcher asking for it with HTTP 400 and the reason."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from waiting import WAIT, until
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from turnout import Bus, InvalidSubjectError
from turnout.coordination.auth import Credentials
from turnout.events import Event
from turnout.nats import connect
from turnout.testing.nats_server import NatsServer
from turnout.ws import Hub

IN_TOKEN = ["events.svc-x-*", "events.*x", "events.a>", "events.svc.>>", "events.*.x*.>"]


@pytest.mark.parametrize("pattern", IN_TOKEN)
async def test_a_nats_bus_refuses_a_wildcard_inside_a_token(
    nats_server: NatsServer, pattern: str
) -> None:
    async with await connect(nats_server.url) as bus:
        token = next(t for t in pattern.split(".") if t not in ("*", ">") and set(t) & {"*", ">"})
        with pytest.raises(InvalidSubjectError, match="NATS") as refused:
            bus.subscribe(pattern, lambda event: None)
        assert refused.value.subject == pattern
        assert repr(token) in refused.value.reason
        with pytest.raises(InvalidSubjectError):
            bus.stream(pattern)
        with pytest.raises(InvalidSubjectError):
            bus.subscribe(pattern, lambda message: None, "workers", raw=True)
        with pytest.raises(InvalidSubjectError):
            bus.check_pattern(pattern)
        assert bus.stats()["subscriptions"] == 0  # nothing half-registered


async def test_whole_token_wildcards_still_cross_nats(nats_server: NatsServer) -> None:
    async with (
        await connect(nats_server.url, node="r") as receiver,
        await connect(nats_server.url, node="s") as sender,
    ):
        got: list[Event] = []
        receiver.subscribe("events.*", got.append)
        await receiver.flush()
        # A literal type with a '*' in it is still published (NATS takes it as a literal
        # token) and reaches a whole-token wildcard.
        sender.emit(Event("svc-x-*"))
        await sender.flush()
        await until(lambda: len(got) == 1, "the event across NATS")
        assert got[0].type == "svc-x-*"


def test_the_embedded_bus_takes_such_a_token_literally() -> None:
    with Bus() as bus:
        got: list[Event] = []
        bus.check_pattern("events.svc-x-*")
        bus.subscribe("events.svc-x-*", got.append)
        bus.emit(Event("svc-x-1"))
        bus.emit(Event("svc-x-*"))
        assert [e.type for e in got] == ["svc-x-*"]


async def test_a_hub_on_nats_refuses_such_a_watcher_with_400(nats_server: NatsServer) -> None:
    async with await connect(nats_server.url, node="hub") as bus, Hub(port=0, bus=bus) as hub:
        with pytest.raises(InvalidStatus) as refused:
            await ws_connect(f"{hub.watch_url}?subject=events.>&subject=events.svc-x-*")
        assert refused.value.response.status_code == 400
        body = refused.value.response.body
        assert b"events.svc-x-*" in body and b"'svc-x-*'" in body and b"NATS" in body
        assert hub.stats()["watchers"] == 0
        # A whole-token pattern is served.
        async with ws_connect(f"{hub.watch_url}?subject=events.*") as watcher:
            await until(lambda: hub.stats()["watchers"] == 1, "the watcher")
            bus.emit(Event("svc-x-1"))
            event: dict[str, Any] = orjson.loads(await asyncio.wait_for(watcher.recv(), WAIT))
            assert event["type"] == "svc-x-1"


async def test_a_hub_on_nats_refuses_credentials_allowed_such_a_pattern(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    path = tmp_path / "auth.json"
    allowed = {"name": "ops", "token": "t", "watch": ["events.coordination.>", "events.svc-*"]}
    path.write_text(json.dumps({"credentials": [allowed]}))
    async with await connect(nats_server.url) as bus:
        with pytest.raises(ValueError, match=r"credential 'ops' may watch 'events.svc-\*'.*NATS"):
            Hub(port=0, bus=bus, auth=path)
        assert bus.stats()["subscriptions"] == 0
    async with Hub(port=0, auth=Credentials.load(path)) as hub:  # the embedded bus takes it
        assert hub.protocol.credentials is not None


async def test_an_embedded_hub_serves_such_a_watcher() -> None:
    async with Hub(port=0) as hub, ws_connect(f"{hub.watch_url}?subject=events.svc-x-*") as w:
        await until(lambda: hub.stats()["watchers"] == 1, "the watcher")
        hub.bus.emit(Event("svc-x-1"))
        hub.bus.emit(Event("svc-x-*"))
        event: dict[str, Any] = orjson.loads(await asyncio.wait_for(w.recv(), WAIT))
        assert event["type"] == "svc-x-*"
