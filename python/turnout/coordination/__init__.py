"""The coordination protocol's two ends as sans-I/O state machines: what a service
(:class:`CoordinatorProtocol`, :mod:`~turnout.coordination.client`) and the hub
(:class:`HubProtocol`, :mod:`~turnout.coordination.hub`) do with each message, without
sockets, tasks or timers. Both answer in one shape, :class:`Output`: frames to send,
documents to publish on the bus, events for the application
(:mod:`~turnout.coordination.output`). The WebSocket client and hub in :mod:`turnout.ws`
only move bytes and do what the output says; tests drive the ends directly.

- :mod:`~turnout.coordination.versions`: protocol versions and their negotiation.
- :mod:`~turnout.coordination.subjects`: the bus subjects the hub republishes on.
- :mod:`~turnout.coordination.auth`: credentials and what each may do.
"""

from turnout.coordination.auth import (
    AuthFileError,
    Credential,
    Credentials,
    HandshakeRefusal,
)
from turnout.coordination.client import (
    ClientEvent,
    ClientState,
    CommandRefused,
    CoordinatorConfig,
    CoordinatorProtocol,
    MessageReceived,
    Registered,
)
from turnout.coordination.hub import (
    DEFAULT_MAX_WORKFLOWS,
    DEFAULT_RETENTION,
    Admission,
    HubEvent,
    HubProtocol,
    MessageRefused,
    Request,
    RequestOutcome,
    RequestSettled,
    ServiceDisconnected,
    ServiceMessage,
    ServiceRecord,
    ServiceRegistered,
    WorkflowRecord,
)
from turnout.coordination.output import MalformedFrame, Output, Publication
from turnout.coordination.versions import (
    DEFAULT_PROTOCOL_VERSION,
    HUB_PROTOCOL_VERSION,
    negotiate_protocol_version,
    parse_protocol_version,
)

__all__ = [
    "DEFAULT_MAX_WORKFLOWS",
    "DEFAULT_PROTOCOL_VERSION",
    "DEFAULT_RETENTION",
    "HUB_PROTOCOL_VERSION",
    "Admission",
    "AuthFileError",
    "ClientEvent",
    "ClientState",
    "CommandRefused",
    "CoordinatorConfig",
    "CoordinatorProtocol",
    "Credential",
    "Credentials",
    "HandshakeRefusal",
    "HubEvent",
    "HubProtocol",
    "MalformedFrame",
    "MessageReceived",
    "MessageRefused",
    "Output",
    "Publication",
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
