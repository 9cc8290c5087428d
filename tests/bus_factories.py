"""Bus factories, so the bus's semantic tests run on the embedded bus and on NATS alike.

A factory is called like ``Bus(node, history=..., loop=...)``. The NATS one connects to a
real nats-server (the session's) with JetStream persistence, so history queries go
through JetStream; the store a test passes (``history=MemoryHistory(...)``) is the
embedded bus's and is left out there. ``settle(bus)`` / ``await asettle(bus)`` wait until
what NATS routes back to the bus (queue groups) has arrived: nothing to wait for on the
embedded bus.
"""

from __future__ import annotations

from typing import Any

from turnout.bus import Bus
from turnout.nats import NatsBus, PersistConfig, connect_sync
from turnout.testing.nats_server import NatsServer

# Short enough that a test waiting on a lost acknowledgement is not slow.
TEST_ACK_WAIT = 2.0


class EmbeddedBuses:
    """``Bus(...)`` itself."""

    kind = "embedded"

    def __call__(self, node: str = "", **options: Any) -> Bus:
        return Bus(node, **options)

    def settle(self, bus: Bus) -> None:
        """Nothing in flight on the embedded bus."""

    async def asettle(self, bus: Bus) -> None:
        """Nothing in flight on the embedded bus."""

    def close_all(self) -> None:
        """The tests close their buses."""


class NatsBuses:
    """Buses on one NATS server, with JetStream history, emptied for each test."""

    kind = "nats"

    def __init__(self, server: NatsServer) -> None:
        self.server = server
        self.made: list[NatsBus] = []

    def __call__(self, node: str = "", **options: Any) -> NatsBus:
        options.pop("history", None)
        bus = connect_sync(
            self.server.url,
            node,
            persist=PersistConfig(),
            ack_wait=TEST_ACK_WAIT,
            **options,
        )
        if not self.made:  # a fresh history for the test
            bus.nats.run_sync(_purge(bus), 10.0)
        self.made.append(bus)
        return bus

    def settle(self, bus: Bus) -> None:
        assert isinstance(bus, NatsBus)
        bus.flush_sync()

    async def asettle(self, bus: Bus) -> None:
        assert isinstance(bus, NatsBus)
        await bus.flush()

    def close_all(self) -> None:
        for bus in self.made:
            bus.close()


async def _purge(bus: NatsBus) -> None:
    assert bus.persist is not None
    await bus.nats.client.jsm().purge_stream(bus.persist.stream_name)
