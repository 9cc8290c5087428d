"""The coordination hub over WebSocket: :class:`Hub`, the I/O around
:class:`turnout.coordination.HubProtocol`, which decides every answer, every refusal and
every document republished; this module moves bytes and does what the protocol's
:class:`~turnout.coordination.Output` says.

Paths (anything else is refused with HTTP 404 naming them):

- ``/v1/coordination``: services (a :class:`turnout.ws.Coordinator`, or a Go when-v3
  coordinator) register and exchange coordination messages.
- ``/v1/watch?subject=PATTERN[&subject=PATTERN...]``: a watcher, sent every event of the
  hub's bus whose subject matches one of its patterns (:mod:`turnout.ws.watchers`).
- ``/v1/control``: an operator's WebSocket for commands (:mod:`turnout.ws.http`).
- ``GET /healthz``, ``GET /metrics``, ``GET /v1/services``, ``GET /v1/workflows[/ID]``:
  plain HTTP (:mod:`turnout.ws.http`).

**Credentials** (``token=`` or ``auth=``, see :mod:`turnout.coordination.auth`) are read
from the handshake: ``Authorization: Bearer <token>`` or ``?token=``. A missing or unknown
one is refused with HTTP 401 and the reason (``missing bearer token`` / ``invalid
token``), an ambiguous one (two headers, ...) with 400; a watch pattern outside the
credential's ``watch`` list with 403. ``GET /healthz`` needs none.

**TLS.** ``ssl=`` (an :class:`ssl.SSLContext` with the certificate loaded) serves
``wss://`` and ``https://``.

**Limits.** A frame larger than ``max_message_size`` closes the connection with code 1009
(message too big) and a reason giving the sizes. State is bounded: disconnected service
instances and finished workflows are forgotten ``retention`` seconds later (checked every
``retention / 4`` seconds, at most every 60 s), and a service reports at most
``max_workflows`` workflows at a time. Watchers: see :mod:`turnout.ws.watchers`.

**Stopping.** :meth:`Hub.stop` closes the services' connections first, so that every
``disconnected`` event reaches the watchers, then the watchers' (code 1001).

**A fleet.** ``fleet=`` (NATS server URLs) joins the hub to the other hubs on those
servers (:mod:`turnout.ws.fleet`, :mod:`turnout.coordination.fleet`): the control API
lists every hub's services and workflows, each naming its ``hub`` (``hub_id``, default a
generated one), and a command for a workflow another hub holds is routed to it over
NATS, after this hub checked the operator's permission.

**Logging.** One line per connection, registration, refusal and disconnection on the
``turnout.ws.hub`` logger, as ``key=value`` pairs with the peer address and service id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
import weakref
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HTTPRequest
from websockets.http11 import Response as HTTPResponse

from turnout._core import validate_subject
from turnout._errors import InvalidSubjectError
from turnout._message_ids import new_message_id
from turnout.bus import Bus
from turnout.coordination import (
    DEFAULT_MAX_WORKFLOWS,
    DEFAULT_RETENTION,
    HUB_PROTOCOL_VERSION,
    Credential,
    Credentials,
    HandshakeRefusal,
    HubEvent,
    HubProtocol,
    MessageRefused,
    Output,
    Request,
    RequestOutcome,
    RequestSettled,
    ServiceDisconnected,
    ServiceMessage,
    ServiceRegistered,
)
from turnout.coordination.fleet import (
    DEFAULT_EXPIRE_AFTER,
    DEFAULT_HEARTBEAT_INTERVAL,
    FleetCommand,
    FleetProtocol,
    FleetReply,
    generated_hub_id,
    validate_hub_id,
)
from turnout.coordination.fleet_replay import SeenWindow
from turnout.events import SUBJECT_PREFIX, Event
from turnout.protocol import MessageType, ProtocolError, WSMessage
from turnout.ws.dashboard import DASHBOARD_PATH, Dashboards, admit_request
from turnout.ws.http import serve_control, serve_http, service_document, workflow_document
from turnout.ws.watchers import MAX_FLUSH_DEFERRALS, Watchers

if TYPE_CHECKING:
    from turnout.ws.fleet import FleetLink

__all__ = [
    "CONTROL_PATH",
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
CONTROL_PATH = "/v1/control"
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
MAX_WATCH_PATTERNS = 64
_WEBSOCKET_PATHS = (COORDINATION_PATH, WATCH_PATH, CONTROL_PATH, DASHBOARD_PATH)
#: Of a routed command's timeout, the seconds kept for the trip over NATS: the holding
#: hub waits for the service that much less, so its answer arrives within the timeout.
ROUTE_ALLOWANCE = 0.25
# The messages that change what the fleet sees of this hub (progress and logs wait for
# the next heartbeat).
_FLEET_CHANGES = frozenset({MessageType.PHASE_CHANGED, MessageType.WORKFLOW_CREATED})
#: What waits for a request to settle: a command's task, or a routed command's answer.
_Waiter = asyncio.Future[RequestSettled] | Callable[[RequestSettled], None]


class Hub:
    """The coordination hub (see the module docstring). ``port=0`` picks a free port
    (:attr:`port` is the bound one once started). ``bus`` None makes an embedded
    :class:`~turnout.Bus` with node ``node``, closed with the hub; a given bus is left
    open. Use ``async with Hub(...) as hub`` or ``await start()`` / ``await stop()``.

    ``token``: one credential allowed everything; ``auth``: a credentials table (a
    :class:`~turnout.coordination.Credentials`, or the path of its JSON file); neither:
    an open hub. ``ssl``: serve TLS. ``compression="deflate"`` offers permessage-deflate
    to peers; it is off by default, as in Go's WebSocket libraries: it costs CPU per frame
    and per watcher. Every ``ping_interval`` seconds each peer gets a WebSocket ping; one
    that does not answer within as long again is disconnected, and a watcher stalled that
    long is closed with 1008 (None: neither).

    ``hub_id``: this hub's name in a fleet (default: a generated one). ``fleet``: the URL
    (or URLs) of the NATS servers of the fleet to join (see the module docstring), with
    ``heartbeat_interval`` and ``expire_after`` (:mod:`turnout.coordination.fleet`).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8765,
        token: str | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        bus: Bus | None = None,
        *,
        auth: Credentials | str | Path | None = None,
        ssl: ssl_module.SSLContext | None = None,
        node: str = "hub",
        request_timeout: float = 10.0,
        watcher_buffer: int = 1 << 20,
        compression: Literal["deflate"] | None = None,
        ping_interval: float | None = 20.0,
        protocol_version: str = HUB_PROTOCOL_VERSION,
        retention: float = DEFAULT_RETENTION,
        max_workflows: int = DEFAULT_MAX_WORKFLOWS,
        hub_id: str | None = None,
        fleet: str | Sequence[str] | None = None,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        expire_after: float = DEFAULT_EXPIRE_AFTER,
    ) -> None:
        if max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        if not request_timeout > 0:
            raise ValueError("request_timeout must be positive")
        if watcher_buffer < 1:
            raise ValueError("watcher_buffer must be positive")
        credentials = Credentials.load(auth) if isinstance(auth, (str, Path)) else auth
        if token is not None and credentials is not None:
            raise ValueError("give token= or auth=, not both")
        self.host = host
        self._port = port
        self.ssl = ssl
        self.max_message_size = max_message_size
        self.request_timeout = request_timeout
        self.watcher_buffer = watcher_buffer
        self.compression = compression
        self.ping_interval = ping_interval
        self._owns_bus = bus is None
        self.bus = Bus(node) if bus is None else bus
        for credential in credentials or ():
            for pattern in credential.watch:
                try:
                    self.bus.check_pattern(pattern)
                except InvalidSubjectError as exc:
                    raise ValueError(
                        f"credential {credential.name!r} may watch {pattern!r}, which this "
                        f"hub's bus cannot subscribe to: {exc.reason}"
                    ) from None
        self.protocol = HubProtocol(
            protocol_version,
            token,
            credentials=credentials,
            retention=retention,
            max_workflows=max_workflows,
            clock=self._now,
        )
        self.watchers = Watchers(self.bus, watcher_buffer, ping_interval)
        self.dashboards = Dashboards(self)
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._stopping = False
        self._waiters: dict[str, _Waiter] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._pruner: asyncio.TimerHandle | None = None
        self._services: set[ServerConnection] = set()
        self._services_gone = asyncio.Event()
        # The credential each admitted handshake presented, from process_request to the
        # handler (websockets gives them no other place to meet).
        self._admitted: weakref.WeakKeyDictionary[ServerConnection, Credential | None] = (
            weakref.WeakKeyDictionary()
        )
        self._counts = dict.fromkeys(("published", "publish_errors"), 0)
        self.hub_id = generated_hub_id() if hub_id is None else validate_hub_id(hub_id)
        self.fleet: FleetLink | None = None
        if fleet is not None:
            from turnout.ws.fleet import FleetLink  # needs the nats extra

            protocol = FleetProtocol(
                self.hub_id,
                heartbeat_interval=heartbeat_interval,
                expire_after=expire_after,
                clock=self._now,
            )
            servers = [fleet] if isinstance(fleet, str) else list(fleet)
            # A NATS bus carries the events to the other hubs' watchers: they are
            # replayed across its reconnects (turnout.coordination.fleet_replay).
            nats_bus = getattr(self.bus, "nats", None)
            bus_state = None if nats_bus is None else _bus_state(nats_bus)
            if bus_state is not None:
                self.watchers.seen = SeenWindow()
            self.fleet = FleetLink(
                protocol,
                servers,
                self._local_documents,
                self._run_routed,
                bus_state=bus_state,
                deliver=self.watchers.replay,
            )

    def _now(self) -> float:
        loop = self._loop
        return loop.time() if loop is not None else 0.0

    # -- lifecycle --

    async def start(self) -> None:
        """Listens on ``host``:``port``."""
        if self._server is not None:
            raise RuntimeError("the hub is already started")
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self.watchers.start(self._loop)
        self._server = await serve(
            self._handle,
            self.host,
            self._port,
            process_request=self._check_request,
            max_size=self.max_message_size,
            compression=self.compression,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_interval,
            ssl=self.ssl,
        )
        if self.fleet is not None:
            try:
                await self.fleet.start()
            except BaseException:
                self._server.close()
                await self._server.wait_closed()
                self._server = None
                raise
        self._arm_pruner()

    async def stop(self) -> None:
        """Closes the services' connections, then, once their ``disconnected`` events
        are written to the watchers, the watchers' (code 1001); settles pending requests
        as disconnected, and closes the bus if the hub made it. Idempotent."""
        server = self._server
        if server is None or self._stopped is None or self._stopped.is_set() or self._stopping:
            return
        self._stopping = True
        server.close(close_connections=False)  # no new connections
        if self._services:
            self._services_gone.clear()
            await asyncio.gather(
                *(c.close(1001) for c in list(self._services)), return_exceptions=True
            )
            # Each handler publishes its service's `disconnected` as it ends (bounded:
            # a connection's close takes at most its close timeout).
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self._services_gone.wait(), 30)
        if self.fleet is not None:
            await self.fleet.stop()  # after the services' disconnections are in its view
        self.watchers.stop()  # writes what waits, before the close frames
        # The server's own close was spent above on listening no more: watchers and
        # operators are closed here.
        await asyncio.gather(*(c.close(1001) for c in server.connections), return_exceptions=True)
        await server.wait_closed()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pruner is not None:
            self._pruner.cancel()
            self._pruner = None
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
    def base_url(self) -> str:
        """``ws://host:port`` (``wss://`` under TLS)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "wss" if self.ssl is not None else "ws"
        return f"{scheme}://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL services connect to: ``ws://host:port/v1/coordination``."""
        return self.base_url + COORDINATION_PATH

    @property
    def watch_url(self) -> str:
        """The watcher URL without patterns (add ``?subject=PATTERN``)."""
        return self.base_url + WATCH_PATH

    def stats(self) -> dict[str, int]:
        """The protocol's counters (``received``, ``malformed``, ``refused``,
        ``requests``, ``pruned_services``, ``pruned_workflows``, ``connections``,
        ``services``, ``workflows``, ``pending``), and ``published`` / ``publish_errors``
        (events emitted on the bus), ``watchers`` (now), ``watchers_served``,
        ``watcher_delivered``, ``watcher_dropped`` (by the drop_newest policy),
        ``watcher_discarded`` (waiting when a watcher closed), ``watcher_ignored``
        (frames watchers sent), ``watchers_closed_slow`` (closed with 1008); in a fleet,
        the fleet protocol's counters (``fleet_`` and its names: snapshots, ``peers``)
        and its link's (``fleet_commands_routed``, ``fleet_commands_served``, ...)."""
        fleet: dict[str, int] = {}
        if self.fleet is not None:
            counts = {**self.fleet.protocol.stats(), **self.fleet.counts}
            fleet = {f"fleet_{name}": value for name, value in counts.items()}
        return {
            **self.protocol.stats(),
            **self._counts,
            **self.watchers.counts,
            "watchers": len(self.watchers),
            **self.dashboards.counts,
            "dashboards": self.dashboards.open,
            **fleet,
        }

    # -- the fleet's view --

    def _local_documents(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return (
            [service_document(s) for s in self.protocol.services()],
            [workflow_document(w) for w in self.protocol.workflows()],
        )

    def fleet_services(self) -> list[dict[str, Any]]:
        """Every service instance known, this hub's and (in a fleet) the others', as
        ``/v1/services`` documents, each with ``hub``: the id of the hub holding it."""
        services, _ = self._local_documents()
        if self.fleet is None:
            return [{**s, "hub": self.hub_id} for s in services]
        return self.fleet.protocol.services(services)

    def fleet_workflows(self) -> list[dict[str, Any]]:
        """Every workflow known (as :meth:`fleet_services`), each with ``hub``."""
        services, workflows = self._local_documents()
        if self.fleet is None:
            return [{**w, "hub": self.hub_id} for w in workflows]
        return self.fleet.protocol.workflows(services, workflows)

    def fleet_workflow(self, workflow_id: str) -> dict[str, Any] | None:
        """One workflow's document (with ``hub``), or None."""
        if self.fleet is None:
            record = self.protocol.workflow(workflow_id)
            return None if record is None else {**workflow_document(record), "hub": self.hub_id}
        record = self.protocol.workflow(workflow_id)
        local = None if record is None else workflow_document(record)

        def local_service(service_id: str, instance_id: str) -> dict[str, Any] | None:
            found = self.protocol.service(service_id, instance_id)
            return None if found is None else service_document(found)

        return self.fleet.protocol.locate(workflow_id, local, local_service)

    def _fleet_changed(self) -> None:
        if self.fleet is not None:
            self.fleet.changed()

    # -- commands --

    async def pause(
        self,
        workflow_id: str,
        reason: str = "",
        *,
        timeout: float | None = None,
        service: tuple[str, str] | None = None,
        credential: Credential | None = None,
    ) -> RequestSettled:
        """Asks the workflow's service to pause it; settled by ``pausing``/``paused``."""
        routed = await self._route(
            FleetCommand("pause", workflow_id, reason=reason), timeout, service, credential
        )
        if routed is not None:
            return routed
        return await self._request(
            lambda deadline: self.protocol.pause(
                workflow_id, reason, deadline=deadline, service=service, credential=credential
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
        credential: Credential | None = None,
    ) -> RequestSettled:
        """Asks for a resume; settled by ``resuming``/``execution``."""
        routed = await self._route(
            FleetCommand("resume", workflow_id, from_checkpoint=from_checkpoint),
            timeout,
            service,
            credential,
        )
        if routed is not None:
            return routed
        return await self._request(
            lambda deadline: self.protocol.resume(
                workflow_id,
                from_checkpoint,
                deadline=deadline,
                service=service,
                credential=credential,
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
        credential: Credential | None = None,
    ) -> RequestSettled:
        """Asks for a cancellation (``force``: completed at once); settled by
        ``cancelling``/``cancelled``."""
        routed = await self._route(
            FleetCommand("cancel", workflow_id, reason=reason, force=force),
            timeout,
            service,
            credential,
        )
        if routed is not None:
            return routed
        return await self._request(
            lambda deadline: self.protocol.cancel(
                workflow_id,
                reason,
                force,
                deadline=deadline,
                service=service,
                credential=credential,
            ),
            timeout,
        )

    async def status(
        self,
        workflow_id: str,
        *,
        timeout: float | None = None,
        service: tuple[str, str] | None = None,
        credential: Credential | None = None,
    ) -> RequestSettled:
        """Asks for the workflow's status; settled by the ``status_response``."""
        routed = await self._route(
            FleetCommand("status", workflow_id), timeout, service, credential
        )
        if routed is not None:
            return routed
        return await self._request(
            lambda deadline: self.protocol.status(
                workflow_id, deadline=deadline, service=service, credential=credential
            ),
            timeout,
        )

    async def ping(
        self,
        service_id: str,
        instance_id: str = "",
        *,
        timeout: float | None = None,
        credential: Credential | None = None,
    ) -> RequestSettled:
        """An application-level ``ping`` to a service instance; settled by its ``pong``."""
        return await self._request(
            lambda deadline: self.protocol.ping(
                (service_id, instance_id), deadline=deadline, credential=credential
            ),
            timeout,
        )

    async def _route(
        self,
        command: FleetCommand,
        timeout: float | None,
        service: tuple[str, str] | None,
        credential: Credential | None,
    ) -> RequestSettled | None:
        """Sends ``command`` to the hub holding its workflow when that is another hub;
        None when it is this hub's to run (or nobody's: the local path says so)."""
        fleet = self.fleet
        if fleet is None or service is not None:
            return None
        local = self.protocol.workflow(command.workflow_id)
        if local is not None:
            record = self.protocol.service(*local.service)
            if record is not None and record.connection is not None:
                return None
        entry = self.fleet_workflow(command.workflow_id)
        if entry is None or entry["hub"] == self.hub_id:
            return None
        held = (str(entry.get("service_id", "")), str(entry.get("instance_id", "")))
        # The operator's permissions are this hub's to check; the holding hub trusts it.
        self.protocol.check_control(credential, held[0])
        loop = self._running_loop()
        wait = self.request_timeout if timeout is None else timeout
        command = FleetCommand(
            command.command,
            command.workflow_id,
            command.reason,
            command.from_checkpoint,
            command.force,
            timeout=max(wait - ROUTE_ALLOWANCE, wait / 2),
            origin=self.hub_id,
            operator="" if credential is None else credential.name,
        )
        request = Request(
            id=new_message_id(),
            type=MessageType(command.command),
            workflow_id=command.workflow_id,
            service=held,
            connection=("fleet", entry["hub"]),
            frame=command.to_json(),
            deadline=loop.time() + wait,
        )
        reply = await fleet.route(entry["hub"], request.frame, wait)
        if reply.outcome == "error":
            raise LookupError(reply.error)
        response = None
        if reply.response is not None:
            try:
                response = WSMessage.parse(orjson.dumps(reply.response))
            except ProtocolError as exc:
                raise LookupError(f"hub {entry['hub']} answered badly: {exc}") from None
        return RequestSettled(request, RequestOutcome(reply.outcome), response)

    async def _run_routed(
        self, command: FleetCommand, answer: Callable[[FleetReply], None]
    ) -> None:
        """Runs a command another hub routed here, as this hub's own (the operator's
        hub checked the permission). ``answer`` gets the reply from inside the request's
        settling, so that it is written at once, not on a task's next turn."""
        logger.debug(
            "routed command=%s workflow_id=%s origin=%s operator=%s",
            command.command,
            command.workflow_id,
            command.origin or "-",
            command.operator or "-",
        )
        protocol = self.protocol
        workflow_id = command.workflow_id
        makers: dict[str, Callable[[float], Request]] = {
            "pause": lambda d: protocol.pause(workflow_id, command.reason, deadline=d),
            "resume": lambda d: protocol.resume(workflow_id, command.from_checkpoint, deadline=d),
            "cancel": lambda d: protocol.cancel(
                workflow_id, command.reason, command.force, deadline=d
            ),
            "status": lambda d: protocol.status(workflow_id, deadline=d),
        }

        def settle(settled: RequestSettled) -> None:
            response = settled.response
            answer(
                FleetReply(
                    settled.outcome.value,
                    None if response is None else response.document(),
                    hub=self.hub_id,
                )
            )

        try:
            await self._send_request(makers[command.command], command.timeout, settle)
        except (LookupError, RuntimeError) as exc:
            answer(FleetReply("error", error=str(exc), hub=self.hub_id))

    async def _request(
        self, make: Callable[[float], Request], timeout: float | None
    ) -> RequestSettled:
        settled: asyncio.Future[RequestSettled] = self._running_loop().create_future()
        request = await self._send_request(make, timeout, settled)
        try:
            return await settled
        finally:
            self._waiters.pop(request.id, None)

    async def _send_request(
        self, make: Callable[[float], Request], timeout: float | None, waiter: _Waiter
    ) -> Request:
        """Makes the request, sends it to its service and leaves ``waiter`` for its
        settling (a future set, or a function called)."""
        loop = self._running_loop()
        request = make(loop.time() + (self.request_timeout if timeout is None else timeout))
        self._waiters[request.id] = waiter
        self._arm_timer()
        connection = request.connection
        assert isinstance(connection, ServerConnection)
        # A closed connection's reader settles the request as DISCONNECTED.
        with contextlib.suppress(ConnectionClosed):
            await connection.send(request.frame, text=True)
        return request

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

    def _settle(self, settled: RequestSettled) -> bool:
        """Hands ``settled`` to its waiter; True when that wakes a task."""
        waiter = self._waiters.pop(settled.request.id, None)
        if isinstance(waiter, asyncio.Future):
            if not waiter.done():
                waiter.set_result(settled)
                return True
        elif waiter is not None:
            waiter(settled)
        return False

    def _arm_pruner(self) -> None:
        assert self._loop is not None
        every = min(max(self.protocol.retention / 4, 0.01), 60.0)
        self._pruner = self._loop.call_later(every, self._prune)

    def _prune(self) -> None:
        self.protocol.prune()
        self._arm_pruner()

    # -- handshake and connections --

    def _check_request(
        self, connection: ServerConnection, request: HTTPRequest
    ) -> HTTPResponse | None:
        path, _, query = request.path.partition("?")
        peer = _peer(connection)
        if request.headers.get("Upgrade") is None:
            return serve_http(self, connection, request, path, query)
        if path not in _WEBSOCKET_PATHS:
            return self._refusal(
                connection,
                self.protocol.refuse(
                    HandshakeRefusal(
                        404,
                        f"unknown path {path[:200]!r}; services use {COORDINATION_PATH}, "
                        f"watchers {WATCH_PATH}, operators {CONTROL_PATH}",
                        "unknown_path",
                    )
                ),
                peer,
            )
        admission = admit_request(self, request, query, websocket=True)
        if admission.refusal is not None:
            return self._refusal(connection, admission.refusal, peer)
        if path == WATCH_PATH:
            try:
                patterns = watch_patterns(query, self.bus.check_pattern)
            except ValueError as exc:
                return self._refusal(
                    connection,
                    self.protocol.refuse(HandshakeRefusal(400, str(exc), "bad_pattern")),
                    peer,
                )
            for pattern in patterns:
                if not self.protocol.may_watch(admission.credential, pattern):
                    assert admission.credential is not None
                    return self._refusal(
                        connection,
                        self.protocol.refuse(
                            HandshakeRefusal(
                                403,
                                f"credential {admission.credential.name!r} may not watch "
                                f"{pattern!r}",
                                "watch_forbidden",
                            )
                        ),
                        peer,
                    )
        self._admitted[connection] = admission.credential
        return None

    def log_refusal(self, connection: ServerConnection, refusal: HandshakeRefusal) -> None:
        """Logs a refused handshake or HTTP request (one structured line)."""
        logger.warning(
            "refused peer=%s status=%d reason=%s detail=%r",
            _peer(connection),
            refusal.status,
            refusal.label,
            refusal.reason,
        )

    def _refusal(
        self, connection: ServerConnection, refusal: HandshakeRefusal, peer: str
    ) -> HTTPResponse:
        self.log_refusal(connection, refusal)
        response = connection.respond(refusal.status, f"turnout hub: {refusal.reason}\n")
        if refusal.status == HTTPStatus.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = 'Bearer realm="turnout hub"'
        return response

    async def _handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        credential = self._admitted.pop(connection, None)
        path, _, query = connection.request.path.partition("?")
        if path == WATCH_PATH:
            with contextlib.suppress(ConnectionClosed):
                await self.watchers.serve(connection, watch_patterns(query))
        elif path == CONTROL_PATH:
            with contextlib.suppress(ConnectionClosed):
                await serve_control(self, connection, credential)
        elif path == DASHBOARD_PATH:
            with contextlib.suppress(ConnectionClosed):
                await self.dashboards.serve(connection, credential)
        else:
            await self._serve_service(connection, credential)

    async def _serve_service(
        self, connection: ServerConnection, credential: Credential | None
    ) -> None:
        assert connection.request is not None
        protocol = self.protocol
        peer = _peer(connection)
        logger.info(
            "connected peer=%s credential=%s",
            peer,
            "-" if credential is None else credential.name,
        )
        protocol.connection_opened(
            connection, _plain_headers(connection.request.headers), credential
        )
        self._services.add(connection)
        try:
            async for frame in connection:
                out = protocol.receive(connection, frame)
                for reply in out.send:
                    await connection.send(reply, text=True)
                await self._apply(out, peer)
        except ConnectionClosed:
            pass  # a close code the peer or the limits chose; the client sees it
        finally:
            await self._apply(protocol.connection_closed(connection), peer)
            self._services.discard(connection)
            if not self._services:
                self._services_gone.set()

    async def _apply(self, out: Output[HubEvent], peer: str) -> None:
        woken = False
        for event in out.events:
            if isinstance(event, RequestSettled):
                woken = self._settle(event) or woken
        if woken and out.publish and self.fleet is not None:
            # The answers go first: handing an event to a fleet's NATS bus wakes its I/O
            # thread, which takes the GIL for a while. One turn lets the waiting tasks
            # send their answers (a routed command's was written as it settled). On an
            # embedded bus the hand-over is cheap: no turn spent.
            await asyncio.sleep(0)
        for publication in out.publish:
            await self._emit(publication.event_type, publication.data)
        for event in out.events:
            if isinstance(event, ServiceMessage):
                if event.message.type in _FLEET_CHANGES:
                    self._fleet_changed()
            elif isinstance(event, ServiceRegistered):
                self._fleet_changed()
                record = event.service
                logger.info(
                    "registered peer=%s service_id=%s instance_id=%s service_name=%s credential=%s",
                    peer,
                    record.service_id,
                    record.instance_id or "-",
                    record.service_name,
                    record.credential or "-",
                )
            elif isinstance(event, MessageRefused):
                logger.warning(
                    "refused peer=%s type=%s reason=%s detail=%r",
                    peer,
                    event.message.type,
                    event.label,
                    event.reason,
                )
            elif isinstance(event, ServiceDisconnected):
                self._fleet_changed()
                service = event.service
                logger.info(
                    "disconnected peer=%s service_id=%s",
                    peer,
                    "-" if service is None else service.service_id,
                )

    async def _emit(self, event_type: str, data: dict[str, object]) -> None:
        fleet = self.fleet
        try:
            if fleet is not None and fleet.replays:
                # The exact bytes go to the fleet's ring too, for replays to match.
                payload = Event(event_type, data=data)._stamped(self.bus.node).to_json()
                subject = SUBJECT_PREFIX + event_type
                await self.bus.apublish(subject, payload)
                fleet.record(subject, payload)
            else:
                await self.bus.aemit(Event(event_type, data=data))
        except Exception as exc:
            self._counts["publish_errors"] += 1
            logger.error("cannot republish %s on the bus: %s", event_type, exc)
        else:
            self._counts["published"] += 1


def _peer(connection: ServerConnection) -> str:
    address = connection.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else address[0]
        return f"{host}:{address[1]}"
    return str(address)


def watch_patterns(query: str, check: Callable[[str], None] = validate_subject) -> list[str]:
    """The ``subject`` patterns of a watcher URL's query; ``ValueError`` naming what is
    wrong (none given, too many, a pattern ``check`` refuses: the hub's bus's
    :meth:`~turnout.Bus.check_pattern`, so that a NATS-backed hub refuses what NATS
    cannot subscribe to)."""
    patterns = [
        value for key, value in parse_qsl(query, keep_blank_values=True) if key == "subject"
    ]
    if not patterns:
        raise ValueError("a watcher needs at least one subject=PATTERN in its URL")
    if len(patterns) > MAX_WATCH_PATTERNS:
        raise ValueError(f"at most {MAX_WATCH_PATTERNS} subject patterns per watcher")
    for pattern in patterns:
        try:
            check(pattern)
        except InvalidSubjectError as exc:
            raise ValueError(f"invalid subject pattern: {exc}") from None
    return patterns


def _plain_headers(headers: Headers | Mapping[str, str]) -> dict[str, str]:
    if isinstance(headers, Headers):
        return dict(headers.raw_items())
    return dict(headers)


def _bus_state(nats_bus: Any) -> Callable[[], tuple[bool, int]]:
    """Whether a NATS bus's transport is connected, and how often it reconnected."""

    def state() -> tuple[bool, int]:
        stats = nats_bus.stats()
        return bool(stats["connected"]), int(stats["reconnects"])

    return state
