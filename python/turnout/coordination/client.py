"""The service end of the coordination protocol, sans I/O: what a service does with each
message from the hub, without sockets, tasks or timers. :class:`turnout.ws.Coordinator`
drives it over WebSocket; tests drive it directly.

::

    proto = CoordinatorProtocol(config, phases, on_outgoing=wake_writer)
    headers = proto.handshake_headers()     # X-Service-Name, X-Service-ID, Authorization
    proto.connection_made()                 # after the handshake: `register` is queued
    frames = proto.take_outgoing()          # send each as a text frame, in order
    proto.write_failed(len(frames) - sent)  # the link dropped: the protocol re-queues
    out = proto.receive(frame)              # every frame read -> Output (events)
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
  first and are discarded when it is lost. When a write fails, :meth:`write_failed` puts
  the application's unsent messages back in the queue and drops the answers: the protocol
  knows which frames are which, so the I/O layer never reads a frame to decide.
- ``on_outgoing()`` is called, from whatever thread queued something (phase callbacks run
  on the thread that changed the phase), whenever there may be frames to take: make it
  cheap and thread-safe (``loop.call_soon_threadsafe(event.set)``).
- A registration is expected within ``config.register_timeout`` seconds of each
  connection: a hub that accepted the connection but leaves ``state`` at REGISTERING
  longer is given up on (the I/O layer closes the connection and dials again).
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from turnout._core import PhaseManager, PhaseState
from turnout._errors import PhaseError
from turnout.coordination.output import MalformedFrame, Output
from turnout.coordination.versions import DEFAULT_PROTOCOL_VERSION, parse_protocol_version
from turnout.phases import Phase
from turnout.protocol import (
    CancelPayload,
    ErrorPayload,
    MessageType,
    PausePayload,
    PhaseChangedPayload,
    ProtocolError,
    RegisteredPayload,
    RegisterPayload,
    ResumePayload,
    StatusPayload,
    StatusResponsePayload,
    WSMessage,
)

__all__ = [
    "ClientEvent",
    "ClientOverflow",
    "ClientState",
    "CommandRefused",
    "CoordinatorConfig",
    "CoordinatorProtocol",
    "MessageReceived",
    "Registered",
]


@dataclass(frozen=True)
class CoordinatorConfig:
    """How a service connects to a hub (Go's ``coordinator.Config``; delays in seconds).
    ``reconnect_max_attempts`` 0 means no limit; ``token`` is sent as a bearer token.
    ``register_timeout``: how long after each dial the hub may take to answer
    ``register`` before the connection is closed and dialled again. ``ca_file``: the
    certificate authorities (PEM) that sign a ``wss://`` hub's certificate, when they are
    not the system's. ``fallback_urls``: more hubs of the same fleet; when a hub is
    unreachable or drops, the next one in :attr:`urls` is dialled (with the same
    backoff)."""

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
    register_timeout: float = 10.0
    ca_file: str | None = None
    fallback_urls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.service_name:
            raise ValueError("service_name must be set")
        object.__setattr__(self, "capabilities", tuple(self.capabilities))
        if isinstance(self.fallback_urls, str):
            raise TypeError("fallback_urls is a sequence of URLs, not one string")
        object.__setattr__(self, "fallback_urls", tuple(self.fallback_urls))
        parse_protocol_version(self.protocol_version or DEFAULT_PROTOCOL_VERSION)
        if not 0 < self.reconnect_initial_delay <= self.reconnect_max_delay:
            raise ValueError("need 0 < reconnect_initial_delay <= reconnect_max_delay")
        if self.reconnect_backoff_factor < 1:
            raise ValueError("reconnect_backoff_factor must be at least 1")
        if self.reconnect_max_attempts < 0:
            raise ValueError("reconnect_max_attempts must be 0 (no limit) or more")
        if not self.ping_interval > 0:
            raise ValueError("ping_interval must be positive")
        if not self.register_timeout > 0:
            raise ValueError("register_timeout must be positive")

    @property
    def urls(self) -> tuple[str, ...]:
        """Every hub to dial, in turn: ``when_url``, then ``fallback_urls``."""
        return (self.when_url, *self.fallback_urls)

    def url_after(self, url: str, attempt: int) -> str:
        """The hub to dial on reconnect attempt ``attempt`` (1, 2, ...) after the
        connection to ``url`` was lost: the next ones in :attr:`urls`, round and round
        (always ``when_url`` when it is the only one)."""
        urls = self.urls
        start = urls.index(url) if url in urls else -1
        return urls[(start + attempt) % len(urls)]

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
        # This connection's frames, sent first; each says whether it is re-queued should
        # its write fail (the application's messages) or dropped (answers to this hub).
        self._answers: deque[tuple[bytes, bool]] = deque()
        self._taken: list[tuple[bytes, bool]] = []  # the last take_outgoing, in order
        self._queue: deque[bytes] = deque()  # the application's: bounded, kept across links
        self._counts = dict.fromkeys(
            (
                "queued",
                "dropped",
                "sent",
                "requeued",
                "received",
                "malformed",
                "discarded",
                "connections",
            ),
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
            self._answers.append((register.to_json(), False))
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
            taken = list(self._answers)
            self._answers.clear()
            if self._state is ClientState.REGISTERED:
                taken.extend((frame, True) for frame in self._queue)
                self._queue.clear()
            self._taken = taken
            self._counts["sent"] += len(taken)
        return [frame for frame, _ in taken]

    def write_failed(self, unsent: int) -> None:
        """The last ``unsent`` frames of the last :meth:`take_outgoing` were not written
        (the connection dropped): the application's messages among them go back to the
        front of the queue, in order (``requeued``; the queue's bound and policy still
        apply); answers to the hub belong to the lost connection and are discarded."""
        with self._lock:
            failed = self._taken[len(self._taken) - unsent :] if unsent > 0 else []
            self._taken = []
            self._counts["sent"] -= len(failed)
            back = [frame for frame, requeue in failed if requeue]
            self._counts["discarded"] += len(failed) - len(back)
            self._counts["requeued"] += len(back)
            self._queue.extendleft(reversed(back))
            while len(self._queue) > self._queue_size:
                self._counts["dropped"] += 1
                if self._overflow == "drop_newest":
                    self._queue.pop()
                else:
                    self._queue.popleft()

    @property
    def pending(self) -> int:
        """Frames waiting (answers and queued messages)."""
        with self._lock:
            return len(self._answers) + len(self._queue)

    def stats(self) -> dict[str, int]:
        """``queued`` (messages given to send), ``dropped`` (by the queue's policy),
        ``sent`` (frames written), ``requeued`` (by :meth:`write_failed`), ``received``,
        ``malformed``, ``discarded`` (answers lost with their connection),
        ``connections`` (made), ``pending``."""
        with self._lock:
            counts = dict(self._counts)
            counts["pending"] = len(self._answers) + len(self._queue)
        return counts

    # -- incoming --

    def receive(self, data: bytes | str | WSMessage) -> Output[ClientEvent]:
        """Handles one frame from the hub: answers are queued (see ``take_outgoing``), and
        the output's ``events`` say what the application should hear about."""
        if isinstance(data, WSMessage):
            message = data
        else:
            try:
                message = WSMessage.parse(data)
            except ProtocolError as exc:
                with self._lock:
                    self._counts["malformed"] += 1
                return Output(events=[MalformedFrame(exc)])
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
        return Output(events=events)

    def _registered(self, message: WSMessage) -> Registered:
        payload = message.payload_as(RegisteredPayload)
        with self._lock:
            self.service_id = payload.service_id or self.service_id
            self._state = ClientState.REGISTERED
            # What waited goes first, then the current phases: the hub ends on the truth.
            # The snapshot is read under the lock so a change reported meanwhile is queued
            # after it, never before it.
            self._answers.extend((frame, True) for frame in self._queue)
            self._queue.clear()
            for state in self.phases.active_workflows():
                # Not re-queued: the next registration sends the phases as they are then.
                self._answers.append((_phase_changed(state).to_json(), False))
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
            self._answers.append((frame, False))
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
