"""The hub's control surface: plain HTTP GETs and the operator's command WebSocket.

Served by the same ``websockets`` server as the coordination and watch paths. That
library answers plain HTTP requests from its ``process_request`` hook (a GET gets a full
response, no upgrade), but it reads no request bodies, so commands cannot be HTTP POSTs;
they travel over an authenticated WebSocket, ``/v1/control``, which also suits a command
line (one connection, several commands) and a browser. Keeping one library, one port and
one credential check was preferred to adding an HTTP framework beside it.

GET endpoints (JSON unless said):

- ``/healthz``: no credential needed (load balancers call it): 200 and a summary.
- ``/metrics``: the Prometheus text format (version 0.0.4).
- ``/v1/services``: every service instance known.
- ``/v1/workflows`` (``?phase=P&service=ID``, each repeatable): the workflows known.
- ``/v1/workflows/{id}``: one workflow, or 404.

Each service and workflow names the ``hub`` (its id) holding it: in a fleet
(:mod:`turnout.ws.fleet`) the lists are every hub's, and ``/healthz`` adds this hub's
``hub`` id, the ``fleet_peers`` it hears from and whether it is ``fleet_connected``.

Everything but ``/healthz`` needs a valid credential on a hub that has credentials
(``Authorization: Bearer`` or ``?token=``), 401 otherwise.

**Commands** (``/v1/control``): each text frame is one JSON object ``{"id": ANY,
"command": "pause" | "resume" | "cancel" | "status", "workflow_id": ID, "reason": TEXT,
"from_checkpoint": ID, "force": BOOL, "timeout": SECONDS}``; each is answered, in the
order they settle, with ``{"id": ..., "outcome": "answered" | "refused" | "expired" |
"disconnected" | "error", "response": MESSAGE-OR-NULL, "error": TEXT}``. ``error`` covers
a command the hub could not send: an unknown workflow, a service not connected, a
credential without ``control`` for the workflow's service, a malformed command.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from dataclasses import asdict
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request as HTTPRequest
from websockets.http11 import Response as HTTPResponse

from turnout._wire import format_time
from turnout.coordination import (
    Credential,
    HandshakeRefusal,
    ServiceRecord,
    WorkflowRecord,
)
from turnout.phases import Phase
from turnout.ws.dashboard import (
    SESSION_PATH,
    STATIC_PATHS,
    admit_request,
    serve_page,
    serve_session,
)
from turnout.ws.surface import HubSurface, answer_command

__all__ = [
    "METRICS_CONTENT_TYPE",
    "render_metrics",
    "serve_control",
    "serve_http",
]

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_JSON = "application/json"


def serve_http(
    hub: HubSurface, connection: ServerConnection, request: HTTPRequest, path: str, query: str
) -> HTTPResponse:
    """The response to a plain HTTP request (no WebSocket upgrade)."""
    if path == "/healthz":
        stats = hub.stats()
        summary = {
            "status": "ok",
            "connections": stats["connections"],
            "services": stats["services"],
            "workflows": stats["workflows"],
            "watchers": stats["watchers"],
        }
        if hub.fleet is not None:
            summary["hub"] = hub.hub_id
            summary["fleet_peers"] = stats["fleet_peers"]
            summary["fleet_connected"] = hub.fleet.connected
        return _respond(200, orjson.dumps(summary), _JSON)
    if path in STATIC_PATHS:
        return serve_page(request, path, tls=hub.ssl is not None)
    if path == SESSION_PATH:
        return serve_session(hub, request)
    if path not in ("/metrics", "/v1/services", "/v1/workflows") and not path.startswith(
        "/v1/workflows/"
    ):
        refusal = hub.protocol.refuse(
            HandshakeRefusal(404, f"unknown path {path[:200]!r}", "unknown_path")
        )
        hub.log_refusal(connection, refusal)
        return _text(refusal)
    admission = admit_request(hub, request, query, websocket=False)
    if admission.refusal is not None:
        hub.log_refusal(connection, admission.refusal)
        return _text(admission.refusal)
    if path == "/metrics":
        return _respond(200, render_metrics(hub).encode(), METRICS_CONTENT_TYPE)
    if path == "/v1/services":
        return _json({"services": hub.fleet_services()})
    if path == "/v1/workflows":
        params = parse_qsl(query, keep_blank_values=True)
        phases = {v for k, v in params if k == "phase"}
        services = {v for k, v in params if k == "service"}
        workflows = [
            w
            for w in hub.fleet_workflows()
            if (not phases or w["phase"] in phases)
            and (not services or w["service_id"] in services)
        ]
        return _json({"workflows": workflows})
    workflow_id = unquote(path.removeprefix("/v1/workflows/"))
    workflow = hub.fleet_workflow(workflow_id)
    if workflow is None:
        return _respond(404, orjson.dumps({"error": f"workflow not found: {workflow_id}"}), _JSON)
    return _json(workflow)


def service_document(record: ServiceRecord) -> dict[str, Any]:
    return {
        "service_id": record.service_id,
        "instance_id": record.instance_id,
        "service_name": record.service_name,
        "capabilities": list(record.capabilities),
        "version": record.version,
        "protocol_version": record.protocol_version,
        "connected": record.connection is not None,
        "registered_at": format_time(record.registered_at),
        "credential": record.credential,
    }


def workflow_document(record: WorkflowRecord) -> dict[str, Any]:
    document = asdict(record)
    document["service_id"], document["instance_id"] = record.service
    del document["service"], document["ended_at"]
    document["phase"] = str(record.phase)
    document["previous_phase"] = str(record.previous_phase)
    updated = record.updated_at
    document["updated_at"] = None if updated is None else format_time(updated)
    return document


def _json(document: Any) -> HTTPResponse:
    return _respond(200, orjson.dumps(document), _JSON)


def _text(refusal: HandshakeRefusal) -> HTTPResponse:
    response = _respond(
        refusal.status, f"turnout hub: {refusal.reason}\n".encode(), "text/plain; charset=utf-8"
    )
    if refusal.status == HTTPStatus.UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = 'Bearer realm="turnout hub"'
    return response


def _respond(status: int, body: bytes, content_type: str) -> HTTPResponse:
    headers = Headers()
    headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(body))
    headers["Connection"] = "close"
    headers["Cache-Control"] = "no-store"
    return HTTPResponse(status, HTTPStatus(status).phrase, headers, body)


# -- metrics -------------------------------------------------------------------------------


def render_metrics(hub: HubSurface) -> str:
    """The hub's counters in the Prometheus text exposition format (version 0.0.4)."""
    stats = hub.stats()
    protocol = hub.protocol
    frames_in, frames_out = protocol.frames()
    phases: dict[str, int] = dict.fromkeys((p.value for p in Phase), 0)
    for workflow in protocol.workflows():
        phases[str(workflow.phase)] = phases.get(str(workflow.phase), 0) + 1
    connected = sum(1 for s in protocol.services() if s.connection is not None)
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{labels} {_number(value)}")

    family(
        "turnout_hub_connections",
        "gauge",
        "Open service connections.",
        [("", stats["connections"])],
    )
    family("turnout_hub_watchers", "gauge", "Open watcher connections.", [("", stats["watchers"])])
    family(
        "turnout_hub_services",
        "gauge",
        "Service instances known, by connection state.",
        [
            ('{state="connected"}', connected),
            ('{state="disconnected"}', stats["services"] - connected),
        ],
    )
    family(
        "turnout_hub_workflows",
        "gauge",
        "Workflows known, by phase.",
        [(_labels(phase=p), n) for p, n in sorted(phases.items())],
    )
    family(
        "turnout_hub_frames_received_total",
        "counter",
        "Frames received from services, by message type.",
        [(_labels(type=t), n) for t, n in sorted(frames_in.items())],
    )
    family(
        "turnout_hub_frames_sent_total",
        "counter",
        "Frames sent to services, by message type.",
        [(_labels(type=t), n) for t, n in sorted(frames_out.items())],
    )
    family(
        "turnout_hub_refusals_total",
        "counter",
        "Handshakes, messages and commands refused, by reason.",
        [(_labels(reason=r), n) for r, n in sorted(protocol.refusals().items())],
    )
    family(
        "turnout_hub_requests_total",
        "counter",
        "Requests to services settled, by outcome.",
        [(_labels(outcome=o), n) for o, n in sorted(protocol.request_outcomes().items())],
    )
    family(
        "turnout_hub_requests_pending",
        "gauge",
        "Requests waiting for an answer.",
        [("", stats["pending"])],
    )
    family(
        "turnout_hub_watcher_events_total",
        "counter",
        "Events for watchers, by what became of them.",
        [
            ('{result="delivered"}', stats["watcher_delivered"]),
            ('{result="dropped"}', stats["watcher_dropped"]),
            ('{result="discarded"}', stats["watcher_discarded"]),
        ],
    )
    family(
        "turnout_hub_watchers_closed_slow_total",
        "counter",
        "Watchers closed because they stalled.",
        [("", stats["watchers_closed_slow"])],
    )
    family(
        "turnout_hub_pruned_total",
        "counter",
        "Records forgotten after the retention period.",
        [
            ('{kind="service"}', stats["pruned_services"]),
            ('{kind="workflow"}', stats["pruned_workflows"]),
        ],
    )
    family(
        "turnout_hub_published_total",
        "counter",
        "Events the hub emitted on its bus, by result.",
        [('{result="ok"}', stats["published"]), ('{result="error"}', stats["publish_errors"])],
    )
    bus = hub.bus.stats()
    family(
        "turnout_bus_events_total",
        "counter",
        "The hub bus's event counters.",
        [
            (_labels(counter=k), v)
            for k, v in sorted(bus.items())
            if isinstance(v, int) and k not in ("subscriptions", "streams", "pending")
        ],
    )
    family(
        "turnout_bus_subscriptions",
        "gauge",
        "Subscriptions on the hub's bus.",
        [("", bus.get("subscriptions", 0))],
    )
    return "\n".join(lines) + "\n"


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    return str(value)


# -- commands ------------------------------------------------------------------------------


async def serve_control(
    hub: HubSurface, connection: ServerConnection, credential: Credential | None
) -> None:
    """Serves one operator connection: each command runs as it arrives, each answer is
    sent when its request settles."""
    running: set[asyncio.Task[None]] = set()
    try:
        async for frame in connection:
            task = asyncio.create_task(_command(hub, connection, credential, frame))
            running.add(task)
            task.add_done_callback(running.discard)
    finally:
        for task in running:
            task.cancel()


async def _command(
    hub: HubSurface, connection: ServerConnection, credential: Credential | None, frame: str | bytes
) -> None:
    answer = await answer_command(hub, credential, frame)
    await connection.send(orjson.dumps(answer).decode(), text=True)
