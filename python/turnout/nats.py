"""The event bus on NATS (extra ``turnout[nats]``).

``await connect(servers, node="n1")`` returns a :class:`NatsBus`, a :class:`turnout.Bus`
whose transport is NATS: the same ``emit``/``subscribe``/``stream``/``history`` API and
delivery rules as the embedded bus, across processes and machines. On the wire every event
is jb-mesh's envelope (``Event.to_json()``, Go's bytes) on ``"events." + type``, so Go
jb-mesh nodes and plain NATS clients on the same server read turnout's events and turnout
reads theirs.

- Local handlers are routed by the bus's Rust index; NATS only sees the interest, shared
  (one NATS subscription serves every local pattern it covers); queue groups are NATS
  queue groups, balanced across processes. Threads, ordering and subscription sharing are
  described in :mod:`turnout.transport.nats`.
- ``persist=PersistConfig()`` keeps events in a JetStream stream on ``events.>`` (file
  storage) and serves ``history``/``history_since`` from it
  (:mod:`turnout.transport.nats._history`).
  Emits are then JetStream publishes: each is acknowledged by the server, and the counts of
  ``acked``, ``ack_errors`` and ``ack_timeouts`` are in ``stats()["transport"]``. What
  JetStream acknowledged is stored (on ``replicas`` servers) and is never lost;
  ``await bus.flush()`` waits for the acknowledgements of everything emitted before it.
- Reconnects are nats-py's, forever, every ``reconnect_time_wait`` seconds; subscriptions
  resume on the new connection; publishes are held in the bounded outbound queue while
  disconnected and written after, and JetStream publishes not acknowledged are sent
  again (stored once, by their ``Nats-Msg-Id``).
"""

from __future__ import annotations

import asyncio
import importlib.util
from datetime import datetime
from typing import Any

# Without the extra, say which command installs it instead of a bare ModuleNotFoundError.
if importlib.util.find_spec("nats") is None:
    raise ImportError("turnout.nats needs nats-py: pip install 'turnout[nats]'", name="nats")

from turnout._errors import InvalidSubjectError
from turnout.bus import Bus, Subscription
from turnout.events import SUBJECT_PREFIX, Event
from turnout.transport.nats import (
    DEFAULT_ACK_WAIT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_BLOCK,
    DEFAULT_MAX_OUTBOUND,
    NatsConnectError,
    NatsTransport,
)
from turnout.transport.nats._history import JetStreamHistory, PersistConfig, PersistError

__all__ = [
    "JetStreamHistory",
    "NatsBus",
    "NatsConnectError",
    "PersistConfig",
    "PersistError",
    "connect",
    "connect_sync",
]


