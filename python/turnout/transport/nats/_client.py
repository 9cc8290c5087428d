"""The nats-py client every turnout connection is made of: one whose ``flush()`` is a
barrier for what was sent before it.

nats-py's ``Client.flush()`` writes its PING to the socket at once, while the commands
issued just before it (a SUB, an UNSUB, a PUB) may still wait in the client's pending
buffer for its flusher task. The PING then overtakes them: the server answers PONG
before it has read them, and ``flush()`` returns while a fresh subscription is not yet
registered. A message another connection publishes right after finds no interest: it is
dropped, or a request gets "no responders" back. Under load that happened to about one
subscribe-then-flush in thirty here. Writing the pending buffer ahead of the PING gives
``flush()`` the order it promises; the transport's ``barrier()`` and the fleet's
request routing both rely on it.
"""

from __future__ import annotations

import asyncio

from nats.aio.client import Client


class OrderedClient(Client):
    """A nats-py client whose PING follows every command sent before it."""

    def write_pending(self) -> None:
        """Writes the commands waiting for the flusher task to the socket now, in order
        (nothing while disconnected: nats-py sends them again on reconnect)."""
        transport = self._transport
        if self.is_connected and transport is not None and self._pending:
            transport.writelines(self._pending[:])
            self._pending = []
            self._pending_data_size = 0

    async def _send_ping(self, future: asyncio.Future[bool] | None = None) -> None:
        self.write_pending()
        await super()._send_ping(future)
