"""The coordination protocol's two ends as sans-I/O state machines: what a service
(:class:`CoordinatorProtocol`) and the hub (:class:`HubProtocol`) do with each message,
without sockets, tasks or timers. The WebSocket client and hub in :mod:`turnout.ws` drive
them; tests drive them directly.

Client (a service)
------------------
::

    proto = CoordinatorProtocol(config, phases, on_outgoing=wake_writer)
    headers = proto.handshake_headers()     # X-Service-Name, X-Service-ID, Authorization
    proto.connection_made()                 # after the handshake: `register` is queued
    frames = proto.take_outgoing()          # send each as a text frame, in order
    events = proto.receive(frame)           # every frame read; answers are queued
    proto.connection_lost()                 # on any disconnect, before dialling again
    proto.send(message)                     # anything the application sends

- On ``registered`` the client re-sends ``phase_changed`` for every non-terminal workflow
  of its :class:`~turnout.phases.PhaseManager`, after the messages queued so far.
- ``ping`` is answered with ``pong`` and ``status`` with ``status_response`` (message
  "workflow not found" for an unknown workflow), both with the request's id.
- ``pause`` / ``resume`` / ``cancel`` call ``phases.pause(id, reason)`` /
  ``phases.resume(id, from_checkpoint)`` / ``phases.cancel(id, reason)`` (``force`` also
  completes the cancellation at once). The phase changes they cause reach the hub like
  every other change: each one the PhaseManager reports becomes a ``phase_changed``
  message. A command the PhaseManager refuses is answered with an ``error`` message with
  the command's id (the hub settles the request with it).
- Outgoing messages wait in a queue of ``queue_size`` (100) frames with a counted overflow
  policy. They are held while disconnected or registering and go out after the next
  ``registered``; the counters survive reconnects. Answers to the hub (``register``,
  ``pong``, ``status_response``, the re-sent phases) belong to one connection: they go out
  first and are discarded when it is lost.
- ``on_outgoing()`` is called, from whatever thread queued something (phase callbacks run
  on the thread that changed the phase), whenever there may be frames to take: make it
  cheap and thread-safe (``loop.call_soon_threadsafe(event.set)``).

Hub
---
::

    hub = HubProtocol(protocol_version="1.0", token=secret)
    refusal = hub.authorize(headers)        # None, or why to refuse the handshake
    hub.connection_opened(conn, headers)    # conn: any hashable key of the I/O layer's
    out = hub.receive(conn, frame)          # -> HubOutput(replies, events)
    request = hub.pause(workflow_id, reason, deadline=now + 10)   # also resume/cancel/status/ping
    send request.frame on request.connection
    events = hub.expire(now)                # RequestSettled(EXPIRED) past their deadline
    events = hub.connection_closed(conn)

- ``register`` is answered with ``registered`` (same id). The negotiated protocol version
  is the lower of the service's and the hub's ``major.minor`` (a service that sends none
  speaks "1.0", as Go's client defaults); a version that is not ``major.minor`` refuses
  the registration.
- The hub tracks services (by service id and instance id) and their workflows' phases
  from ``workflow_created``, ``phase_changed``, ``progress``, ``checkpoint`` and
  ``status_response``. Workflows stay known across a service's reconnects.
- Requests are settled by the answer with their id (``status_response``, ``pong``; an
  ``error`` refuses), a command also by the ``phase_changed`` it asks for (pause: pausing
  or paused; resume: resuming or execution; cancel: cancelling or cancelled; a terminal
  phase it did not ask for refuses it), and otherwise by :meth:`HubProtocol.expire` or the
  service's disconnection. Deadlines are numbers on the caller's clock (``time.monotonic``).
- A frame that is not a valid message, a message before ``register``, an unknown type or
  a hub-to-service type is answered with an ``error`` message and otherwise ignored; the
  connection stays up.
"""

from __future__ import annotations

import dataclasses
import heapq
import hmac
import re
import secrets
import string
import threading
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from turnout._core import PhaseManager, PhaseState
from turnout._errors import PhaseError
from turnout.phases import Phase
from turnout.protocol import (
    HUB_TO_SERVICE,
    CancelPayload,
    CheckpointPayload,
    ErrorPayload,
    MessageType,
    PausePayload,
    PhaseChangedPayload,
    ProgressPayload,
    ProtocolError,
    RegisteredPayload,
    RegisterPayload,
    ResumePayload,
    StatusPayload,
    StatusResponsePayload,
    WorkflowCreatedPayload,
    WSMessage,
)