class NatsBus(Bus):
    """A :class:`turnout.Bus` on NATS, made by :func:`connect`. Adds :meth:`flush`, the
    async history queries, and the transport's counters under ``stats()["transport"]``."""

    def __init__(
        self,
        node: str,
        transport: NatsTransport,
        history: JetStreamHistory | None,
        *,
        cache_size: int = 1024,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(
            node, history=history, transport=transport, cache_size=cache_size, loop=loop
        )
        self.nats = transport
        self.persist = None if history is None else history.config
        self._jetstream = history

    def check_pattern(self, pattern: str) -> None:
        """:meth:`turnout.Bus.check_pattern`, which here also refuses a token holding
        ``*`` or ``>`` beside other characters (``svc-*``, ``a>``). NATS has no wildcard
        inside a token: the server would take ``svc-*`` as a literal token and nats-py
        refuses to subscribe to it, so the subscription could never get what its pattern
        seems to ask for. Use whole-token wildcards (``events.*``) and filter in the
        handler."""
        super().check_pattern(pattern)
        for token in pattern.split("."):
            if token not in ("*", ">") and ("*" in token or ">" in token):
                raise InvalidSubjectError(
                    pattern,
                    f"token {token!r} holds a wildcard character among others: NATS "
                    "wildcards are whole tokens ('*' one token, '>' all the rest), and a "
                    "NATS bus cannot subscribe to such a token",
                )

    def _register(self, sub: Subscription[Any]) -> None:
        # Before anything is registered: a refused pattern leaves no trace.
        self.check_pattern(sub.pattern)
        super()._register(sub)

    async def flush(self, timeout: float | None = 10.0) -> None:
        """Waits until every message published before is written to NATS, acknowledged
        by JetStream when persisted (or counted as refused or timed out), and what NATS
        routes back to this bus for it (queue groups) has arrived. Raises
        :class:`TimeoutError` after ``timeout`` seconds."""
        await self.nats.flush(timeout)

    def flush_sync(self, timeout: float | None = 10.0) -> None:
        """:meth:`flush` for sync code (on an event loop's thread it blocks that loop
        meanwhile). Refused on the NATS I/O thread, where sync handlers of received
        messages run."""
        self.nats.flush_sync(timeout)

    async def ahistory(self, filter: str, limit: int = 50, *, newest: bool = False) -> list[Event]:
        """:meth:`history` without blocking the event loop."""
        if self._jetstream is None:
            return self.history(filter, limit, newest=newest)
        return await self._jetstream.ahistory(filter, limit, newest=newest)

    async def ahistory_since(
        self, filter: str, since: datetime, limit: int = 50, *, newest: bool = False
    ) -> list[Event]:
        """:meth:`history_since` without blocking the event loop."""
        if self._jetstream is None:
            return self.history_since(filter, since, limit, newest=newest)
        return await self._jetstream.ahistory_since(filter, since, limit, newest=newest)

    def stats(self) -> dict[str, Any]:
        """The bus's counters (:meth:`turnout.Bus.stats`) plus ``transport``: the NATS
        transport's (:meth:`turnout.transport.nats.NatsTransport.stats`)."""
        return {**super().stats(), "transport": self.nats.stats()}

    def __repr__(self) -> str:
        url = self.nats.stats()["connected_url"] or "disconnected"
        return f"<NatsBus node={self.node!r} {url} {'closed' if self.closed else 'open'}>"


# The options of connect() that are turnout's own; the others go to nats-py.
_OWN_OPTIONS = {
    "connect_timeout": DEFAULT_CONNECT_TIMEOUT,
    "ack_wait": DEFAULT_ACK_WAIT,
    "max_outbound": DEFAULT_MAX_OUTBOUND,
    "max_block": DEFAULT_MAX_BLOCK,
    "reconnect_time_wait": 0.5,
}


def _transport(
    servers: str | list[str], node: str, persist: PersistConfig | None, options: dict[str, Any]
) -> NatsTransport:
    if persist is not None and not isinstance(persist, PersistConfig):
        raise TypeError(f"persist must be a PersistConfig or None, not {persist!r}")
    own = {name: options.pop(name, default) for name, default in _OWN_OPTIONS.items()}
    return NatsTransport(
        servers,
        name=node,
        ack_prefix=None if persist is None else SUBJECT_PREFIX,
        options=options,
        **own,
    )


async def connect(
    servers: str | list[str],
    node: str = "",
    persist: PersistConfig | None = None,
    *,
    cache_size: int = 1024,
    loop: asyncio.AbstractEventLoop | None = None,
    **options: Any,
) -> NatsBus:
    """Connects a bus named ``node`` to the NATS servers ``servers`` (a URL or a list).

    turnout's options: ``connect_timeout`` (5 s): no server answering within it raises
    :class:`NatsConnectError`; ``ack_wait`` (5 s): how long (connected) a JetStream publish
    may go without an acknowledgement before it is counted as timed out;
    ``max_outbound`` (65,536): the bound of the queue of messages not yet written
    (publishers wait for room, up to ``max_block``, 60 s, then the message is refused and
    counted); ``reconnect_time_wait`` (0.5 s) between reconnect attempts. ``loop`` runs
    ``async def`` handlers subscribed from outside any event loop (default: the loop
    calling this). The other ``options`` go to nats-py's ``connect`` (``user``,
    ``password``, ``token``, ``tls``...); its callbacks (``reconnected_cb``,
    ``disconnected_cb``, ``error_cb``, ``closed_cb``...) are called after turnout's own,
    never instead of them. With ``persist``, raises :class:`PersistError`
    when the JetStream stream cannot be set up. Without it, ``history`` is the bus's own
    in-memory record of what it emitted, as on the embedded bus. Close the bus with
    ``await bus.aclose()``."""
    transport = _transport(servers, node, persist, options)
    await transport.open()
    try:
        history = None
        if persist is not None:
            history = JetStreamHistory(transport, persist)
            await transport.run(history.ensure_stream())
        return NatsBus(
            node,
            transport,
            history,
            cache_size=cache_size,
            loop=loop or asyncio.get_running_loop(),
        )
    except BaseException:
        await transport.aclose()
        raise


def connect_sync(
    servers: str | list[str],
    node: str = "",
    persist: PersistConfig | None = None,
    *,
    cache_size: int = 1024,
    loop: asyncio.AbstractEventLoop | None = None,
    **options: Any,
) -> NatsBus:
    """:func:`connect` for code without an event loop, with the same options (close the
    bus with ``bus.close()``)."""
    transport = _transport(servers, node, persist, options)
    transport.open_sync()
    try:
        history = None
        if persist is not None:
            history = JetStreamHistory(transport, persist)
            transport.run_sync(history.ensure_stream(), transport.connect_timeout + 10.0)
        return NatsBus(node, transport, history, cache_size=cache_size, loop=loop)
    except BaseException:
        transport.close()
        raise
