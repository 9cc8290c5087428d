"""The nats-py client the suite's interop tests talk to NATS with, as a plain user would,
except that its flush() follows the subscriptions made before it: nats-py's own writes
its PING ahead of them, so a message published right after could find no subscriber
(see turnout.transport.nats._client)."""

from __future__ import annotations

from nats.aio.client import Client

from turnout.transport.nats._client import OrderedClient


async def connect_plain(servers: str | list[str]) -> Client:
    client = OrderedClient()
    await client.connect(servers=[servers] if isinstance(servers, str) else servers)
    return client