__all__ = [
    "DEFAULT_PROTOCOL_VERSION",
    "HUB_PROTOCOL_VERSION",
    "ClientEvent",
    "ClientState",
    "CommandRefused",
    "CoordinatorConfig",
    "CoordinatorProtocol",
    "HubEvent",
    "HubOutput",
    "HubProtocol",
    "MalformedFrame",
    "MessageReceived",
    "MessageRefused",
    "Registered",
    "Request",
    "RequestOutcome",
    "RequestSettled",
    "ServiceDisconnected",
    "ServiceMessage",
    "ServiceRecord",
    "ServiceRegistered",
    "WorkflowRecord",
    "negotiate_protocol_version",
    "parse_protocol_version",
]

#: What a service speaks when its config names no version (Go's client default).
DEFAULT_PROTOCOL_VERSION = "1.0"
#: What this hub speaks.
HUB_PROTOCOL_VERSION = "1.0"

_VERSION = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")


def parse_protocol_version(text: str) -> tuple[int, int]:
    """``"major.minor"`` as numbers; ``ValueError`` for anything else."""
    m = _VERSION.fullmatch(text)
    if m is None:
        raise ValueError(f"protocol version must be 'major.minor', not {text[:32]!r}")
    return int(m[1]), int(m[2])


def negotiate_protocol_version(service: str, hub: str) -> str:
    """The version both ends speak: the lower ``major.minor`` of the two (an empty service
    version is ``DEFAULT_PROTOCOL_VERSION``). ``ValueError`` for a malformed version."""
    ours = parse_protocol_version(service or DEFAULT_PROTOCOL_VERSION)
    theirs = parse_protocol_version(hub)
    low = min(ours, theirs)
    return f"{low[0]}.{low[1]}"


@dataclass(frozen=True)
class CoordinatorConfig:
    """How a service connects to a hub (Go's ``coordinator.Config``; delays in seconds).
    ``reconnect_max_attempts`` 0 means no limit; ``token`` is sent as a bearer token."""

    when_url: str
    service_name: str
    service_id: str = ""
    instance_id: str = ""
    capabilities: tuple[str, ...] = ()
    version: str = ""
    protocol_version: str = DEFAULT_PROTOCOL_VERSION
    schema_version: int = 0
    reconnect_initial_delay: float = 1.0
    reconnect_max_delay: float = 30.0
    reconnect_backoff_factor: float = 2.0
    reconnect_max_attempts: int = 0
    ping_interval: float = 30.0
    token: str | None = None

    def __post_init__(self) -> None:
        if not self.service_name:
            raise ValueError("service_name must be set")
        object.__setattr__(self, "capabilities", tuple(self.capabilities))
        parse_protocol_version(self.protocol_version or DEFAULT_PROTOCOL_VERSION)
        if not 0 < self.reconnect_initial_delay <= self.reconnect_max_delay:
            raise ValueError("need 0 < reconnect_initial_delay <= reconnect_max_delay")
        if self.reconnect_backoff_factor < 1:
            raise ValueError("reconnect_backoff_factor must be at least 1")
        if self.reconnect_max_attempts < 0:
            raise ValueError("reconnect_max_attempts must be 0 (no limit) or more")
        if not self.ping_interval > 0:
            raise ValueError("ping_interval must be positive")

    def reconnect_delay(self, attempt: int) -> float:
        """Seconds to wait before reconnect attempt ``attempt`` (1, 2, ...): exponential
        from ``reconnect_initial_delay``, capped at ``reconnect_max_delay``."""
        exponent = max(attempt - 1, 0)
        delay = self.reconnect_initial_delay
        for _ in range(exponent):
            delay *= self.reconnect_backoff_factor
            if delay >= self.reconnect_max_delay:
                return self.reconnect_max_delay
        return delay


# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    """The hub accepted the registration; ``service_id`` is the one it confirmed."""

    service_id: str
    payload: RegisteredPayload


@dataclass(frozen=True)
class MessageReceived:
    """A valid message from the hub (after the built-in handling): for ``on_message``."""

    message: WSMessage


@dataclass(frozen=True)
class CommandRefused:
    """The PhaseManager refused a ``pause``/``resume``/``cancel``; the hub was told."""

    message: WSMessage
    error: PhaseError


@dataclass(frozen=True)
class MalformedFrame:
    """A frame that is not a valid message (or a payload of the wrong shape).
    ``connection`` is the hub's key for the sender (None on the client side)."""

    error: ProtocolError
    connection: Hashable | None = None


ClientEvent = Registered | MessageReceived | CommandRefused | MalformedFrame


