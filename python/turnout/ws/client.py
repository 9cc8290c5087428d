"""The service end over WebSocket: :class:`Coordinator`, the I/O around
:class:`turnout.coordination.CoordinatorProtocol` (which decides every answer).

**Connecting.** ``await connect()`` dials ``config.when_url`` with the headers
``X-Service-Name`` (``X-Service-ID`` when known, ``Authorization: Bearer`` with a token),
sends ``register`` and returns once the hub answered ``registered``; it raises
:class:`HubRefusedError` when the hub refuses the handshake (HTTP status and reason) or the
registration, and ``OSError`` / ``TimeoutError`` when it cannot be reached.

**Several hubs.** ``config.fallback_urls`` names more hubs of a fleet: ``connect()``
tries each of ``config.urls`` in turn, and after a disconnect each reconnect attempt
dials the next one (with the same backoff), so a service whose hub died registers at
another hub of the fleet (:attr:`Coordinator.url` is the one it is on).

**Staying connected.** After any later disconnect (hub gone, network cut, a close frame,
keepalive timeout) the coordinator dials again, waiting ``config.reconnect_delay(n)``
before attempt ``n`` (exponential from ``reconnect_initial_delay`` by
``reconnect_backoff_factor`` up to ``reconnect_max_delay``; ``jitter`` spreads each delay
by up to that fraction), until ``reconnect_max_attempts`` attempts in a row failed (0: no
limit). On each new connection it registers again, then sends what was queued meanwhile
and the current phase of every non-terminal workflow. ``on_reconnecting(attempt, delay)``
is told before each wait. Keepalive: WebSocket pings every ``config.ping_interval``
seconds; no pong within as long again counts as a disconnect.

**Sending.** ``send`` and the ``send_*`` / ``log_*`` helpers never block: they queue in the
protocol's bounded queue (``queue_size``, default 100; drop_oldest, counted in
``stats()["dropped"]``), which a writer task empties while registered. They may be called
from any thread. A frame whose write fails because the connection dropped goes back in the
queue (``stats()["requeued"]``); answers to the hub (``pong``, ``status_response``) belong
to their connection and are not: the protocol decides which is which.

**Registration deadline.** A hub that accepts the connection but does not answer
``register`` within ``config.register_timeout`` seconds (after any dial, the first one
included) gets the connection closed and is dialled again, like any other disconnect.

**TLS.** A ``wss://`` URL is dialled with TLS, verifying the hub's certificate against the
system's authorities, or those of ``config.ca_file``.

**Logs.** ``log_debug`` ... ``log_with_context`` send one ``log`` message each, as Go's
coordinator does. :meth:`Coordinator.log` (what a
:class:`turnout.logs.ForwardingHandler` calls) batches instead: entries go through a
:class:`turnout.logs.LogForwarder` into ``log_batch`` messages (``log_buffer_size``
entries, or every ``log_flush_interval`` seconds).

**Callbacks** (``on_connected()``, ``on_disconnected(error)``, ``on_registered(service_id)``,
``on_message(type, handler(message))``, ``on_reconnecting(attempt, delay)``) may be plain
functions or coroutine functions; they run on the coordinator's event loop, in order, and
one that raises is logged and counted (``stats()["callback_errors"]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import random
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from turnout.coordination import (
    ClientState,
    CommandRefused,
    CoordinatorConfig,
    CoordinatorProtocol,
    MalformedFrame,
    MessageReceived,
    Registered,
)
from turnout.logs import LogEntry, LogForwarder, LogLevel
from turnout.phases import PhaseManager
from turnout.protocol import (
    CheckpointPayload,
    ErrorPayload,
    LogBatchPayload,
    MessageType,
    ProgressPayload,
    WorkflowCreatedPayload,
    WSMessage,
)

__all__ = ["Coordinator", "HubRefusedError"]

logger = logging.getLogger("turnout.ws.client")

# asyncio.TimeoutError is TimeoutError from Python 3.11 on, not before.
_DIAL_ERRORS = (OSError, InvalidHandshake, TimeoutError, asyncio.TimeoutError)

Callback = Callable[..., object]


class HubRefusedError(ConnectionError):
    """The hub refused the WebSocket handshake (``status`` is the HTTP status) or the
    registration (``status`` None); the message says why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Coordinator:
    """A service's link to a coordination hub (see the module docstring): the when-v3
    coordinator for asyncio. ``phases`` (default: a new one) is the
    :class:`~turnout.phases.PhaseManager` whose changes are reported and which hub
    commands drive."""

    def __init__(
        self,
        config: CoordinatorConfig,
        phases: PhaseManager | None = None,
        *,
        queue_size: int = 100,
        jitter: float = 0.0,
        open_timeout: float = 10.0,
        log_buffer_size: int = 100,
        log_flush_interval: float = 5.0,
    ) -> None:
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self.config = config
        self.jitter = jitter
        self.open_timeout = open_timeout
        self._protocol = CoordinatorProtocol(
            config, phases, queue_size=queue_size, on_outgoing=self._wake_writer
        )
        self._log_buffer_size = log_buffer_size
        self._log_flush_interval = log_flush_interval
        self._forwarder: LogForwarder | None = None
        self._forwarder_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._wake: asyncio.Event | None = None
        self._registered: asyncio.Future[str] | None = None
        self._connection: ClientConnection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._on_connected: list[Callback] = []
        self._on_disconnected: list[Callback] = []
        self._on_registered: list[Callback] = []
        self._on_reconnecting: list[Callback] = []
        self._handlers: dict[str, list[Callback]] = {}
        self._counts = dict.fromkeys(
            ("reconnects", "dial_failures", "callback_errors", "register_timeouts"), 0
        )
        self._ssl_context: ssl.SSLContext | None = None
        self._register_timed_out: ClientConnection | None = None
        #: The hub URL of the current (or last) connection.
        self.url = config.when_url
        self._tasks: set[asyncio.Future[Any]] = set()
        #: The error that ended the last connection or dial attempt.
        self.last_error: BaseException | None = None

    # -- state --

    @property
    def phases(self) -> PhaseManager:
        return self._protocol.phases

    @property
    def service_id(self) -> str:
        """The service id the hub confirmed (or the configured one)."""
        return self._protocol.service_id

    @property
    def is_connected(self) -> bool:
        """Whether a WebSocket to the hub is open (registered or registering)."""
        return self._protocol.state is not ClientState.DISCONNECTED

    @property
    def is_registered(self) -> bool:
        return self._protocol.state is ClientState.REGISTERED

    @property
    def running(self) -> bool:
        """Whether it is connected or still dialling (False before :meth:`connect`, after
        :meth:`close`, and once ``reconnect_max_attempts`` dials in a row failed)."""
        return self._supervisor is not None and not self._supervisor.done()

    def stats(self) -> dict[str, Any]:
        """The protocol's counters (``queued``, ``dropped``, ``sent``, ``received``,
        ``malformed``, ``discarded``, ``connections``, ``pending``, ``requeued``),
        ``reconnects``, ``dial_failures``, ``callback_errors``, ``register_timeouts``,
        and ``logs`` (the batching forwarder's counters, once :meth:`log` was used)."""
        forwarder = self._forwarder
        return {
            **self._protocol.stats(),
            **self._counts,
            "logs": None if forwarder is None else forwarder.stats(),
        }

    # -- callbacks --

    def on_connected(self, fn: Callable[[], object]) -> None:
        self._on_connected.append(fn)

    def on_disconnected(self, fn: Callable[[BaseException | None], object]) -> None:
        self._on_disconnected.append(fn)

    def on_registered(self, fn: Callable[[str], object]) -> None:
        self._on_registered.append(fn)

    def on_reconnecting(self, fn: Callable[[int, float], object]) -> None:
        """``fn(attempt, delay)`` before waiting ``delay`` seconds to dial attempt
        ``attempt`` (1, 2, ... since the last connection)."""
        self._on_reconnecting.append(fn)

    def on_message(self, type: MessageType | str, handler: Callable[[WSMessage], object]) -> None:
        """Calls ``handler(message)`` for every message of ``type`` from the hub, after
        the built-in handling (answers to ping/status, commands driving the phases)."""
        self._handlers.setdefault(str(type), []).append(handler)

    # -- sending --

    def send(self, message: WSMessage | bytes) -> bool:
        """Queues a message (or a written frame); False if the queue's policy dropped it."""
        return self._protocol.send(message)

    def send_checkpoint(
        self,
        workflow_id: str,
        checkpoint_id: str,
        reason: str = "",
        state: Mapping[str, Any] | None = None,
    ) -> bool:
        payload = CheckpointPayload(workflow_id, checkpoint_id, reason, dict(state or {}) or None)
        return self.send(WSMessage.with_payload(MessageType.CHECKPOINT, payload))

    def send_error(
        self, workflow_id: str, action_id: str, error: str, recoverable: bool = False
    ) -> bool:
        payload = ErrorPayload(workflow_id, error, recoverable, action_id)
        return self.send(WSMessage.with_payload(MessageType.ERROR, payload))

    def send_progress(
        self,
        workflow_id: str,
        action_id: str,
        percent: float,
        stage: str = "",
        message: str = "",
    ) -> bool:
        payload = ProgressPayload(workflow_id, action_id, percent, stage, message)
        return self.send(WSMessage.with_payload(MessageType.PROGRESS, payload))

    def send_workflow_created(
        self,
        workflow_id: str,
        parent_workflow_id: str = "",
        root_workflow_id: str = "",
        action_id: str = "",
        action_type: str = "",
    ) -> bool:
        payload = WorkflowCreatedPayload(
            workflow_id, parent_workflow_id, root_workflow_id, action_id, action_type
        )
        return self.send(WSMessage.with_payload(MessageType.WORKFLOW_CREATED, payload))

    def send_log(self, entry: LogEntry) -> bool:
        """One ``log`` message (an entry without a timestamp is stamped now)."""
        return self.send(WSMessage.with_payload(MessageType.LOG, _stamped(entry)))

    def send_log_batch(self, entries: Iterable[LogEntry]) -> bool:
        """One ``log_batch`` message with ``entries``."""
        payload = LogBatchPayload(tuple(_stamped(e) for e in entries))
        return self.send(WSMessage.with_payload(MessageType.LOG_BATCH, payload, ""))

    def log_with_context(
        self,
        level: LogLevel | str,
        message: str,
        workflow_id: str = "",
        action_id: str = "",
        fields: Mapping[str, Any] | None = None,
    ) -> bool:
        entry = LogEntry(
            timestamp=None,
            level=LogLevel(level),
            message=message,
            workflow_id=workflow_id,
            action_id=action_id,
            fields=dict(fields) if fields else None,
        )
        return self.send_log(entry)

    def log_debug(self, message: str, fields: Mapping[str, Any] | None = None) -> bool:
        return self.log_with_context(LogLevel.DEBUG, message, fields=fields)

    def log_info(self, message: str, fields: Mapping[str, Any] | None = None) -> bool:
        return self.log_with_context(LogLevel.INFO, message, fields=fields)

    def log_warn(self, message: str, fields: Mapping[str, Any] | None = None) -> bool:
        return self.log_with_context(LogLevel.WARN, message, fields=fields)

    def log_error(self, message: str, fields: Mapping[str, Any] | None = None) -> bool:
        return self.log_with_context(LogLevel.ERROR, message, fields=fields)

    def log(self, entry: LogEntry) -> None:
        """Batches ``entry`` into ``log_batch`` messages (the target of a
        :class:`turnout.logs.ForwardingHandler`); thread-safe."""
        forwarder = self._forwarder
        if forwarder is None:
            with self._forwarder_lock:
                if self._forwarder is None:
                    self._forwarder = LogForwarder(
                        self.send, self._log_buffer_size, self._log_flush_interval
                    )
                forwarder = self._forwarder
        forwarder.log(entry)

    def flush_logs(self) -> None:
        """Queues the entries :meth:`log` is holding as ``log_batch`` messages now."""
        if self._forwarder is not None:
            self._forwarder.flush()

    # -- connecting --

    async def connect(self) -> None:
        """Dials the hub and registers (see the module docstring); from then on the
        connection is kept up until :meth:`close`."""
        if self._supervisor is not None or self._closing:
            raise RuntimeError("connect() may be called once, before close()")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        connection: ClientConnection | None = None
        for url in self.config.urls:
            try:
                connection = await self._dial(url)
                break
            except _DIAL_ERRORS as exc:
                self._counts["dial_failures"] += 1
                self.last_error = exc
                if len(self.config.urls) == 1:
                    raise
                logger.warning("cannot reach %s: %s", url, exc)
        if connection is None:
            assert self.last_error is not None
            raise self.last_error
        registered = self._loop.create_future()
        self._registered = registered
        self._supervisor = self._loop.create_task(self._supervise(connection))
        try:
            await asyncio.wait_for(asyncio.shield(registered), self.open_timeout)
        except BaseException:
            await self.close()
            raise

    async def close(self, timeout: float = 5.0) -> None:
        """Sends the buffered logs and what is queued (waiting up to ``timeout`` seconds
        while connected), then closes the connection and stops re-dialling. Idempotent."""
        if self._closing:
            return
        self._closing = True
        forwarder = self._forwarder
        if forwarder is not None:
            forwarder.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.is_registered and self._protocol.pending and loop.time() < deadline:
            await asyncio.sleep(0.005)
        supervisor = self._supervisor
        connection = self._connection
        if connection is not None:
            await connection.close()
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)

    async def __aenter__(self) -> Coordinator:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _dial(self, url: str) -> ClientConnection:
        config = self.config
        try:
            connection = await ws_connect(
                url,
                additional_headers=self._protocol.handshake_headers(),
                open_timeout=self.open_timeout,
                ping_interval=config.ping_interval,
                ping_timeout=config.ping_interval,
                ssl=self._ssl(url),
            )
        except InvalidStatus as exc:
            response = exc.response
            reason = response.body.decode("utf-8", "replace").strip() if response.body else ""
            raise HubRefusedError(
                f"the hub refused the connection: HTTP {response.status_code}"
                + (f": {reason}" if reason else ""),
                response.status_code,
            ) from exc
        self.url = url
        return connection

    def _ssl(self, url: str) -> ssl.SSLContext | None:
        if not url.startswith("wss://"):
            return None
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context(cafile=self.config.ca_file)
        return self._ssl_context

    async def _supervise(self, connection: ClientConnection) -> None:
        config = self.config
        while True:
            error = await self._run(connection)
            self.last_error = error
            if self._closing:
                return
            await self._call_all(self._on_disconnected, error)
            lost = self.url
            attempt = 0
            while True:
                attempt += 1
                if config.reconnect_max_attempts and attempt > config.reconnect_max_attempts:
                    logger.error(
                        "giving up on %s after %d attempts: %s",
                        ", ".join(config.urls),
                        config.reconnect_max_attempts,
                        self.last_error,
                    )
                    return
                delay = config.reconnect_delay(attempt)
                if self.jitter:
                    delay *= 1 + random.uniform(-self.jitter, self.jitter)
                await self._call_all(self._on_reconnecting, attempt, delay)
                await asyncio.sleep(delay)
                if self._closing:
                    return
                try:
                    connection = await self._dial(config.url_after(lost, attempt))
                except _DIAL_ERRORS as exc:
                    self._counts["dial_failures"] += 1
                    self.last_error = exc
                    continue
                self._counts["reconnects"] += 1
                break

    async def _run(self, connection: ClientConnection) -> BaseException | None:
        """Serves one connection until it ends; returns why it ended (None: closed
        cleanly)."""
        protocol = self._protocol
        self._connection = connection
        protocol.connection_made()
        await self._call_all(self._on_connected)
        writer = asyncio.create_task(self._write(connection))
        assert self._loop is not None
        overdue = self._loop.call_later(
            self.config.register_timeout, self._registration_overdue, connection
        )
        error: BaseException | None = None
        try:
            async for frame in connection:
                await self._handle(protocol.receive(frame).events)
        except ConnectionClosed as exc:
            error = exc
        finally:
            overdue.cancel()
            protocol.connection_lost()
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            self._connection = None
        if error is None and connection.close_code not in (1000, None) and not self._closing:
            error = connection.protocol.close_exc
        if self._register_timed_out is connection:
            self._register_timed_out = None
            error = TimeoutError(
                f"the hub did not answer register within {self.config.register_timeout:g} s"
            )
        return error

    def _registration_overdue(self, connection: ClientConnection) -> None:
        if self._protocol.state is ClientState.REGISTERING and self._connection is connection:
            self._counts["register_timeouts"] += 1
            self._register_timed_out = connection
            logger.warning(
                "%s did not answer register within %g s: dialling again",
                self.url,
                self.config.register_timeout,
            )
            self._loop_task(connection.close(1002, "register not answered"))

    def _loop_task(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, connection: ClientConnection) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            frames = self._protocol.take_outgoing()
            if not frames:
                await wake.wait()
                wake.clear()
                continue
            for index, frame in enumerate(frames):
                try:
                    await connection.send(frame, text=True)
                except ConnectionClosed:
                    self._protocol.write_failed(len(frames) - index)
                    return

    def _wake_writer(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return  # not connected yet: the first writer takes what waits
        if threading.get_ident() == self._loop_thread:
            wake.set()
            return
        # A closed loop means nothing will send any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(wake.set)

    async def _handle(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, Registered):
                registered = self._registered
                if registered is not None and not registered.done():
                    registered.set_result(event.service_id)
                await self._call_all(self._on_registered, event.service_id)
            elif isinstance(event, MessageReceived):
                message = event.message
                registering = self._protocol.state is ClientState.REGISTERING
                if message.type is MessageType.ERROR and registering:
                    self._refused(message)
                for handler in self._handlers.get(str(message.type), ()):
                    await self._call(handler, message)
            elif isinstance(event, CommandRefused):
                logger.warning("refused %s from the hub: %s", event.message.type, event.error)
            elif isinstance(event, MalformedFrame):
                logger.warning("malformed frame from the hub: %s", event.error)

    def _refused(self, message: WSMessage) -> None:
        registered = self._registered
        if registered is not None and not registered.done():
            error = (message.payload or {}).get("error", "")
            registered.set_exception(HubRefusedError(f"the hub refused the registration: {error}"))

    async def _call_all(self, callbacks: list[Callback], *args: object) -> None:
        for callback in callbacks:
            await self._call(callback, *args)

    async def _call(self, callback: Callback, *args: object) -> None:
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self._counts["callback_errors"] += 1
            logger.exception("coordinator callback %r raised", callback)


def _stamped(entry: LogEntry) -> LogEntry:
    if entry.timestamp is not None:
        return entry
    return dataclasses.replace(entry, timestamp=datetime.now(timezone.utc))
