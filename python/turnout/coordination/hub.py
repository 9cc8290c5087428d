"""The hub end of the coordination protocol, sans I/O: what the hub answers, tracks and
republishes for each frame, without sockets, tasks or timers. :class:`turnout.ws.Hub`
drives it over WebSocket; tests drive it directly.

::

    hub = HubProtocol(protocol_version="1.0", credentials=table)
    admission = hub.admit(raw_headers, query)   # who it is, or why to refuse the handshake
    hub.connection_opened(conn, headers, admission.credential)
    out = hub.receive(conn, frame)          # -> Output(send, publish, events)
    request = hub.pause(workflow_id, reason, deadline=now + 10)   # also resume/cancel/status/ping
    send request.frame on request.connection
    settled = hub.expire(now)               # RequestSettled(EXPIRED) past their deadline
    out = hub.connection_closed(conn)       # publishes the service's `disconnected`
    hub.prune(now)                          # forgets what outlived the retention period

- ``register`` is answered with ``registered`` (same id). The negotiated protocol version
  is the lower of the service's and the hub's ``major.minor`` (a service that sends none
  speaks "1.0", as Go's client defaults); a version that is not ``major.minor`` refuses
  the registration, as does a service id the connection's credential may not register.
- The hub tracks services (by service id and instance id) and their workflows' phases
  from ``workflow_created``, ``phase_changed``, ``progress``, ``checkpoint`` and
  ``status_response``. **A workflow belongs to the service that first reported it:** a
  message from another service id about it (in the message's or the payload's
  ``workflow_id``) is refused with an ``error`` reply, counted, and neither tracked nor
  republished. A service reports at most ``max_workflows`` workflows at a time; a
  message about one more is refused the same way.
- **Bounded state.** A service instance that disconnected, and a workflow that reached a
  terminal phase, are forgotten ``retention`` seconds later by :meth:`prune`; the
  workflows of a service id with no instance left go with it (a service that comes back
  reports its active workflows again when it registers).
- Requests are settled by the answer with their id (``status_response``, ``pong``; an
  ``error`` refuses), a command also by the ``phase_changed`` it asks for (pause: pausing
  or paused; resume: resuming or execution; cancel: cancelling or cancelled; a terminal
  phase it did not ask for refuses it), and otherwise by :meth:`HubProtocol.expire` or the
  service's disconnection. Deadlines are numbers on the caller's clock (``time.monotonic``).
- A frame that is not a valid message, a message before ``register``, an unknown type or
  a hub-to-service type is answered with an ``error`` message and otherwise ignored; the
  connection stays up.
- **Republishing.** Every message a registered service sends, its registration and its
  disconnection come back as :class:`~turnout.coordination.output.Publication` documents
  (subjects in :mod:`turnout.coordination.subjects`), ``data`` holding ``service_id``,
  ``instance_id``, ``service_name`` and ``message`` (the message as ``WSMessage.document``
  writes it; absent for ``disconnected``).
"""

from __future__ import annotations

import dataclasses
import heapq
import secrets
import string
import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from turnout.coordination.auth import Credential, Credentials, HandshakeRefusal, presented_token
from turnout.coordination.output import MalformedFrame, Output, Publication
from turnout.coordination.subjects import DISCONNECTED, coordination_event_type
from turnout.coordination.versions import (
    DEFAULT_PROTOCOL_VERSION,
    HUB_PROTOCOL_VERSION,
    negotiate_protocol_version,
    parse_protocol_version,
)
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
    "DEFAULT_MAX_WORKFLOWS",
    "DEFAULT_RETENTION",
    "Admission",
    "HubEvent",
    "HubProtocol",
    "MessageRefused",
    "Request",
    "RequestOutcome",
    "RequestSettled",
    "ServiceDisconnected",
    "ServiceMessage",
    "ServiceRecord",
    "ServiceRegistered",
    "WorkflowRecord",
]

#: Seconds a disconnected service instance and a finished workflow stay known.
DEFAULT_RETENTION = 300.0
#: Workflows one service id may have tracked at a time.
DEFAULT_MAX_WORKFLOWS = 10_000