class ClientState(Enum):
    DISCONNECTED = "disconnected"
    REGISTERING = "registering"
    REGISTERED = "registered"


ClientOverflow = Literal["drop_oldest", "drop_newest"]

_COMMAND_TYPES = frozenset({MessageType.PAUSE, MessageType.RESUME, MessageType.CANCEL})


class CoordinatorProtocol:
    """The service end (see the module docstring). Thread-safe: phase changes may be
    reported from any thread while the I/O layer calls the other methods."""

    def __init__(
        self,
        config: CoordinatorConfig,
        phases: PhaseManager | None = None,
        *,
        queue_size: int = 100,
        overflow: ClientOverflow = "drop_oldest",
        on_outgoing: Callable[[], object] | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        if overflow not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"overflow must be 'drop_oldest' or 'drop_newest', not {overflow!r}")
        self.config = config
        self.phases = PhaseManager() if phases is None else phases
        self.service_id = config.service_id
        self._queue_size = queue_size
        self._overflow = overflow
        self._on_outgoing = on_outgoing
        self._lock = threading.Lock()
        self._state = ClientState.DISCONNECTED
        self._answers: deque[bytes] = deque()  # this connection's: sent first, lost with it
        self._queue: deque[bytes] = deque()  # the application's: bounded, kept across links
        self._counts = dict.fromkeys(
            ("queued", "dropped", "sent", "received", "malformed", "discarded", "connections"),
            0,
        )
        # The PhaseManager cannot forget a callback: hold this object weakly so a discarded
        # protocol is not kept alive by it (the callback then does nothing).
        self.phases.on_phase_changed(_PhaseRelay(weakref.ref(self)))

    # -- connection lifecycle --

    @property
    def state(self) -> ClientState:
        return self._state

    def handshake_headers(self) -> dict[str, str]:
        """The HTTP headers of the WebSocket handshake (the service id is the one the hub
        confirmed last, if it assigned one)."""
        headers = {"X-Service-Name": self.config.service_name}
        if self.service_id:
            headers["X-Service-ID"] = self.service_id
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        return headers

    def connection_made(self) -> None:
        """The WebSocket is open: queues ``register`` ahead of everything."""
        c = self.config
        register = WSMessage.with_payload(
            MessageType.REGISTER,
            RegisterPayload(
                service_name=c.service_name,
                service_id=self.service_id,
                instance_id=c.instance_id,
                capabilities=c.capabilities,
                version=c.version,
                protocol_version=c.protocol_version or DEFAULT_PROTOCOL_VERSION,
                schema_version=c.schema_version,
            ),
        )
        with self._lock:
            self._state = ClientState.REGISTERING
            self._counts["discarded"] += len(self._answers)
            self._answers.clear()
            self._answers.append(register.to_json())
            self._counts["connections"] += 1
        self._wake()

    def connection_lost(self) -> None:
        """The connection is gone: its unsent answers are discarded; the queue waits for
        the next registration."""
        with self._lock:
            self._state = ClientState.DISCONNECTED
            self._counts["discarded"] += len(self._answers)
            self._answers.clear()

    # -- outgoing --

    def send(self, message: WSMessage | bytes) -> bool:
        """Queues a message (or an already written frame) for the hub. False when the
        queue was full and the policy dropped this message (drop_newest); with drop_oldest
        the oldest queued one makes room. Every drop is counted."""
        frame = message.to_json() if isinstance(message, WSMessage) else bytes(message)
        with self._lock:
            if len(self._queue) >= self._queue_size:
                self._counts["dropped"] += 1
                if self._overflow == "drop_newest":
                    return False
                self._queue.popleft()
            self._queue.append(frame)
            self._counts["queued"] += 1
        self._wake()
        return True

    def take_outgoing(self) -> list[bytes]:
        """The frames to send now, in order (answers first; queued messages once
        registered). Nothing while disconnected."""
        with self._lock:
            if self._state is ClientState.DISCONNECTED:
                return []
            frames = list(self._answers)
            self._answers.clear()
            if self._state is ClientState.REGISTERED:
                frames.extend(self._queue)
                self._queue.clear()
            self._counts["sent"] += len(frames)
        return frames

    @property
    def pending(self) -> int:
        """Frames waiting (answers and queued messages)."""
        with self._lock:
            return len(self._answers) + len(self._queue)

    def stats(self) -> dict[str, int]:
        """``queued`` (messages given to send), ``dropped`` (by the queue's policy),
        ``sent`` (frames taken), ``received``, ``malformed``, ``discarded`` (answers lost
        with their connection), ``connections`` (made), ``pending``."""
        with self._lock:
            counts = dict(self._counts)
            counts["pending"] = len(self._answers) + len(self._queue)
        return counts

    # -- incoming --

    def receive(self, data: bytes | str | WSMessage) -> list[ClientEvent]:
        """Handles one frame from the hub; answers are queued (see ``take_outgoing``) and
        what the application should hear about is returned."""
        if isinstance(data, WSMessage):
            message = data
        else:
            try:
                message = WSMessage.parse(data)
            except ProtocolError as exc:
                with self._lock:
                    self._counts["malformed"] += 1
                return [MalformedFrame(exc)]
        with self._lock:
            self._counts["received"] += 1
        events: list[ClientEvent] = []
        kind = message.type
        try:
            if kind is MessageType.REGISTERED:
                if self._state is not ClientState.DISCONNECTED:  # else: a stray, ignored
                    events.append(self._registered(message))
            elif kind is MessageType.PING:
                self._answer(WSMessage(message.id, MessageType.PONG, message.workflow_id))
            elif kind is MessageType.STATUS:
                self._status(message)
            elif kind in _COMMAND_TYPES:
                refused = self._command(message)
                if refused is not None:
                    events.append(refused)
        except ProtocolError as exc:
            with self._lock:
                self._counts["malformed"] += 1
            events.append(MalformedFrame(exc))
            if kind is not MessageType.REGISTERED:
                self._answer(_error_reply(message, message.workflow_id, str(exc)))
        events.append(MessageReceived(message))
        return events

    def _registered(self, message: WSMessage) -> Registered:
        payload = message.payload_as(RegisteredPayload)
        with self._lock:
            self.service_id = payload.service_id or self.service_id
            self._state = ClientState.REGISTERED
            # What waited goes first, then the current phases: the hub ends on the truth.
            # The snapshot is read under the lock so a change reported meanwhile is queued
            # after it, never before it.
            self._answers.extend(self._queue)
            self._queue.clear()
            for state in self.phases.active_workflows():
                self._answers.append(_phase_changed(state).to_json())
        self._wake()
        return Registered(self.service_id, payload)

    def _status(self, message: WSMessage) -> None:
        workflow_id = message.payload_as(StatusPayload).workflow_id or message.workflow_id
        state = self.phases.get_state(workflow_id)
        if state is None:
            answer = StatusResponsePayload(workflow_id, message="workflow not found")
        else:
            answer = StatusResponsePayload(
                workflow_id, state.phase, state.progress, state.current_action
            )
        self._answer(
            WSMessage.with_payload(MessageType.STATUS_RESPONSE, answer, workflow_id, id=message.id)
        )

    def _command(self, message: WSMessage) -> CommandRefused | None:
        pm = self.phases
        workflow_id = message.workflow_id
        try:
            if message.type is MessageType.PAUSE:
                pause = message.payload_as(PausePayload)
                workflow_id = pause.workflow_id or message.workflow_id
                pm.pause(workflow_id, pause.reason)
            elif message.type is MessageType.RESUME:
                resume = message.payload_as(ResumePayload)
                workflow_id = resume.workflow_id or message.workflow_id
                pm.resume(workflow_id, resume.from_checkpoint)
            else:
                cancel = message.payload_as(CancelPayload)
                workflow_id = cancel.workflow_id or message.workflow_id
                if not (cancel.force and pm.get_phase(workflow_id) is Phase.CANCELLING):
                    pm.cancel(workflow_id, cancel.reason)
                if cancel.force:
                    pm.complete_cancellation(workflow_id)
        except PhaseError as exc:
            self._answer(_error_reply(message, workflow_id, str(exc)))
            return CommandRefused(message, exc)
        return None

    def _answer(self, message: WSMessage) -> None:
        frame = message.to_json()
        with self._lock:
            if self._state is ClientState.DISCONNECTED:
                self._counts["discarded"] += 1
                return
            self._answers.append(frame)
        self._wake()

    def _phase_changed(self, state: PhaseState) -> None:
        self.send(_phase_changed(state))

    def _wake(self) -> None:
        if self._on_outgoing is not None:
            self._on_outgoing()


