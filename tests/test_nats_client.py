"""The nats-py client turnout's connections are made of: its flush() is a barrier for
the commands sent before it (nats-py's own writes the PING ahead of them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from waiting import until

from turnout.testing.nats_server import NatsServer

pytest.importorskip("nats")

from nats.aio.client import Client

from turnout.transport.nats._client import OrderedClient


class RecordingProxy:
    """A loopback TCP proxy to a real nats-server that keeps every byte a client sends,
    recorded before it is passed on (so whatever reached the server is in ``sent``)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sent = bytearray()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"nats://127.0.0.1:{port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        server_in, server_out = await asyncio.open_connection("127.0.0.1", self.target_port)
        for pipe in (
            self._pipe(client_in, server_out, record=True),
            self._pipe(server_in, client_out, record=False),
        ):
            task = asyncio.create_task(pipe)
            self._pipes.add(task)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, record: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if record:
                    self.sent += data
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def proxy(nats_server: NatsServer) -> AsyncIterator[RecordingProxy]:
    port = int(nats_server.url.rsplit(":", 1)[1])
    recording = RecordingProxy(port)
    await recording.start()
    try:
        yield recording
    finally:
        await recording.stop()


def sub_then_ping(sent: bytes, subject: str) -> bool:
    """Whether the SUB of ``subject`` reached the server before the last PING."""
    sub = sent.find(f"SUB {subject} ".encode())
    return 0 <= sub < sent.rfind(b"PING\r\n")


async def subscribe_and_flush(client: Client, url: str, subject: str) -> None:
    await client.connect(servers=[url], allow_reconnect=False)
    try:
        await client.subscribe(subject)
        await client.flush()
    finally:
        await client.close()


async def test_flush_writes_the_commands_before_it_ahead_of_its_ping(
    proxy: RecordingProxy,
) -> None:
    await subscribe_and_flush(OrderedClient(), proxy.url, "ordered.subject")
    assert sub_then_ping(bytes(proxy.sent), "ordered.subject")


async def test_nats_py_alone_writes_its_ping_ahead_of_a_pending_subscription(
    proxy: RecordingProxy,
) -> None:
    # The defect OrderedClient exists for. When a nats-py release fixes it, this test
    # fails, and OrderedClient can go (with a floor on that release).
    await subscribe_and_flush(Client(), proxy.url, "plain.subject")
    assert not sub_then_ping(bytes(proxy.sent), "plain.subject")


async def test_a_flushed_subscription_of_the_transport_takes_the_next_message(
    nats_server: NatsServer,
) -> None:
    # End to end on the bus: subscribe, flush, and another connection's message is
    # heard, every time (the plain client missed about one in thirty under load).
    from turnout import Event
    from turnout.nats import connect

    publisher = await connect(nats_server.url, node="pub")
    try:
        for round_number in range(20):
            listener = await connect(nats_server.url, node="sub")
            try:
                heard: list[Event] = []
                kind = f"ordered.r{round_number}"
                listener.subscribe(f"events.{kind}", heard.append)
                await listener.flush()
                publisher.emit(Event(kind, "", None, {"n": round_number}))
                await publisher.flush()
                # A message that found no subscription is gone: this would time out.
                await until(lambda heard=heard: heard, f"round {round_number}'s event")
                assert [e.data for e in heard] == [{"n": round_number}]
            finally:
                await listener.aclose()
    finally:
        await publisher.aclose()
