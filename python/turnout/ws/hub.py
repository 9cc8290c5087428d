"""The coordination hub over WebSocket: :class:`Hub`, the I/O around
:class:`turnout.coordination.HubProtocol` (which decides every answer).

Paths (anything else is refused with HTTP 404 naming the two):

- ``/v1/coordination``: services (a :class:`turnout.ws.Coordinator`, or a Go when-v3
  coordinator) register and exchange coordination messages.
- ``/v1/watch?subject=PATTERN[&subject=PATTERN...]``: a watcher, sent every event of the
  hub's bus whose subject matches one of its patterns (at most
  :data:`MAX_WATCH_PATTERNS`; an invalid or missing pattern is refused with HTTP 400). Each
  event arrives once, as one text frame holding the event's JSON (``type``, ``node``,
  ``timestamp``, ``data``; the subject is ``"events." + type``), in publish order; frames a
  watcher sends are ignored.

**Republishing.** Every message a registered service sends, its registration and its
disconnection are emitted on the hub's bus (:mod:`turnout.ws.subjects` documents the
subjects: ``events.coordination.<kind>.<service>.<workflow>``), with ``data`` holding
``service_id``, ``instance_id``, ``service_name`` and ``message`` (the message as JSON
fields; absent for ``disconnected``). So local subscribers, a NATS bus's other nodes and
watchers all follow the same stream. Malformed and refused frames are answered with an
``error`` message (the connection stays up) and counted in :meth:`Hub.stats`, not
republished.

**Auth.** With a ``token``, both paths require ``Authorization: Bearer <token>`` in the
handshake; a missing or wrong token is refused with HTTP 401 and a body saying which
(``missing bearer token`` / ``invalid token``), before any WebSocket traffic.

**Limits.** A frame larger than ``max_message_size`` closes the connection with code 1009
(message too big) and a reason giving the sizes. A watcher never slows the hub: events
for it are written straight to its socket, each event's frame made once for all
watchers, in one write per watcher per event-loop turn (while events keep arriving turn
after turn, for up to :data:`MAX_FLUSH_DEFERRALS` turns, so that a steady stream costs a
write per batch rather than per event); once more than ``watcher_buffer`` bytes wait
unsent for one watcher, further events for it are dropped (policy drop_newest, since the
bytes already queued cannot be taken back) and counted in ``stats()["watcher_dropped"]``,
until it catches up.

**Commands.** :meth:`Hub.pause`, :meth:`Hub.resume`, :meth:`Hub.cancel`,
:meth:`Hub.status` and :meth:`Hub.ping` send a request to the service that reports the
workflow and return its :class:`~turnout.coordination.RequestSettled` (answered, refused,
expired after ``timeout`` seconds, or disconnected); ``LookupError`` when no connected
service has the workflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request as HTTPRequest
from websockets.http11 import Response as HTTPResponse
from websockets.protocol import State

from turnout._core import validate_subject
from turnout._errors import InvalidSubjectError
from turnout._wire import format_time
from turnout.bus import Bus, Message
from turnout.coordination import (
    HUB_PROTOCOL_VERSION,
    HubEvent,
    HubProtocol,
    Request,
    RequestSettled,
    ServiceDisconnected,
    ServiceMessage,
    ServiceRegistered,
)
from turnout.events import Event
from turnout.protocol import WSMessage
from turnout.ws.subjects import DISCONNECTED, coordination_event_type

__all__ = [
    "COORDINATION_PATH",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_FLUSH_DEFERRALS",
    "MAX_WATCH_PATTERNS",
    "WATCH_PATH",
    "Hub",
    "watch_patterns",
]

logger = logging.getLogger("turnout.ws.hub")

COORDINATION_PATH = "/v1/coordination"
WATCH_PATH = "/v1/watch"
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
MAX_WATCH_PATTERNS = 64
#: The most event-loop turns watcher writes wait for more events to go out together.
MAX_FLUSH_DEFERRALS = 8


class Hub:
    """The coordination hub (see the module docstring). ``port=0`` picks a free port
    (:attr:`port` is the bound one once started). ``bus`` None makes an embedded
    :class:`~turnout.Bus` with node ``node``, closed with the hub; a given bus is left
    open. Use ``async with Hub(...) as hub`` or ``await start()`` / ``await stop()``.
    ``compression="deflate"`` offers permessage-deflate to peers; it is off by default, as
    in Go's WebSocket libraries: it costs CPU per frame and per watcher, and turns the
    watchers' fan-out (one encoding of an event written to every watcher) into one
    compression per watcher. Every ``ping_interval`` seconds each peer gets a WebSocket
    ping; one that does not answer within as long again is disconnected (None: no pings).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8765,
        token: str | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        bus: Bus | None = None,
        *,
        node: str = "hub",
        request_timeout: float = 10.0,
        watcher_buffer: int = 1 << 20,
        compression: Literal["deflate"] | None = None,
        ping_interval: float | None = 20.0,
        protocol_version: str = HUB_PROTOCOL_VERSION,
    ) -> None:
        if max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        if not request_timeout > 0:
            raise ValueError("request_timeout must be positive")
        if watcher_buffer < 1:
            raise ValueError("watcher_buffer must be positive")
        self.host = host
        self._port = port
        self.max_message_size = max_message_size
        self.request_timeout = request_timeout
        self.watcher_buffer = watcher_buffer
        self.compression = compression
        self.ping_interval = ping_interval
        self._owns_bus = bus is None
        self.bus = Bus(node) if bus is None else bus
        self.protocol = HubProtocol(protocol_version, token)
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._stopped: asyncio.Event | None = None
        self._waiters: dict[str, asyncio.Future[RequestSettled]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._watchers: set[_Watcher] = set()
        self._fanouts: dict[str, _Fanout] = {}
        self._dirty: list[_Watcher] = []
        self._flush_scheduled = False
        self._deliveries = 0  # events handed to watchers, to see whether more are coming
        self._deliveries_seen = 0
        self._deferrals = 0
        self._counts = dict.fromkeys(
            (
                "published",
                "publish_errors",
                "watchers_served",
                "watcher_delivered",
                "watcher_dropped",
                "watcher_discarded",
                "watcher_ignored",
            ),
            0,
        )

    # -- lifecycle --

    async def start(self) -> None:
        """Listens on ``host``:``port``."""
        if self._server is not None:
            raise RuntimeError("the hub is already started")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopped = asyncio.Event()
        self._server = await serve(
            self._handle,
            self.host,
            self._port,
            process_request=self._check_request,
            max_size=self.max_message_size,
            compression=self.compression,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_interval,
        )

    async def stop(self) -> None:
        """Closes every connection (code 1001), settles pending requests as disconnected,
        and closes the bus if the hub made it. Idempotent."""
        server = self._server
        if server is None or self._stopped is None or self._stopped.is_set():
            return
        server.close()
        await server.wait_closed()
        for fanout in self._fanouts.values():
            fanout.subscription.unsubscribe()
        self._fanouts.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._owns_bus:
            await self.bus.aclose()
        self._stopped.set()

    async def serve_forever(self) -> None:
        """Starts the hub if needed and returns once :meth:`stop` has run."""
        if self._server is None:
            await self.start()
        assert self._stopped is not None
        await self._stopped.wait()

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The port listened on (the bound one once started: useful with ``port=0``)."""
        if self._server is None:
            return self._port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """The URL services connect to: ``ws://host:port/v1/coordination``."""
        return self._url(COORDINATION_PATH)

    @property
    def watch_url(self) -> str:
        """The watcher URL without patterns (add ``?subject=PATTERN``)."""
        return self._url(WATCH_PATH)

    def _url(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{path}"

    def stats(self) -> dict[str, int]:
        """The protocol's counters (``received``, ``malformed``, ``refused``,
        ``requests``, ``connections``, ``services``, ``workflows``, ``pending``), and
        ``published`` / ``publish_errors`` (events emitted on the bus), ``watchers`` (now),
        ``watchers_served``, ``watcher_delivered``, ``watcher_dropped`` (by the
        drop_newest policy), ``watcher_discarded`` (waiting when a watcher closed),
        ``watcher_ignored`` (frames watchers sent)."""
        return {**self.protocol.stats(), **self._counts, "watchers": len(self._watchers)}

    # -- commands --

    async def pause(
        self,
        workflow_id: str,
        reason: str = "",
        *,
        timeout: float | None = None,
        service: tuple[str, str] | None = None,
    ) -> RequestSettled:
        """Asks the workflow's service to pause it; settled by ``pausing``/``paused``."""
        return await self._request(
            lambda deadline: self.protocol.pause(
                workflow_id, reason, deadline=deadline, service=service
            ),
            timeout,
        )

    async def resume(
        self,
        workflow_id: str,
        from_checkpoint: str = "",
        *,
        timeout: float | None = None,
        service: tuple[str, str] | None = None,
    ) -> RequestSettled:
        """Asks for a resume; settled by ``resuming``/``execution``."""
        return await self._request(
            lambda deadline: self.protocol.resume(
                workflow_id, from_checkpoint, deadline=deadline, service=service
            ),
            timeout,
        )

    async def cancel(
        self,
        workflow_id: str,
        reason: str = "",
        force: bool = False,
        *,
        timeout: float | None = None,
        service: tuple[str, str] | None = None,
    ) -> RequestSettled:
        """Asks for a cancellation (``force``: completed at once); settled by
        ``cancelling``/``cancelled``."""
        return await self._request(
            lambda deadline: self.protocol.cancel(
                workflow_id, reason, force, deadline=deadline, service=service
            ),
            timeout,
        )

    async def status(
        self,
        workflow_id: str,
        *,
        timeout: float | None = None,
        service: tuple[str, str] | None = None,
    ) -> RequestSettled:
        """Asks for the workflow's status; settled by the ``status_response``."""
        return await self._request(
            lambda deadline: self.protocol.status(workflow_id, deadline=deadline, service=service),
            timeout,
        )

    async def ping(
        self, service_id: str, instance_id: str = "", *, timeout: float | None = None
    ) -> RequestSettled:
        """An application-level ``ping`` to a service instance; settled by its ``pong``."""
        return await self._request(
            lambda deadline: self.protocol.ping((service_id, instance_id), deadline=deadline),
            timeout,
        )

    async def _request(
        self, make: Callable[[float], Request], timeout: float | None
    ) -> RequestSettled:
        loop = self._running_loop()
        request = make(loop.time() + (self.request_timeout if timeout is None else timeout))
        settled: asyncio.Future[RequestSettled] = loop.create_future()
        self._waiters[request.id] = settled
        self._arm_timer()
        connection = request.connection
        assert isinstance(connection, ServerConnection)
        # A closed connection's reader settles the request as DISCONNECTED.
        with contextlib.suppress(ConnectionClosed):
            await connection.send(request.frame, text=True)
        try:
            return await settled
        finally:
            self._waiters.pop(request.id, None)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._server is None or loop is not self._loop:
            raise RuntimeError("the hub is not running on this event loop")
        return loop

    def _arm_timer(self) -> None:
        deadline = self.protocol.next_deadline
        if deadline is None or self._loop is None:
            return
        if self._timer is not None:
            if self._timer_at <= deadline:
                return
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        assert self._loop is not None
        self._timer = None
        # call_at may fire within the clock's resolution before the deadline.
        for settled in self.protocol.expire(max(self._loop.time(), self._timer_at)):
            self._settle(settled)
        self._arm_timer()

    def _settle(self, settled: RequestSettled) -> None:
        waiter = self._waiters.pop(settled.request.id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(settled)

    # -- handshake and connections --

    def _check_request(
        self, connection: ServerConnection, request: HTTPRequest
    ) -> HTTPResponse | None:
        path, _, query = request.path.partition("?")
        if path not in (COORDINATION_PATH, WATCH_PATH):
            return connection.respond(
                HTTPStatus.NOT_FOUND,
                f"turnout hub: unknown path {path[:200]!r}; "
                f"services use {COORDINATION_PATH}, watchers {WATCH_PATH}\n",
            )
        refusal = self.protocol.authorize(request.headers)
        if refusal is not None:
            response = connection.respond(HTTPStatus.UNAUTHORIZED, f"turnout hub: {refusal}\n")
            response.headers["WWW-Authenticate"] = 'Bearer realm="turnout hub"'
            return response
        if path == WATCH_PATH:
            try:
                watch_patterns(query)
            except ValueError as exc:
                return connection.respond(HTTPStatus.BAD_REQUEST, f"turnout hub: {exc}\n")
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        path, _, query = connection.request.path.partition("?")
        if path == WATCH_PATH:
            await self._serve_watcher(connection, watch_patterns(query))
        else:
            await self._serve_service(connection)

    async def _serve_service(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        protocol = self.protocol
        protocol.connection_opened(connection, _plain_headers(connection.request.headers))
        try:
            async for frame in connection:
                out = protocol.receive(connection, frame)
                for reply in out.replies:
                    await connection.send(reply, text=True)
                await self._handle_events(out.events, frame)
        except ConnectionClosed:
            pass  # a close code the peer or the limits chose; the client sees it
        finally:
            await self._handle_events(protocol.connection_closed(connection), None)

    async def _handle_events(self, events: list[HubEvent], frame: str | bytes | None) -> None:
        for event in events:
            if isinstance(event, RequestSettled):
                self._settle(event)
            elif isinstance(event, ServiceMessage):
                service_id, instance_id = event.service
                await self._republish(event.message, service_id, instance_id)
            elif isinstance(event, ServiceRegistered):
                assert frame is not None
                record = event.service
                await self._republish(WSMessage.parse(frame), record.service_id, record.instance_id)
            elif isinstance(event, ServiceDisconnected) and event.service is not None:
                record = event.service
                await self._emit(
                    coordination_event_type(DISCONNECTED, record.service_id),
                    {
                        "service_id": record.service_id,
                        "instance_id": record.instance_id,
                        "service_name": record.service_name,
                    },
                )

    async def _republish(self, message: WSMessage, service_id: str, instance_id: str) -> None:
        payload = message.payload
        workflow_id = message.workflow_id
        if not workflow_id and payload:
            inner = payload.get("workflow_id")
            workflow_id = inner if isinstance(inner, str) else ""
        document: dict[str, Any] = {"id": message.id, "type": str(message.type)}
        if message.workflow_id:
            document["workflow_id"] = message.workflow_id
        document["timestamp"] = format_time(message.timestamp)
        if payload:
            document["payload"] = payload
        record = self.protocol.service(service_id, instance_id)
        await self._emit(
            coordination_event_type(str(message.type), service_id, workflow_id),
            {
                "service_id": service_id,
                "instance_id": instance_id,
                "service_name": "" if record is None else record.service_name,
                "message": document,
            },
        )

    async def _emit(self, event_type: str, data: dict[str, Any]) -> None:
        try:
            await self.bus.aemit(Event(event_type, data=data))
        except Exception as exc:
            self._counts["publish_errors"] += 1
            logger.error("cannot republish %s on the bus: %s", event_type, exc)
        else:
            self._counts["published"] += 1

    # -- watchers --

    async def _serve_watcher(self, connection: ServerConnection, patterns: list[str]) -> None:
        watcher = _Watcher(self, connection)
        self._watchers.add(watcher)
        self._counts["watchers_served"] += 1
        try:
            for pattern in patterns:
                fanout = self._fanouts.get(pattern)
                if fanout is None:
                    fanout = self._fanouts[pattern] = _Fanout(self, pattern)
                fanout.watchers.append(watcher)
            async for _ in connection:
                self._counts["watcher_ignored"] += 1
        except ConnectionClosed:
            pass
        finally:
            self._watchers.discard(watcher)
            for pattern in patterns:
                fanout = self._fanouts.get(pattern)
                if fanout is None:  # the hub stopped
                    continue
                fanout.watchers.remove(watcher)
                if not fanout.watchers:
                    fanout.subscription.unsubscribe()
                    del self._fanouts[pattern]

    def _schedule_flush(self, watcher: _Watcher) -> None:
        self._dirty.append(watcher)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._deferrals = 0
            # Whatever scheduled this turn may well go on producing on its next step,
            # which runs after this callback: the first look always waits a turn.
            self._deliveries_seen = -1
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        assert self._loop is not None
        if self._deliveries != self._deliveries_seen and self._deferrals < MAX_FLUSH_DEFERRALS:
            # Events keep coming, turn after turn: wait one more turn, so that they go out
            # in one write per watcher rather than one write per event.
            self._deferrals += 1
            self._deliveries_seen = self._deliveries
            self._loop.call_soon(self._flush)
            return
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        # Each event's frame, and each run of events' frames, is made once per turn and
        # shared by the watchers that get it.
        frames: dict[object, bytes] = {}
        for watcher in dirty:
            watcher.flush(frames)


class _Fanout:
    """The watchers following one pattern, behind one bus subscription: the bus matches
    and calls once per pattern, however many watchers share it."""

    __slots__ = ("_hub", "subscription", "watchers")

    def __init__(self, hub: Hub, pattern: str) -> None:
        self._hub = hub
        self.watchers: list[_Watcher] = []
        self.subscription = hub.bus.subscribe(pattern, self.offer, raw=True)

    def offer(self, message: Message) -> None:
        """The bus handler, called on the publishing thread."""
        hub = self._hub
        if threading.get_ident() == hub._loop_thread:
            self.deliver(message)
        elif hub._loop is not None:
            try:
                hub._loop.call_soon_threadsafe(self.deliver, message)
            except RuntimeError:  # the loop is closed: the hub is gone
                hub._counts["watcher_discarded"] += len(self.watchers)

    def deliver(self, message: Message) -> None:
        self._hub._deliveries += 1
        for watcher in self.watchers:
            watcher.take(message)


class _Watcher:
    """One watcher connection: takes events on the hub's loop and writes them once per
    event-loop turn."""

    __slots__ = ("_connection", "_dirty", "_hub", "_last", "_pending", "_pending_bytes")

    def __init__(self, hub: Hub, connection: ServerConnection) -> None:
        self._hub = hub
        self._connection = connection
        self._pending: list[Message] = []
        self._pending_bytes = 0
        self._dirty = False
        self._last: Message | None = None

    def take(self, message: Message) -> None:
        # One bus event reaches a watcher once per pattern of its that matches; the bus
        # hands every subscription the same Message object, and one after the other.
        if message is self._last:
            return
        self._last = message
        size = len(message.data)
        if self._pending_bytes + size > self._hub.watcher_buffer and self._pending:
            self._hub._counts["watcher_dropped"] += 1
            return
        self._pending.append(message)
        self._pending_bytes += size
        if not self._dirty:
            self._dirty = True
            self._hub._schedule_flush(self)

    def flush(self, frames: dict[object, bytes]) -> None:
        messages, waiting = self._pending, self._pending_bytes
        self._pending = []
        self._pending_bytes = 0
        self._dirty = False
        counts = self._hub._counts
        connection = self._connection
        if connection.protocol.state is not State.OPEN:
            counts["watcher_discarded"] += len(messages)
            return
        transport = connection.transport
        unsent = transport.get_write_buffer_size()
        if unsent and unsent + waiting > self._hub.watcher_buffer:
            counts["watcher_dropped"] += len(messages)
            return
        if connection.protocol.extensions:
            # A negotiated extension (compression) encodes frames per connection.
            for message in messages:
                broadcast((connection,), message.data, text=True)
        else:
            transport.write(_frames_of(messages, frames))
        counts["watcher_delivered"] += len(messages)


def _frames_of(messages: list[Message], made: dict[object, bytes]) -> bytes:
    """The text frames of ``messages``, back to back. Server frames are unmasked: with no
    extension, an event's frame is the same bytes for every watcher."""
    key: object = id(messages[0]) if len(messages) == 1 else tuple(map(id, messages))
    data = made.get(key)
    if data is None:
        parts = []
        for message in messages:
            frame = made.get(id(message))
            if frame is None:
                frame = made[id(message)] = Frame(Opcode.TEXT, message.data).serialize(mask=False)
            parts.append(frame)
        data = made[key] = b"".join(parts)
    return data


def watch_patterns(query: str) -> list[str]:
    """The ``subject`` patterns of a watcher URL's query; ``ValueError`` naming what is
    wrong (none given, too many, an invalid pattern)."""
    patterns = [
        value for key, value in parse_qsl(query, keep_blank_values=True) if key == "subject"
    ]
    if not patterns:
        raise ValueError("a watcher needs at least one subject=PATTERN in its URL")
    if len(patterns) > MAX_WATCH_PATTERNS:
        raise ValueError(f"at most {MAX_WATCH_PATTERNS} subject patterns per watcher")
    for pattern in patterns:
        try:
            validate_subject(pattern)
        except InvalidSubjectError as exc:
            raise ValueError(f"invalid subject pattern: {exc}") from None
    return patterns


def _plain_headers(headers: Headers | Mapping[str, str]) -> dict[str, str]:
    if isinstance(headers, Headers):
        return dict(headers.raw_items())
    return dict(headers)
