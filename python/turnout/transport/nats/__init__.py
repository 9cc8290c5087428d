"""The NATS transport: a :class:`turnout.Bus` attached to NATS through nats-py.

One concept per module: :mod:`._io` (the I/O thread, its event loop and the ordered
outbound queue: :class:`NatsTransport`), :mod:`._interest` (which NATS subscriptions carry
the bus's interest and which copy of a message counts; pure logic), :mod:`._acks`
(JetStream acknowledgements) and :mod:`._history` (the history read from a JetStream
stream). :mod:`turnout.nats` is the public face.
"""

from turnout.transport.nats._io import (
    DEFAULT_ACK_WAIT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_BLOCK,
    DEFAULT_MAX_OUTBOUND,
    NatsConnectError,
    NatsTransport,
)

__all__ = [
    "DEFAULT_ACK_WAIT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_BLOCK",
    "DEFAULT_MAX_OUTBOUND",
    "NatsConnectError",
    "NatsTransport",
]