class _PhaseRelay:
    """The PhaseManager callback of a :class:`CoordinatorProtocol`, holding it weakly."""

    __slots__ = ("_target",)

    def __init__(self, target: weakref.ref[CoordinatorProtocol]) -> None:
        self._target = target

    def __call__(self, state: PhaseState) -> None:
        protocol = self._target()
        if protocol is not None:
            protocol._phase_changed(state)


def _phase_changed(state: PhaseState) -> WSMessage:
    previous = state.previous_phase
    return WSMessage.with_payload(
        MessageType.PHASE_CHANGED,
        PhaseChangedPayload(
            workflow_id=state.workflow_id,
            from_phase=previous if previous is not None else "",
            to_phase=state.phase,
            checkpoint_id=state.checkpoint_id,
            reason=state.reason,
        ),
    )


def _error_reply(request: WSMessage, workflow_id: str, error: str) -> WSMessage:
    return WSMessage.with_payload(
        MessageType.ERROR,
        ErrorPayload(workflow_id=workflow_id, error=error, recoverable=True),
        workflow_id,
        id=request.id,
    )


# --- hub ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceRecord:
    """A registered service instance, as the hub knows it. ``protocol_version`` is the
    negotiated one; ``connection`` is None once it disconnected."""

    service_id: str
    instance_id: str
    service_name: str
    capabilities: tuple[str, ...]
    version: str
    protocol_version: str
    requested_protocol_version: str
    schema_version: int
    connection: Hashable | None
    registered_at: datetime

    @property
    def key(self) -> tuple[str, str]:
        return (self.service_id, self.instance_id)


