"""The NATS transport: a :class:`turnout.Bus` attached to NATS through nats-py.

Threads. The nats-py clients run on a dedicated I/O thread with its own event loop, so the
bus works the same from plain threads and from any event loop:

- ``publish`` (called by the bus under its dispatch lock, from any thread) only appends to
  one ordered outbound queue and wakes the I/O loop; the loop writes the queue to NATS in
  that order. Subscription changes go through the same queue, so they keep their order
  relative to publishes. The queue is bounded (``max_outbound``) with the ``"block"``
  policy: a publisher on a thread without an event loop waits for room (backpressure while
  the server is slow or unreachable); one on an event loop's thread (the I/O thread
  included) cannot wait, and what it publishes beyond the bound is taken and counted as
  ``overfilled``. While the client is
  disconnected the queue is held, not written, so nothing queued is lost to nats-py's
  reconnect buffer limit. A publisher that waited ``max_block`` seconds without room
  gets :class:`ConnectionError` (the bus logs it and counts it in ``transport_errors``;
  here it is ``refused``), so closing a bus never hangs on a server that stays away.
- Messages from NATS are handed to the bus's ``receive`` on the I/O thread as they are
  parsed, in wire order, before nats-py would queue them per subscription: sync handlers of
  received messages run on the I/O thread (keep them short), async handlers and streams get
  them through their bounded mailboxes on their own loops.
- Blocking calls (``flush_sync``, the sync history queries) wait on the I/O loop from any
  other thread; on the I/O thread itself they refuse (:class:`RuntimeError`) rather than
  deadlock.

Connections. Two clients: one publishes and carries plain interest, with ``no_echo`` (this
bus already delivered its own publishes to its plain handlers, as the embedded bus does);
the other only carries queue-group interest, with echo, so NATS picks one member of a group
among all processes, this one included (``owns_queue_groups``).

Interest. Which NATS subscriptions carry the bus's interest, and which copy of a message
counts where they overlap or one takes over from others, is decided in
:mod:`._interest`; this module only subscribes, unsubscribes and confirms as it says.
Subscriptions made in a row reach the I/O loop together and are laid out together.

Persistence. With ``ack_prefix`` set (by :func:`turnout.nats.connect` with ``persist``),
messages on subjects starting with it (``events.``) are published as JetStream publishes,
acknowledged, counted and sent again as :mod:`._acks` describes. :meth:`flush` waits until
everything handed over before it has been written, acknowledged or given up on, and
until NATS has sent back what it routes to this bus for it.

Slow consumers. Received messages are not queued inside nats-py, so its per-subscription
pending limits (where plain nats-py drops messages as a slow consumer) do not apply; the
bounded mailboxes of async handlers and streams do, with their counters in the bus's
stats. Every nats-py error callback (slow consumer, server errors, lost connections) is
logged and counted in :meth:`stats`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from nats.aio.client import Client
from nats.errors import ProtocolError, SlowConsumerError
from nats.protocol.parser import Parser

from turnout._core import NatsFrames
from turnout.events import Event
from turnout.transport import Receive
from turnout.transport.nats._acks import Acks
from turnout.transport.nats._client import OrderedClient
from turnout.transport.nats._interest import PlainInterest, QueueInterest

__all__ = ["NatsConnectError", "NatsTransport"]

logger = logging.getLogger("turnout.nats")

T = TypeVar("T")

DEFAULT_MAX_OUTBOUND = 65_536
DEFAULT_MAX_BLOCK = 60.0
DEFAULT_ACK_WAIT = 5.0
DEFAULT_CONNECT_TIMEOUT = 5.0
# How many queued operations the I/O loop writes before letting reads run.
_WRITE_BATCH = 512
# How long the I/O loop lets a burst of subscriptions gather before subscribing on NATS.
_SUBSCRIBE_COALESCE_SECONDS = 0.002
# How long a taken-over subscription stays after the server surely has the one taking
# over: a publisher's connection that matched a message against the server's interest
# before the new subscription existed delivers it on the old one only, and the server
# drops it if the old one is gone by then. That publisher matched before our first PONG,
# so this only has to outlast its stall between matching and delivering (seen under load).
_HANDOVER_GRACE_SECONDS = 0.05
# How often a blocked publisher rechecks that the transport is still open.
_ROOM_CHECK_SECONDS = 0.1

#: nats-py's callbacks of connection events: turnout has its own for some, and calls the
#: user's after them.
EVENT_CALLBACKS = (
    "error_cb",
    "disconnected_cb",
    "reconnected_cb",
    "closed_cb",
    "discovered_server_cb",
    "lame_duck_mode_cb",
)

# Outbound operations.
_PUBLISH = 0
_ADD = 1
_REMOVE = 2


class NatsConnectError(ConnectionError):
    """No NATS server of the list could be reached in time."""


# Where a run of routed messages goes: (sid, subject, payload) each.
_RouteRun = Callable[[list[tuple[int, str, bytes]]], None]


class _FrameParser(Parser):
    """nats-py's parser behind the core's frame reader: ``MSG`` frames on the
    transport's subscriptions come out of Rust as runs of ``(sid, subject, payload)``
    and go to ``route_run`` at once; every other frame is handed whole to nats-py's own
    parser (which then never holds a partial frame)."""

    def __init__(self, client: Client, route_run: _RouteRun) -> None:
        self.frames = NatsFrames()
        self._route_run = route_run
        super().__init__(client)

    def reset(self) -> None:
        super().reset()
        self.frames.reset()

    async def parse(self, data: bytes = b"") -> None:
        try:
            items = self.frames.feed(data)
        except ValueError as exc:  # nats-py drops the connection and reconnects
            raise ProtocolError(str(exc)) from exc
        parse = super().parse
        route_run = self._route_run
        for item in items:
            if isinstance(item, bytes):
                await parse(item)
            else:
                route_run(item)


class _RoutingClient(OrderedClient):
    """A nats-py client whose messages on the transport's subscriptions (routed by
    :class:`_FrameParser`) go to the transport as they are read, instead of being
    queued per subscription for a task each."""

    def __init__(self, route_run: _RouteRun) -> None:
        super().__init__()
        self._ps = self.turnout_parser = _FrameParser(self, route_run)


class NatsTransport:
    """Carries a bus's messages over NATS; see the module docstring. Made and opened by
    :func:`turnout.nats.connect`."""

    remote = True
    wants_bytes = True
    owns_queue_groups = True

    def __init__(
        self,
        servers: str | list[str],
        *,
        name: str = "",
        ack_prefix: str | None = None,
        ack_wait: float = DEFAULT_ACK_WAIT,
        max_outbound: int = DEFAULT_MAX_OUTBOUND,
        max_block: float = DEFAULT_MAX_BLOCK,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        reconnect_time_wait: float = 0.5,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        if not self.servers:
            raise ValueError("servers must name at least one NATS URL")
        if max_outbound < 1:
            raise ValueError(f"max_outbound must be >= 1, not {max_outbound}")
        self.name = name
        self.ack_prefix = ack_prefix
        self.ack_wait = ack_wait
        self.max_outbound = max_outbound
        self.max_block = max_block
        self.connect_timeout = connect_timeout
        self.reconnect_time_wait = reconnect_time_wait
        self._options = dict(options or {})
        for name in EVENT_CALLBACKS:
            callback = self._options.get(name)
            if callback is not None and not callable(callback):
                raise TypeError(f"{name} must be a function, not {callback!r}")
        self._receive: Receive | None = None
        self._receive_run: _RouteRun | None = None

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run_loop, name=f"turnout-nats-{name or 'bus'}", daemon=True
        )
        self._pub = _RoutingClient(self._route_plain)
        self._queue_client = _RoutingClient(self._route_queue)
        self._pub_frames = self._pub.turnout_parser.frames
        self._queue_frames = self._queue_client.turnout_parser.frames

        # The outbound queue (any thread appends; the I/O loop writes it).
        self._outbound: deque[tuple[Any, ...]] = deque()
        self._write_scheduled = False
        self._writer: asyncio.Task[None] | None = None
        self._room = threading.Condition()
        self._written_waiters: list[asyncio.Future[None]] = []

        # Interest and acknowledgements, touched only on the I/O loop.
        self._plain = PlainInterest()
        self._queues = QueueInterest()
        self._nats_subs: dict[int, Any] = {}  # sid -> nats-py subscription
        self._queue_subs_unconfirmed = False
        self._ack_sid = -1
        self._acks: Acks | None = None
        self._ack_sweeper: asyncio.Task[None] | None = None

        self._closed = False
        self._counters = dict.fromkeys(
            (
                "published",
                "received",
                "overfilled",
                "refused",
                "publish_errors",
                "errors",
                "slow_consumers",
                "disconnects",
                "reconnects",
            ),
            0,
        )

    # -- the I/O thread ---------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The I/O thread's event loop."""
        return self._loop

    def on_io_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Runs ``coro`` on the I/O loop; the future is usable from any thread. Raises
        :class:`ConnectionError` once the transport is closed."""
        if not self._thread.is_alive() or self._loop.is_closed():
            coro.close()
            raise ConnectionError("the NATS transport is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run_sync(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        """Runs ``coro`` on the I/O loop and waits for it; refused on the I/O thread."""
        if self.on_io_thread():
            coro.close()
            raise RuntimeError(
                "a blocking NATS call cannot run on the NATS I/O thread (in a sync handler "
                "of a received message); use the async form from an event loop"
            )
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"NATS call did not finish within {timeout} s") from None

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Awaits ``coro`` run on the I/O loop, from any event loop (or that one)."""
        if self.on_io_thread():
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    @property
    def connected(self) -> bool:
        return bool(self._pub.is_connected)

    @property
    def client(self) -> Client:
        """The publishing nats-py client (use it on :attr:`loop` only)."""
        return self._pub

    # -- opening ----------------------------------------------------------------------

    async def open(self) -> None:
        """Starts the I/O thread and connects both clients; raises
        :class:`NatsConnectError` if no server answers within ``connect_timeout``."""
        self._thread.start()
        try:
            await self.run(self._connect_all())
        except BaseException:
            await self.run(self._close_clients())
            await asyncio.to_thread(self._stop_thread)
            raise

    def open_sync(self) -> None:
        """:meth:`open` for a thread without a running event loop."""
        self._thread.start()
        try:
            self.run_sync(self._connect_all(), None)
        except BaseException:
            self.run_sync(self._close_clients(), None)
            self._stop_thread()
            raise

    async def _connect_all(self) -> None:
        await self._connect(self._pub, no_echo=True, role="pub")
        await self._connect(self._queue_client, no_echo=False, role="queue")
        if self.ack_prefix is not None:
            acks = self._acks = Acks(self._pub.new_inbox(), self.ack_wait, self._send_persisted)
            sub = await self._pub.subscribe(acks.inbox + ".*")
            self._ack_sid = sub._id
            self._pub_frames.route(sub._id)
            self._ack_sweeper = self._loop.create_task(acks.sweep(lambda: self.connected))

    async def _connect(self, client: _RoutingClient, *, no_echo: bool, role: str) -> None:
        last_error: list[BaseException] = []

        async def error_cb(exc: Exception) -> None:
            last_error[:] = [exc]
            self._on_error(exc)

        async def disconnected_cb() -> None:
            if client is self._pub and not self._closed:
                self._counters["disconnects"] += 1
                logger.warning("NATS connection (%s) lost", role)

        async def reconnected_cb() -> None:
            self._counters["reconnects"] += 1
            logger.info("NATS connection (%s) back on %s", role, client.connected_url)
            if client is self._pub:
                if self._acks is not None:
                    await self._acks.resend_all()
                self._schedule_write()

        own: dict[str, Callable[..., Awaitable[None]]] = {
            "error_cb": error_cb,
            "disconnected_cb": disconnected_cb,
            "reconnected_cb": reconnected_cb,
        }
        options: dict[str, Any] = {
            "servers": self.servers,
            "name": f"turnout {self.name} {role}".strip(),
            "no_echo": no_echo,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": self.reconnect_time_wait,
            "connect_timeout": max(1, int(self.connect_timeout)),
            **{k: v for k, v in self._options.items() if k not in EVENT_CALLBACKS},
        }
        for name in EVENT_CALLBACKS:
            # The user's connection events are the publishing connection's; errors are
            # both connections'.
            theirs = self._options.get(name)
            if client is not self._pub and name != "error_cb":
                theirs = None
            callback = _after(own.get(name), theirs, name)
            if callback is not None:
                options[name] = callback
        try:
            await asyncio.wait_for(client.connect(**options), self.connect_timeout)
        except (asyncio.TimeoutError, OSError, Exception) as exc:
            reason = last_error[0] if last_error else exc
            raise NatsConnectError(
                f"cannot connect to NATS at {', '.join(self.servers)} within "
                f"{self.connect_timeout} s: {reason!r}"
            ) from exc

    def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            self._counters["slow_consumers"] += 1
        else:
            self._counters["errors"] += 1
        logger.warning("NATS error: %r", exc)

    # -- the Transport protocol -------------------------------------------------------

    def attach(self, receive: Receive) -> None:
        self._receive = receive

    def attach_runs(self, receive_run: _RouteRun) -> None:
        """The bus takes the plain messages of each read as one run."""
        self._receive_run = receive_run

    def publish(self, subject: str, event: Event | None, data: bytes | None) -> None:
        if data is None:
            assert event is not None
            data = event.to_json()
        self._enqueue((_PUBLISH, subject, data))

    def add_interest(self, pattern: str, queue: str | None) -> None:
        self._enqueue((_ADD, pattern, queue))

    def remove_interest(self, pattern: str, queue: str | None) -> None:
        self._enqueue((_REMOVE, pattern, queue))

    def close(self, timeout: float | None = 10.0) -> None:
        if self._closed or not self._thread.is_alive():
            return
        if self.on_io_thread():
            raise RuntimeError("the NATS transport cannot be closed from its I/O thread")
        try:
            self.submit(self._shutdown(timeout)).result(None if timeout is None else timeout * 2)
        finally:
            self._stop_thread()

    async def aclose(self, timeout: float | None = 10.0) -> None:
        if self._closed or not self._thread.is_alive():
            return
        try:
            await self.run(self._shutdown(timeout))
        finally:
            if not self.on_io_thread():
                await asyncio.to_thread(self._stop_thread)

    def _stop_thread(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()

    async def _shutdown(self, timeout: float | None) -> None:
        """Writes what is queued, waits for its acks (up to ``timeout``), closes."""
        try:
            await asyncio.wait_for(self.barrier(), timeout)
        except asyncio.TimeoutError:
            logger.error(
                "closing NATS with %d messages unwritten and %d unacknowledged",
                len(self._outbound),
                0 if self._acks is None else len(self._acks),
            )
        finally:
            self._closed = True
            with self._room:
                self._room.notify_all()
            await self._close_clients()

    async def _close_clients(self) -> None:
        if self._ack_sweeper is not None:
            self._ack_sweeper.cancel()
        for client in (self._pub, self._queue_client):
            if client.is_connected or client.is_reconnecting or client.is_connecting:
                try:
                    await client.close()
                except Exception as exc:  # closing must go on with the other client
                    logger.warning("closing a NATS client failed: %r", exc)
        # What a failed close left behind (nats-py's subscription tasks) ends with the loop.
        current = asyncio.current_task()
        leftovers = [task for task in asyncio.all_tasks() if task is not current]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    # -- outbound ---------------------------------------------------------------------

    def _enqueue(self, op: tuple[Any, ...]) -> None:
        if self._closed:
            raise ConnectionError("the NATS transport is closed")
        outbound = self._outbound
        if len(outbound) >= self.max_outbound:
            if self.on_io_thread() or _has_running_loop():
                self._counters["overfilled"] += 1
            else:
                self._wait_for_room()
        outbound.append(op)
        if not self._write_scheduled:
            self._write_scheduled = True
            self._loop.call_soon_threadsafe(self._schedule_write)

    def _wait_for_room(self) -> None:
        deadline = time.monotonic() + self.max_block
        with self._room:
            while len(self._outbound) >= self.max_outbound and not self._closed:
                if time.monotonic() >= deadline:
                    self._counters["refused"] += 1
                    raise ConnectionError(
                        f"NATS outbound queue full ({self.max_outbound}) for {self.max_block} s"
                    )
                self._room.wait(_ROOM_CHECK_SECONDS)

    def _schedule_write(self) -> None:
        """On the I/O loop: makes sure one writer task runs."""
        if self._writer is None or self._writer.done():
            self._writer = self._loop.create_task(self._write())

    async def _write(self) -> None:
        """Writes the outbound queue in order while connected."""
        outbound = self._outbound
        pub = self._pub
        while True:
            written = 0
            while outbound and pub.is_connected:
                op = outbound.popleft()
                try:
                    if op[0] == _PUBLISH:
                        if self._queue_subs_unconfirmed:
                            # The server must know a new queue subscription before it
                            # routes this bus's next publish, as it is on the other client.
                            self._queue_subs_unconfirmed = False
                            await self._queue_client.flush()
                        await self._send(op[1], op[2])
                    elif op[0] == _ADD and op[2] is None:
                        # Subscriptions come in bursts: a moment's wait lets the whole
                        # burst be laid out together.
                        await asyncio.sleep(_SUBSCRIBE_COALESCE_SECONDS)
                        await self._add_plain(self._plain_batch(op[1]))
                    elif op[0] == _ADD:
                        await self._add(op[1], op[2])
                    else:
                        await self._remove(op[1], op[2])
                except Exception as exc:
                    self._counters["publish_errors"] += 1
                    logger.error("NATS operation %r on %s failed: %r", op[0], op[1], exc)
                written += 1
                if written % _WRITE_BATCH == 0:
                    self._made_room()
                    await asyncio.sleep(0)  # let the read loop run
            self._made_room()
            self._write_scheduled = False
            if outbound and pub.is_connected:
                self._write_scheduled = True
                continue
            if not outbound:
                waiters, self._written_waiters = self._written_waiters, []
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
            return

    def _made_room(self) -> None:
        if len(self._outbound) < self.max_outbound:
            with self._room:
                self._room.notify_all()

    async def _send(self, subject: str, data: bytes) -> None:
        acks = self._acks
        if acks is not None and subject.startswith(self.ack_prefix or ""):
            await acks.publish(subject, data)
        else:
            await self._pub.publish(subject, data)
        self._counters["published"] += 1

    async def _send_persisted(self, subject: str, data: bytes, reply: str, msg_id: str) -> None:
        # The message id makes JetStream store a message sent again only once.
        await self._pub.publish(subject, data, reply=reply, headers={"Nats-Msg-Id": msg_id})

    # -- interest (on the I/O loop; decided by _interest) ------------------------------

    async def _add(self, pattern: str, queue: str) -> None:
        if not self._queues.add(pattern, queue):
            return
        try:
            sub = await self._queue_client.subscribe(pattern, queue=queue)
        except BaseException:
            self._queues.failed(pattern, queue)
            raise
        self._nats_subs[sub._id] = sub
        self._queue_frames.route(sub._id)
        self._queues.subscribed(pattern, queue, sub._id)
        self._queue_subs_unconfirmed = True

    def _plain_batch(self, first: str) -> list[str]:
        """``first`` and the plain interest additions queued right behind it: added
        together, a broad pattern among them serves the narrower ones from the start."""
        batch = [first]
        outbound = self._outbound
        while outbound and outbound[0][0] == _ADD and outbound[0][2] is None:
            batch.append(outbound.popleft()[1])
        return batch

    async def _add_plain(self, patterns: list[str]) -> None:
        interest = self._plain
        handed_over = False
        for pattern in interest.add(patterns):
            replaced = interest.replaceable(pattern)
            if replaced:
                interest.begin_handover(replaced)
            try:
                sub = await self._pub.subscribe(pattern)
            except Exception as exc:
                interest.cancel_handover()
                self._counters["publish_errors"] += 1
                logger.error("NATS subscription on %s failed: %r", pattern, exc)
                continue
            self._nats_subs[sub._id] = sub
            self._pub_frames.route(sub._id)
            interest.subscribed(pattern, sub._id)
            if replaced:
                await self._hand_over(replaced)
                handed_over = True
        interest.serve()
        if handed_over:
            await self._unsubscribe(self._plain.idle())

    async def _hand_over(self, replaced: frozenset[int]) -> None:
        """Retires the ``replaced`` subscriptions once the new one surely exists, and
        ends the handover once their removal is confirmed."""
        try:
            # Both deliver for a while (one round trip), which the pairing is for; the
            # old ones go only once the server surely has the new one.
            await self._pub.flush()
            await asyncio.sleep(_HANDOVER_GRACE_SECONDS)
        except Exception as exc:  # the connection went: nats-py resubscribes the new one
            self._on_error(exc)
        try:
            for sid in sorted(replaced):
                await self._nats_subs.pop(sid).unsubscribe()
            # The old ones stay routed (and paired) until this PONG: the server may still
            # send a message on an old one that it matched before it had the new one,
            # after the first PONG; unrouted, nats-py would drop it, and it has no other
            # copy. After this PONG the server has the new subscription and none of the
            # old.
            await self._pub.flush()
        except Exception as exc:
            self._on_error(exc)
        finally:
            for sid in replaced:
                self._nats_subs.pop(sid, None)
                self._pub_frames.unroute(sid)
            self._plain.end_handover()
        try:
            # The new one's copies of messages whose old copy came before that PONG may
            # come just after it; they are dropped until one more round trip, with the
            # same allowance for a publisher stalled between the two copies.
            await asyncio.sleep(_HANDOVER_GRACE_SECONDS)
            await self._pub.flush()
        except Exception as exc:
            self._on_error(exc)
        finally:
            self._plain.forget_late_copies()

    async def _remove(self, pattern: str, queue: str | None) -> None:
        if queue is None:
            await self._unsubscribe(self._plain.remove(pattern))
            return
        sid = self._queues.remove(pattern, queue)
        if sid is not None:
            await self._unsubscribe([sid])

    async def _unsubscribe(self, sids: list[int]) -> None:
        for sid in sids:
            sub = self._nats_subs.pop(sid)
            await sub.unsubscribe()
            self._pub_frames.unroute(sid)
            self._queue_frames.unroute(sid)

    # -- inbound (on the I/O loop, called by the parser) ------------------------------

    def _route_plain(self, run: list[tuple[int, str, bytes]]) -> None:
        """A run of messages on the publishing client's routed subscriptions."""
        plain = self._plain
        ack_sid = self._ack_sid
        if ack_sid < 0 and plain.passes_all():
            # One NATS subscription and no handover: every copy counts, so the run goes
            # to the bus without a check per message.
            self._counters["received"] += len(run)
            self._deliver_plain(run)
            return
        kept = []
        for item in run:
            sid, subject, data = item
            if sid == ack_sid:
                if self._acks is not None:
                    self._acks.on_ack(subject, data)
            elif plain.passes(sid, subject, data):
                kept.append(item)
        self._counters["received"] += len(kept)
        if kept:
            self._deliver_plain(kept)

    def _deliver_plain(self, run: list[tuple[int, str, bytes]]) -> None:
        receive_run = self._receive_run
        if receive_run is not None:
            receive_run(run)
            return
        receive = self._receive
        if receive is not None:
            for _sid, subject, data in run:
                receive(subject, None, data, None)

    def _route_queue(self, run: list[tuple[int, str, bytes]]) -> None:
        """A run of messages on the queue client's subscriptions."""
        groups = self._queues
        receive = self._receive
        received = 0
        for sid, subject, data in run:
            group = groups.group(sid)
            if group is None:
                continue  # unsubscribed while in flight, as nats-py drops it too
            received += 1
            if receive is not None:
                receive(subject, None, data, group)
        self._counters["received"] += received

    # -- flushing ---------------------------------------------------------------------

    async def barrier(self) -> None:
        """On the I/O loop: everything queued before is written and acknowledged (or
        given up on), and NATS has routed it (both clients got a PONG after it)."""
        if self._outbound or (self._writer is not None and not self._writer.done()):
            written: asyncio.Future[None] = self._loop.create_future()
            self._written_waiters.append(written)
            self._schedule_write()
            await written
        if self._acks is not None:
            await self._acks.settled()
        for client in (self._pub, self._queue_client):
            if client.is_connected:
                await client.flush()

    async def flush(self, timeout: float | None = 10.0) -> None:
        """Waits until everything handed over before is written to NATS, acknowledged
        by JetStream when persisted (or counted as refused or timed out), and routed
        back to this bus where NATS routes it (queue groups)."""
        await self.run(asyncio.wait_for(self.barrier(), timeout))

    def flush_sync(self, timeout: float | None = 10.0) -> None:
        """:meth:`flush` from a thread; refused on the I/O thread."""
        self.run_sync(asyncio.wait_for(self.barrier(), timeout), None)

    # -- observing --------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters: ``published`` (written to NATS), ``received`` (passed to the bus),
        ``duplicates`` (overlap copies dropped), ``handovers`` (NATS subscriptions taken
        over by broader ones), ``outbound`` (queued, not yet written),
        ``overfilled``, ``refused`` (no room within ``max_block``), ``publish_errors``;
        JetStream ``acked``, ``ack_errors``, ``ack_timeouts``, ``awaiting_ack``; nats-py
        ``errors``, ``slow_consumers``;
        ``disconnects``, ``reconnects``, ``connected``; ``nats_subscriptions`` (plain
        and queue) and the ``interest`` they serve."""
        acks = self._acks
        return {
            **self._counters,
            "duplicates": self._plain.duplicates,
            "handovers": self._plain.handovers,
            "acked": 0 if acks is None else acks.acked,
            "ack_errors": 0 if acks is None else acks.errors,
            "ack_timeouts": 0 if acks is None else acks.timeouts,
            "outbound": len(self._outbound),
            "awaiting_ack": 0 if acks is None else len(acks),
            "connected": self._pub.is_connected,
            "connected_url": _url_text(self._pub),
            "nats_subscriptions": self._plain.subscriptions + len(self._queues),
            "interest": len(self._plain) + len(self._queues),
        }


def _after(
    own: Callable[..., Awaitable[None]] | None, theirs: Callable[..., Any] | None, name: str
) -> Callable[..., Awaitable[None]] | None:
    """One nats-py callback calling turnout's own, then the user's (which may be a plain
    function or a coroutine function). The user's failing is logged, not passed on to
    nats-py, which would abandon what it was doing (a reconnect)."""
    if theirs is None:
        return own

    async def both(*args: Any) -> None:
        if own is not None:
            await own(*args)
        try:
            result = theirs(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("the %s passed to turnout.nats.connect raised", name)

    return both


def _url_text(client: Client) -> str:
    url = client.connected_url
    return "" if url is None else f"{url.scheme}://{url.netloc}"


def _has_running_loop() -> bool:
    return asyncio._get_running_loop() is not None