@dataclass(frozen=True)
class ServiceRecord:
    """A registered service instance, as the hub knows it. ``protocol_version`` is the
    negotiated one; ``connection`` is None once it disconnected (``disconnected_at`` is
    then the hub clock's time of it)."""

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
    credential: str = ""
    disconnected_at: float | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.service_id, self.instance_id)


@dataclass(frozen=True)
class WorkflowRecord:
    """A workflow as the hub last heard of it. ``phase`` is a :class:`Phase` (or the string
    a service sent); ``service`` is the (service id, instance id) that reports it; the
    service id that first reported it owns it. ``ended_at``: the hub clock's time it
    reached a terminal phase."""

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
    ended_at: float | None = None


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
    hub-to-service type, a refused registration, another service's workflow, past the
    workflow cap); the sender got an ``error`` reply. ``label`` names the kind of refusal
    (the key of ``refusals()``)."""

    connection: Hashable
    message: WSMessage
    reason: str
    label: str = ""


HubEvent = (
    ServiceRegistered
    | ServiceDisconnected
    | ServiceMessage
    | MessageRefused
    | MalformedFrame
    | RequestSettled
)


@dataclass(frozen=True)
class Admission:
    """The outcome of a handshake: the ``credential`` admitted (None on a hub without
    credentials, where everyone may do everything), or the ``refusal``."""

    credential: Credential | None = None
    refusal: HandshakeRefusal | None = None


@dataclass
class _Connection:
    headers: dict[str, str]
    credential: Credential | None
    service: tuple[str, str] | None = None


_SETTLING_PHASES = {
    MessageType.PAUSE: frozenset({Phase.PAUSING, Phase.PAUSED}),
    MessageType.RESUME: frozenset({Phase.RESUMING, Phase.EXECUTION}),
    MessageType.CANCEL: frozenset({Phase.CANCELLING, Phase.CANCELLED}),
}
_TERMINAL = frozenset(p for p in Phase if p.is_terminal)
_TERMINAL_TEXT = frozenset(p.value for p in _TERMINAL)
_ANSWER_TYPES = frozenset({MessageType.STATUS_RESPONSE, MessageType.PONG})
# The messages that create a workflow at the hub (the others only name one).
_TRACKED = frozenset(
    {
        MessageType.PHASE_CHANGED,
        MessageType.WORKFLOW_CREATED,
        MessageType.PROGRESS,
        MessageType.CHECKPOINT,
        MessageType.STATUS_RESPONSE,
    }
)
_ID_ALPHABET = string.ascii_lowercase + string.digits


class HubProtocol:
    """The hub end (see the module docstring). Not thread-safe: drive it from one thread
    (the hub's event loop). ``token`` is a shorthand for a table of one credential allowed
    everything; ``credentials`` is the whole table (not both). ``clock`` is the hub's
    clock for the retention period (the same one as request deadlines)."""

    def __init__(
        self,
        protocol_version: str = HUB_PROTOCOL_VERSION,
        token: str | None = None,
        *,
        credentials: Credentials | None = None,
        retention: float = DEFAULT_RETENTION,
        max_workflows: int = DEFAULT_MAX_WORKFLOWS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parse_protocol_version(protocol_version)
        if token is not None and credentials is not None:
            raise ValueError("give a token or a credentials table, not both")
        if retention < 0:
            raise ValueError("retention must be 0 or more seconds")
        if max_workflows < 1:
            raise ValueError("max_workflows must be at least 1")
        self.protocol_version = protocol_version
        self.credentials = Credentials.from_token(token) if token is not None else credentials
        self.retention = retention
        self.max_workflows = max_workflows
        self._clock = clock
        self._connections: dict[Hashable, _Connection] = {}
        self._services: dict[tuple[str, str], ServiceRecord] = {}
        self._instances: Counter[str] = Counter()  # service id -> instance records
        self._workflows: dict[str, WorkflowRecord] = {}
        self._owned: Counter[str] = Counter()  # service id -> workflows it owns
        self._pending: dict[str, Request] = {}
        self._deadlines: list[tuple[float, int, str]] = []  # a heap; settled ids are skipped
        self._sequence = 0
        self._counts = dict.fromkeys(
            ("received", "malformed", "refused", "requests", "pruned_services", "pruned_workflows"),
            0,
        )
        self._refusals: Counter[str] = Counter()
        self._frames_in: Counter[str] = Counter()
        self._frames_out: Counter[str] = Counter()
        self._outcomes: Counter[str] = Counter()

    # -- connections --

    def admit(self, headers: Sequence[tuple[str, str]], query: str = "") -> Admission:
        """Who a handshake is (``headers``: the raw (name, value) pairs; ``query``: the
        URL's query string), or why it is refused. Refusals are counted by kind."""
        token = presented_token(headers, query)
        if isinstance(token, HandshakeRefusal):
            return self._refuse_handshake(token)
        if self.credentials is None:
            return Admission()
        if token is None:
            return self._refuse_handshake(
                HandshakeRefusal(401, "missing bearer token", "missing_token")
            )
        credential = self.credentials.identify(token)
        if credential is None:
            return self._refuse_handshake(HandshakeRefusal(401, "invalid token", "invalid_token"))
        return Admission(credential)

    def refuse(self, refusal: HandshakeRefusal) -> HandshakeRefusal:
        """Counts a refusal the I/O layer makes itself (a path, a watch pattern)."""
        self._counts["refused"] += 1
        self._refusals[refusal.label] += 1
        return refusal

    def _refuse_handshake(self, refusal: HandshakeRefusal) -> Admission:
        return Admission(refusal=self.refuse(refusal))

    def may_watch(self, credential: Credential | None, pattern: str) -> bool:
        """Whether ``credential`` may follow ``pattern`` (any credential on an open hub)."""
        return credential is None or credential.may_watch(pattern)

    def connection_opened(
        self,
        connection: Hashable,
        headers: Mapping[str, str] | None = None,
        credential: Credential | None = None,
    ) -> None:
        """A service connected (its handshake headers give defaults for ``register``;
        ``credential`` is what :meth:`admit` found)."""
        if self.credentials is not None and credential is None:
            raise ValueError("this hub has credentials: admit the connection first")
        self._connections[connection] = _Connection(dict(headers or {}), credential)

    def connection_closed(self, connection: Hashable) -> Output[HubEvent]:
        """A connection ended: its service is marked disconnected (and its
        ``disconnected`` event published) and its pending requests settle as
        DISCONNECTED."""
        state = self._connections.pop(connection, None)
        out: Output[HubEvent] = Output()
        if state is None:
            return out
        for request in [r for r in self._pending.values() if r.connection == connection]:
            out.events.append(self._settle(request, RequestOutcome.DISCONNECTED, None))
        record = None
        if state.service is not None:
            record = self._detach(state.service, connection)
            if record is not None:
                out.publish.append(
                    Publication(
                        coordination_event_type(DISCONNECTED, record.service_id),
                        {
                            "service_id": record.service_id,
                            "instance_id": record.instance_id,
                            "service_name": record.service_name,
                        },
                    )
                )
        out.events.append(ServiceDisconnected(connection, record))
        return out

    def _detach(self, key: tuple[str, str], connection: Hashable) -> ServiceRecord | None:
        record = self._services.get(key)
        if record is None or record.connection != connection:
            return None  # a newer connection of the instance owns it
        record = dataclasses.replace(record, connection=None, disconnected_at=self._clock())
        self._services[key] = record
        return record

    # -- incoming --

    def receive(self, connection: Hashable, data: bytes | str) -> Output[HubEvent]:
        """Handles one frame from ``connection`` (which must have been opened)."""
        state = self._connections.get(connection)
        if state is None:
            raise KeyError(f"unknown connection {connection!r}: call connection_opened first")
        out: Output[HubEvent] = Output()
        try:
            message = WSMessage.parse(data)
        except ProtocolError as exc:
            self._counts["malformed"] += 1
            self._frames_in["malformed"] += 1
            self._reply(out, _hub_error("", f"malformed message: {exc}"))
            out.events.append(MalformedFrame(exc, connection))
            return out
        self._counts["received"] += 1
        self._frames_in[str(message.type) if message.known_type else "unknown"] += 1
        try:
            if message.type is MessageType.REGISTER:
                self._register(connection, state, message, out)
            elif state.service is None:
                self._refuse(
                    connection, message, "not registered: send register first", "unregistered", out
                )
            elif not message.known_type:
                self._refuse(
                    connection, message, f"unknown message type {message.type}", "unknown_type", out
                )
            elif message.type in HUB_TO_SERVICE:
                self._refuse(
                    connection, message, f"{message.type} is sent by the hub", "hub_type", out
                )
            else:
                self._accept(connection, state.service, message, out)
        except ProtocolError as exc:
            self._counts["malformed"] += 1
            self._reply(out, _hub_error(message.workflow_id, str(exc), reply_to=message.id))
            out.events.append(MalformedFrame(exc, connection))
        return out

    def _reply(self, out: Output[HubEvent], frame: bytes, kind: str = "error") -> None:
        self._frames_out[kind] += 1
        out.send.append(frame)

    def _refuse(
        self,
        connection: Hashable,
        message: WSMessage,
        reason: str,
        label: str,
        out: Output[HubEvent],
    ) -> None:
        self._counts["refused"] += 1
        self._refusals[label] += 1
        self._reply(out, _hub_error(message.workflow_id, reason, reply_to=message.id))
        out.events.append(MessageRefused(connection, message, reason, label))

    def _register(
        self, connection: Hashable, state: _Connection, message: WSMessage, out: Output[HubEvent]
    ) -> None:
        payload = message.payload_as(RegisterPayload)
        name = payload.service_name or _header(state.headers, "X-Service-Name") or ""
        if not name:
            self._refuse(
                connection, message, "register: service_name is required", "bad_register", out
            )
            return
        try:
            negotiated = negotiate_protocol_version(payload.protocol_version, self.protocol_version)
        except ValueError as exc:
            self._refuse(connection, message, f"register: {exc}", "bad_register", out)
            return
        asked = payload.service_id or _header(state.headers, "X-Service-ID") or ""
        credential = state.credential
        if credential is not None and not credential.may_register(asked or "*"):
            shown = repr(asked) if asked else "an id of the hub's making"
            self._refuse(
                connection,
                message,
                f"register: credential {credential.name!r} may not register {shown}",
                "register_forbidden",
                out,
            )
            return
        service_id = asked or f"{name}-{''.join(secrets.choice(_ID_ALPHABET) for _ in range(8))}"
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
            credential="" if credential is None else credential.name,
        )
        if state.service is not None and state.service != record.key:
            # One connection is one instance: what it registered before is left behind.
            self._detach(state.service, connection)
        # The newest connection of a service instance owns it (an old one may linger
        # half-dead after a reconnect).
        if record.key not in self._services:
            self._instances[service_id] += 1
        self._services[record.key] = record
        state.service = record.key
        answer = RegisteredPayload(
            service_id=service_id,
            instance_id=payload.instance_id,
            message="registered",
            protocol_version=negotiated,
            hub_protocol_version=self.protocol_version,
        )
        self._reply(
            out,
            WSMessage.with_payload(MessageType.REGISTERED, answer, "", id=message.id).to_json(),
            "registered",
        )
        out.publish.append(self._publication(record, message, ""))
        out.events.append(ServiceRegistered(connection, record))

    def _accept(
        self,
        connection: Hashable,
        service: tuple[str, str],
        message: WSMessage,
        out: Output[HubEvent],
    ) -> None:
        kind = message.type
        workflow_id = _workflow_of(message)
        for named in _workflows_named(message):
            known = self._workflows.get(named)
            if known is not None and known.service[0] != service[0]:
                self._refuse(
                    connection,
                    message,
                    f"workflow {named} belongs to another service",
                    "not_owner",
                    out,
                )
                return
            if known is None and kind in _TRACKED and self._owned[service[0]] >= self.max_workflows:
                self._refuse(
                    connection,
                    message,
                    f"too many workflows: at most {self.max_workflows} per service",
                    "workflow_cap",
                    out,
                )
                return
        self._track(service, message, out)
        record = self._services.get(service)
        if record is not None:
            out.publish.append(self._publication(record, message, workflow_id))
        out.events.append(ServiceMessage(connection, service, message))

    def _publication(
        self, record: ServiceRecord, message: WSMessage, workflow_id: str
    ) -> Publication:
        return Publication(
            coordination_event_type(str(message.type), record.service_id, workflow_id),
            {
                "service_id": record.service_id,
                "instance_id": record.instance_id,
                "service_name": record.service_name,
                "message": message.document(),
            },
        )

    def _track(self, service: tuple[str, str], message: WSMessage, out: Output[HubEvent]) -> None:
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
        record = self._workflows.get(workflow_id)
        if record is None:
            record = WorkflowRecord(workflow_id, service)
            self._owned[service[0]] += 1
        elif record.service[0] != service[0]:
            return  # the payload names another service's workflow than the message does
        phase = changes.get("phase", record.phase)
        # A workflow's retention runs from the first time it was seen ended.
        ended = None
        if phase in _TERMINAL_TEXT:
            ended = record.ended_at if record.ended_at is not None else self._clock()
        self._workflows[workflow_id] = dataclasses.replace(
            record, service=service, updated_at=message.timestamp, ended_at=ended, **changes
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
        self._outcomes[outcome.value] += 1
        return RequestSettled(request, outcome, response)

    # -- requests --

    def pause(
        self,
        workflow_id: str,
        reason: str = "",
        *,
        deadline: float,
        service: tuple[str, str] | None = None,
        credential: Credential | None = None,
    ) -> Request:
        """A ``pause`` for the service that reports ``workflow_id`` (or ``service``).
        ``LookupError`` when no connected service has it; ``PermissionError`` when
        ``credential`` (None: the hub's own code) may not control that service."""
        return self._request(
            MessageType.PAUSE, PausePayload(workflow_id, reason), deadline, service, credential
        )

    def resume(
        self,
        workflow_id: str,
        from_checkpoint: str = "",
        *,
        deadline: float,
        service: tuple[str, str] | None = None,
        credential: Credential | None = None,
    ) -> Request:
        return self._request(
            MessageType.RESUME,
            ResumePayload(workflow_id, from_checkpoint),
            deadline,
            service,
            credential,
        )

    def cancel(
        self,
        workflow_id: str,
        reason: str = "",
        force: bool = False,
        *,
        deadline: float,
        service: tuple[str, str] | None = None,
        credential: Credential | None = None,
    ) -> Request:
        return self._request(
            MessageType.CANCEL,
            CancelPayload(workflow_id, reason, force),
            deadline,
            service,
            credential,
        )

    def status(
        self,
        workflow_id: str,
        *,
        deadline: float,
        service: tuple[str, str] | None = None,
        credential: Credential | None = None,
    ) -> Request:
        return self._request(
            MessageType.STATUS, StatusPayload(workflow_id), deadline, service, credential
        )

    def ping(
        self,
        service: tuple[str, str],
        *,
        deadline: float,
        credential: Credential | None = None,
    ) -> Request:
        """An application-level ``ping`` to a service instance (settled by its ``pong``)."""
        self.check_control(credential, service[0])
        return self._send_request(WSMessage.new(MessageType.PING), service, deadline)

    def _request(
        self,
        kind: MessageType,
        payload: PausePayload | ResumePayload | CancelPayload | StatusPayload,
        deadline: float,
        service: tuple[str, str] | None,
        credential: Credential | None,
    ) -> Request:
        if service is None:
            workflow = self._workflows.get(payload.workflow_id)
            if workflow is None:
                raise LookupError(f"workflow not found: {payload.workflow_id}")
            service = workflow.service
        self.check_control(credential, service[0])
        return self._send_request(
            WSMessage.with_payload(kind, payload), service, deadline, _SETTLING_PHASES.get(kind)
        )

    def check_control(self, credential: Credential | None, service_id: str) -> None:
        """``PermissionError`` (counted as ``control_forbidden``) unless ``credential``
        (None: the hub's own code) may command ``service_id``'s workflows."""
        if credential is not None and not credential.may_control(service_id):
            self._counts["refused"] += 1
            self._refusals["control_forbidden"] += 1
            raise PermissionError(
                f"credential {credential.name!r} may not control service {service_id!r}"
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
        self._frames_out[str(message.type)] += 1
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

    # -- bounded state --

    def prune(self, now: float | None = None) -> int:
        """Forgets the service instances disconnected, and the workflows ended, at least
        ``retention`` seconds before ``now`` (default: the hub's clock), and the workflows
        of service ids with no instance left; returns how many records went."""
        if now is None:
            now = self._clock()
        horizon = now - self.retention
        gone_services = [
            key
            for key, record in self._services.items()
            if record.disconnected_at is not None and record.disconnected_at <= horizon
        ]
        orphaned: set[str] = set()
        for key in gone_services:
            del self._services[key]
            self._instances[key[0]] -= 1
            if self._instances[key[0]] <= 0:
                del self._instances[key[0]]
                orphaned.add(key[0])
        gone_workflows = [
            workflow_id
            for workflow_id, record in self._workflows.items()
            if record.service[0] in orphaned
            or (record.ended_at is not None and record.ended_at <= horizon)
        ]
        for workflow_id in gone_workflows:
            owner = self._workflows.pop(workflow_id).service[0]
            self._owned[owner] -= 1
            if self._owned[owner] <= 0:
                del self._owned[owner]
        self._counts["pruned_services"] += len(gone_services)
        self._counts["pruned_workflows"] += len(gone_workflows)
        return len(gone_services) + len(gone_workflows)

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
        """Stops tracking a workflow now (``prune`` does it after the retention period)."""
        record = self._workflows.pop(workflow_id, None)
        if record is None:
            return False
        self._owned[record.service[0]] -= 1
        if self._owned[record.service[0]] <= 0:
            del self._owned[record.service[0]]
        return True

    def pending_requests(self) -> list[Request]:
        return list(self._pending.values())

    def stats(self) -> dict[str, int]:
        """``received`` / ``malformed`` / ``refused`` frames and handshakes, ``requests``
        made, ``pruned_services`` / ``pruned_workflows``, and the current
        ``connections``, ``services``, ``workflows``, ``pending``."""
        return {
            **self._counts,
            "connections": len(self._connections),
            "services": len(self._services),
            "workflows": len(self._workflows),
            "pending": len(self._pending),
        }

    def refusals(self) -> dict[str, int]:
        """Refusals by kind (``missing_token``, ``invalid_token``, ``duplicate_credentials``,
        ``register_forbidden``, ``not_owner``, ``workflow_cap``, ``unregistered``, ...)."""
        return dict(self._refusals)

    def frames(self) -> tuple[dict[str, int], dict[str, int]]:
        """Frames received and sent, by message type (``malformed``, ``unknown`` for the
        frames without a known type)."""
        return dict(self._frames_in), dict(self._frames_out)

    def request_outcomes(self) -> dict[str, int]:
        """Settled requests by outcome (``answered``, ``refused``, ``expired``,
        ``disconnected``)."""
        return dict(self._outcomes)


def _workflow_of(message: WSMessage) -> str:
    """The workflow a message is about: its own ``workflow_id``, else its payload's."""
    if message.workflow_id:
        return message.workflow_id
    payload = message.payload
    if payload:
        inner = payload.get("workflow_id")
        if isinstance(inner, str):
            return inner
    return ""


def _workflows_named(message: WSMessage) -> set[str]:
    """Every workflow id a message names (its own and its payload's; they may differ)."""
    named = {message.workflow_id} if message.workflow_id else set()
    payload = message.payload
    if payload:
        inner = payload.get("workflow_id")
        if isinstance(inner, str) and inner:
            named.add(inner)
    return named


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