@dataclass(frozen=True)
class WorkflowRecord:
    """A workflow as the hub last heard of it. ``phase`` is a :class:`Phase` (or the string
    a service sent); ``service`` is the (service id, instance id) that reports it."""

    workflow_id: str
    service: tuple[str, str]
    phase: Phase | str = Phase.PENDING
    previous_phase: Phase | str = ""
    reason: str = ""
    checkpoint_id: str = ""
    progress: float = 0.0
    current_action: str = ""
    parent_workflow_id: str = ""
    root_workflow_id: str = ""
    updated_at: datetime | None = None


class RequestOutcome(Enum):
    ANSWERED = "answered"
    """The service answered (status, pong) or the workflow reached the phase asked for."""
    REFUSED = "refused"
    """The service answered with an error, or the workflow ended in another terminal phase."""
    EXPIRED = "expired"
    """The deadline passed first."""
    DISCONNECTED = "disconnected"
    """The service's connection closed first."""


@dataclass(frozen=True)
class Request:
    """A hub-to-service request: send ``frame`` on ``connection``, then wait for its
    :class:`RequestSettled` event."""

    id: str
    type: MessageType
    workflow_id: str
    service: tuple[str, str]
    connection: Hashable
    frame: bytes
    deadline: float
    settling_phases: frozenset[Phase] = frozenset()


@dataclass(frozen=True)
class RequestSettled:
    """A request's end; ``response`` is the message that settled it (None when it expired
    or the service disconnected)."""

    request: Request
    outcome: RequestOutcome
    response: WSMessage | None = None


@dataclass(frozen=True)
class ServiceRegistered:
    connection: Hashable
    service: ServiceRecord


@dataclass(frozen=True)
class ServiceDisconnected:
    connection: Hashable
    service: ServiceRecord | None


@dataclass(frozen=True)
class ServiceMessage:
    """A valid message from a registered service (every type, for republishing)."""

    connection: Hashable
    service: tuple[str, str]
    message: WSMessage


@dataclass(frozen=True)
class MessageRefused:
    """A valid message the hub would not take (sent before ``register``, unknown type, a
    hub-to-service type, a refused registration); the sender got an ``error`` reply."""

    connection: Hashable
    message: WSMessage
    reason: str


HubEvent = (
    ServiceRegistered
    | ServiceDisconnected
    | ServiceMessage
    | MessageRefused
    | MalformedFrame
    | RequestSettled
)


@dataclass(frozen=True)
class HubOutput:
    """What one received frame calls for: ``replies`` to send back on its connection, in
    order, and ``events`` for the hub's owner."""

    replies: list[bytes] = field(default_factory=list)
    events: list[HubEvent] = field(default_factory=list)


@dataclass
class _Connection:
    headers: dict[str, str]
    service: tuple[str, str] | None = None


_SETTLING_PHASES = {
    MessageType.PAUSE: frozenset({Phase.PAUSING, Phase.PAUSED}),
    MessageType.RESUME: frozenset({Phase.RESUMING, Phase.EXECUTION}),
    MessageType.CANCEL: frozenset({Phase.CANCELLING, Phase.CANCELLED}),
}
_TERMINAL = frozenset(p for p in Phase if p.is_terminal)
_ANSWER_TYPES = frozenset({MessageType.STATUS_RESPONSE, MessageType.PONG})
_ID_ALPHABET = string.ascii_lowercase + string.digits


class HubProtocol:
    """The hub end (see the module docstring). Not thread-safe: drive it from one thread
    (the hub's event loop)."""

    def __init__(
        self, protocol_version: str = HUB_PROTOCOL_VERSION, token: str | None = None
    ) -> None:
        parse_protocol_version(protocol_version)
        self.protocol_version = protocol_version
        self._token = token
        self._connections: dict[Hashable, _Connection] = {}
        self._services: dict[tuple[str, str], ServiceRecord] = {}
        self._workflows: dict[str, WorkflowRecord] = {}
        self._pending: dict[str, Request] = {}
        self._deadlines: list[tuple[float, int, str]] = []  # a heap; settled ids are skipped
        self._sequence = 0
        self._counts = dict.fromkeys(("received", "malformed", "refused", "requests"), 0)

    # -- connections --

    def authorize(self, headers: Mapping[str, str]) -> str | None:
        """None when the handshake may proceed, else the reason to refuse it: with a token
        configured, the ``Authorization: Bearer <token>`` header must carry it."""
        if self._token is None:
            return None
        given = _header(headers, "Authorization")
        if given is None or not given.startswith("Bearer "):
            return "missing bearer token"
        if not hmac.compare_digest(given[len("Bearer ") :].encode(), self._token.encode()):
            return "invalid token"
        return None

    def connection_opened(
        self, connection: Hashable, headers: Mapping[str, str] | None = None
    ) -> None:
        """A service connected (its handshake headers give defaults for ``register``)."""
        self._connections[connection] = _Connection(dict(headers or {}))

    def connection_closed(self, connection: Hashable) -> list[HubEvent]:
        """A connection ended: its service is marked disconnected and its pending requests
        settle as DISCONNECTED."""
        state = self._connections.pop(connection, None)
        if state is None:
            return []
        events: list[HubEvent] = []
        for request in [r for r in self._pending.values() if r.connection == connection]:
            events.append(self._settle(request, RequestOutcome.DISCONNECTED, None))
        record = None
        if state.service is not None:
            record = self._services.get(state.service)
            if record is not None and record.connection == connection:
                record = dataclasses.replace(record, connection=None)
                self._services[state.service] = record
        events.append(ServiceDisconnected(connection, record))
        return events

    # -- incoming --

    def receive(self, connection: Hashable, data: bytes | str) -> HubOutput:
        """Handles one frame from ``connection`` (which must have been opened)."""
        state = self._connections.get(connection)
        if state is None:
            raise KeyError(f"unknown connection {connection!r}: call connection_opened first")
        out = HubOutput()
        try:
            message = WSMessage.parse(data)
        except ProtocolError as exc:
            self._counts["malformed"] += 1
            out.replies.append(_hub_error("", f"malformed message: {exc}"))
            out.events.append(MalformedFrame(exc, connection))
            return out
        self._counts["received"] += 1
        try:
            if message.type is MessageType.REGISTER:
                self._register(connection, state, message, out)
            elif state.service is None:
                self._refuse(connection, message, "not registered: send register first", out)
            elif not message.known_type:
                self._refuse(connection, message, f"unknown message type {message.type}", out)
            elif message.type in HUB_TO_SERVICE:
                self._refuse(connection, message, f"{message.type} is sent by the hub", out)
            else:
                self._track(state.service, message, out)
                out.events.append(ServiceMessage(connection, state.service, message))
        except ProtocolError as exc:
            self._counts["malformed"] += 1
            out.replies.append(_hub_error(message.workflow_id, str(exc), reply_to=message.id))
            out.events.append(MalformedFrame(exc, connection))
        return out

    def _refuse(
        self, connection: Hashable, message: WSMessage, reason: str, out: HubOutput
    ) -> None:
        self._counts["refused"] += 1
        out.replies.append(_hub_error(message.workflow_id, reason, reply_to=message.id))
        out.events.append(MessageRefused(connection, message, reason))

    def _register(
        self, connection: Hashable, state: _Connection, message: WSMessage, out: HubOutput
    ) -> None:
        payload = message.payload_as(RegisterPayload)
        name = payload.service_name or _header(state.headers, "X-Service-Name") or ""
        if not name:
            self._refuse(connection, message, "register: service_name is required", out)
            return
        try:
            negotiated = negotiate_protocol_version(payload.protocol_version, self.protocol_version)
        except ValueError as exc:
            self._refuse(connection, message, f"register: {exc}", out)
            return
        service_id = (
            payload.service_id
            or _header(state.headers, "X-Service-ID")
            or f"{name}-{''.join(secrets.choice(_ID_ALPHABET) for _ in range(8))}"
        )
        record = ServiceRecord(
            service_id=service_id,
            instance_id=payload.instance_id,
            service_name=name,
            capabilities=payload.capabilities,
            version=payload.version,
            protocol_version=negotiated,
            requested_protocol_version=payload.protocol_version or DEFAULT_PROTOCOL_VERSION,
            schema_version=payload.schema_version,
            connection=connection,
            registered_at=message.timestamp,
        )
        # The newest connection of a service instance owns it (an old one may linger
        # half-dead after a reconnect).
        self._services[record.key] = record
        state.service = record.key
        answer = RegisteredPayload(
            service_id=service_id,
            instance_id=payload.instance_id,
            message="registered",
            protocol_version=negotiated,
            hub_protocol_version=self.protocol_version,
        )
        out.replies.append(
            WSMessage.with_payload(MessageType.REGISTERED, answer, "", id=message.id).to_json()
        )
        out.events.append(ServiceRegistered(connection, record))

    def _track(self, service: tuple[str, str], message: WSMessage, out: HubOutput) -> None:
        kind = message.type
        pending = self._pending.get(message.id)
        if pending is not None and pending.service == service:
            if kind is MessageType.ERROR:
                out.events.append(self._settle(pending, RequestOutcome.REFUSED, message))
            elif kind in _ANSWER_TYPES or kind is MessageType.PHASE_CHANGED:
                out.events.append(self._settle(pending, RequestOutcome.ANSWERED, message))
        if kind is MessageType.PHASE_CHANGED:
            changed = message.payload_as(PhaseChangedPayload)
            workflow_id = changed.workflow_id or message.workflow_id
            self._update(
                workflow_id,
                service,
                message,
                phase=changed.to_phase,
                previous_phase=changed.from_phase,
                reason=changed.reason,
                **({"checkpoint_id": changed.checkpoint_id} if changed.checkpoint_id else {}),
            )
            out.events.extend(self._settle_by_phase(workflow_id, changed.to_phase, message))
        elif kind is MessageType.WORKFLOW_CREATED:
            created = message.payload_as(WorkflowCreatedPayload)
            self._update(
                created.workflow_id or message.workflow_id,
                service,
                message,
                parent_workflow_id=created.parent_workflow_id,
                root_workflow_id=created.root_workflow_id,
            )
        elif kind is MessageType.PROGRESS:
            progress = message.payload_as(ProgressPayload)
            changes: dict[str, Any] = {"progress": progress.percent}
            if progress.action_id:
                changes["current_action"] = progress.action_id
            self._update(progress.workflow_id or message.workflow_id, service, message, **changes)
        elif kind is MessageType.CHECKPOINT:
            checkpoint = message.payload_as(CheckpointPayload)
            self._update(
                checkpoint.workflow_id or message.workflow_id,
                service,
                message,
                checkpoint_id=checkpoint.checkpoint_id,
            )
        elif kind is MessageType.STATUS_RESPONSE:
            status = message.payload_as(StatusResponsePayload)
            if status.phase:  # "workflow not found" answers carry no phase
                self._update(
                    status.workflow_id or message.workflow_id,
                    service,
                    message,
                    phase=status.phase,
                    progress=status.progress,
                    current_action=status.current_action,
                )

    def _update(
        self, workflow_id: str, service: tuple[str, str], message: WSMessage, **changes: Any
    ) -> None:
        if not workflow_id:
            return
        record = self._workflows.get(workflow_id) or WorkflowRecord(workflow_id, service)
        self._workflows[workflow_id] = dataclasses.replace(
            record, service=service, updated_at=message.timestamp, **changes
        )

    def _settle_by_phase(
        self, workflow_id: str, phase: Phase | str, message: WSMessage
    ) -> list[HubEvent]:
        events: list[HubEvent] = []
        for request in [r for r in self._pending.values() if r.workflow_id == workflow_id]:
            if not request.settling_phases:
                continue
            if phase in request.settling_phases:
                events.append(self._settle(request, RequestOutcome.ANSWERED, message))
            elif phase in _TERMINAL:
                events.append(self._settle(request, RequestOutcome.REFUSED, message))
        return events

    def _settle(
        self, request: Request, outcome: RequestOutcome, response: WSMessage | None
    ) -> RequestSettled:
        del self._pending[request.id]
        return RequestSettled(request, outcome, response)

    # -- requests --

    def pause(
        self,
        workflow_id: str,
        reason: str = "",
        *,
        deadline: float,
        service: tuple[str, str] | None = None,
    ) -> Request:
        """A ``pause`` for the service that reports ``workflow_id`` (or ``service``).
        ``LookupError`` when no connected service has it."""
        return self._request(
            MessageType.PAUSE, PausePayload(workflow_id, reason), deadline, service
        )

    def resume(
        self,
        workflow_id: str,
        from_checkpoint: str = "",
        *,
        deadline: float,
        service: tuple[str, str] | None = None,
    ) -> Request:
        return self._request(
            MessageType.RESUME, ResumePayload(workflow_id, from_checkpoint), deadline, service
        )

    def cancel(
        self,
        workflow_id: str,
        reason: str = "",
        force: bool = False,
        *,
        deadline: float,
        service: tuple[str, str] | None = None,
    ) -> Request:
        return self._request(
            MessageType.CANCEL, CancelPayload(workflow_id, reason, force), deadline, service
        )

    def status(
        self, workflow_id: str, *, deadline: float, service: tuple[str, str] | None = None
    ) -> Request:
        return self._request(MessageType.STATUS, StatusPayload(workflow_id), deadline, service)

    def ping(self, service: tuple[str, str], *, deadline: float) -> Request:
        """An application-level ``ping`` to a service instance (settled by its ``pong``)."""
        return self._send_request(WSMessage.new(MessageType.PING), service, deadline)

    def _request(
        self,
        kind: MessageType,
        payload: PausePayload | ResumePayload | CancelPayload | StatusPayload,
        deadline: float,
        service: tuple[str, str] | None,
    ) -> Request:
        if service is None:
            workflow = self._workflows.get(payload.workflow_id)
            if workflow is None:
                raise LookupError(f"workflow not found: {payload.workflow_id}")
            service = workflow.service
        return self._send_request(
            WSMessage.with_payload(kind, payload), service, deadline, _SETTLING_PHASES.get(kind)
        )

    def _send_request(
        self,
        message: WSMessage,
        service: tuple[str, str],
        deadline: float,
        settling: frozenset[Phase] | None = None,
    ) -> Request:
        record = self._services.get(service)
        if record is None or record.connection is None:
            raise LookupError(f"service not connected: {service[0]}")
        assert isinstance(message.type, MessageType)
        request = Request(
            id=message.id,
            type=message.type,
            workflow_id=message.workflow_id,
            service=service,
            connection=record.connection,
            frame=message.to_json(),
            deadline=deadline,
            settling_phases=settling or frozenset(),
        )
        self._pending[request.id] = request
        self._sequence += 1
        heapq.heappush(self._deadlines, (deadline, self._sequence, request.id))
        self._counts["requests"] += 1
        return request

    def expire(self, now: float) -> list[RequestSettled]:
        """Settles, as EXPIRED, every pending request whose deadline is at or before ``now``."""
        expired = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, request_id = heapq.heappop(self._deadlines)
            request = self._pending.get(request_id)
            if request is not None:
                expired.append(self._settle(request, RequestOutcome.EXPIRED, None))
        return expired

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline of a pending request (when to call ``expire`` next)."""
        while self._deadlines and self._deadlines[0][2] not in self._pending:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else None

    # -- what the hub knows --

    def services(self) -> list[ServiceRecord]:
        return list(self._services.values())

    def service(self, service_id: str, instance_id: str = "") -> ServiceRecord | None:
        return self._services.get((service_id, instance_id))

    def workflows(self) -> list[WorkflowRecord]:
        return list(self._workflows.values())

    def workflow(self, workflow_id: str) -> WorkflowRecord | None:
        return self._workflows.get(workflow_id)

    def forget_workflow(self, workflow_id: str) -> bool:
        """Stops tracking a workflow (the table is not pruned by itself)."""
        return self._workflows.pop(workflow_id, None) is not None

    def pending_requests(self) -> list[Request]:
        return list(self._pending.values())

    def stats(self) -> dict[str, int]:
        """``received`` / ``malformed`` / ``refused`` frames, ``requests`` made, and the
        current ``connections``, ``services``, ``workflows``, ``pending``."""
        return {
            **self._counts,
            "connections": len(self._connections),
            "services": len(self._services),
            "workflows": len(self._workflows),
            "pending": len(self._pending),
        }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    folded = name.lower()
    for key, value in headers.items():
        if key.lower() == folded:
            return value
    return None


def _hub_error(workflow_id: str, error: str, *, reply_to: str | None = None) -> bytes:
    return WSMessage.with_payload(
        MessageType.ERROR,
        ErrorPayload(workflow_id=workflow_id, error=error, recoverable=True),
        workflow_id,
        id=reply_to,
    ).to_json()
