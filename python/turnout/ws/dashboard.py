"""The hub's dashboard: a page at ``GET /``, its sign-in, and the WebSocket that feeds it.

**The page** is plain HTML, CSS and JavaScript in ``turnout/ws/static`` (shipped in the
wheel; nothing is built, nothing is fetched from elsewhere), served with a content
security policy that lets it load only itself and connect only to this hub.

**Signing in.** A hub without credentials serves everything without one. A hub with
credentials serves the page and its files to anyone (they hold no data), and the page
asks for a token; ``GET /v1/session`` with ``Authorization: Bearer TOKEN`` and the header
``X-Turnout-Session: sign-in`` checks it and answers with a cookie holding it
(base64url-encoded; ``HttpOnly``: the page's scripts cannot read it; ``SameSite=Strict``:
other sites' pages do not send it; ``Secure`` under TLS; ``Path=/``).
``X-Turnout-Session: sign-out`` clears it. The token travels in a header, never in a
URL. Requests are GETs because the hub's HTTP layer reads no request bodies; the custom
header is what a cross-site page cannot send without a CORS preflight, which the hub
never grants.

**The cookie as a credential.** A request that presents no ``Authorization`` header and
no ``?token=`` but carries the cookie is admitted as if it presented the cookie's token,
provided it comes from the hub's own origin: a WebSocket handshake must carry an
``Origin`` equal to the hub's (``http[s]://`` + its ``Host``), a plain request must not
carry another ``Origin`` nor a ``Sec-Fetch-Site`` other than ``same-origin`` / ``none``;
otherwise HTTP 403 (counted as ``cross_origin``). ``SameSite`` alone would not do: pages on
another port of the same host are the same *site*.

**The feed** (WebSocket ``/v1/dashboard``), one JSON object per text frame, each with a
``type``:

- ``hello``: ``credential`` (its name, or null on an open hub), ``control`` (``"*"`` or the
  service ids it may command), ``events`` (the subject patterns it is sent);
- ``snapshot``: ``services`` and ``workflows`` as ``GET /v1/services`` and
  ``GET /v1/workflows`` give them;
- ``events``: the bus events under ``events.coordination.>`` that the credential may
  watch, as their JSON, batched every :data:`FLUSH_INTERVAL` seconds;
- ``stats``: every :data:`STATS_INTERVAL` seconds, the hub's counters and the services;
- ``answer``: a command's outcome, as ``/v1/control`` answers it.

The page sends commands as it would on ``/v1/control``, checked the same way (a
credential without ``control`` for the workflow's service gets ``outcome: "error"``).

**Bounded.** At most :data:`MAX_PENDING_EVENTS` events wait for one dashboard; past that
(a browser that does not keep up) they are discarded and the next frame is a fresh
``snapshot`` instead (overflow policy *resync*), counted in the hub's
``stats()["dashboard_events_skipped"]`` and ``["dashboard_resyncs"]``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
import time
from collections.abc import Sequence
from http import HTTPStatus
from importlib.resources import files
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HTTPRequest
from websockets.http11 import Response as HTTPResponse

from turnout._core import is_subset
from turnout._wire import format_time
from turnout.bus import Message, Subscription
from turnout.coordination import Admission, Credential, HandshakeRefusal
from turnout.coordination.auth import ANY
from turnout.ws.surface import HubSurface, answer_command

__all__ = [
    "COOKIE_NAME",
    "DASHBOARD_PATH",
    "EVENTS_PATTERN",
    "FLUSH_INTERVAL",
    "MAX_PENDING_EVENTS",
    "SESSION_PATH",
    "STATIC_PATHS",
    "STATS_INTERVAL",
    "Dashboards",
    "admit_request",
    "cookie_value",
    "serve_page",
    "serve_session",
]

DASHBOARD_PATH = "/v1/dashboard"
SESSION_PATH = "/v1/session"
COOKIE_NAME = "turnout_session"
#: The events a dashboard shows (narrowed to what its credential may watch).
EVENTS_PATTERN = "events.coordination.>"
FLUSH_INTERVAL = 0.1
STATS_INTERVAL = 1.0
MAX_PENDING_EVENTS = 20_000
_SESSION_HEADER = "X-Turnout-Session"

_STATIC = files("turnout.ws") / "static"
#: Path served → (file under ``static/``, content type).
STATIC_PATHS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "/static/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/static/favicon.svg": ("favicon.svg", "image/svg+xml"),
}


# -- the page and its files --------------------------------------------------------------


def serve_page(request: HTTPRequest, path: str, tls: bool) -> HTTPResponse:
    """The page or one of its files (``path`` is one of :data:`STATIC_PATHS`)."""
    name, content_type = STATIC_PATHS[path]
    body = (_STATIC / name).read_bytes()
    headers = _headers(content_type, body)
    host = request.headers.get("Host", "")
    sockets = f" {'wss' if tls else 'ws'}://{host}" if _plain_host(host) else ""
    headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'{sockets}; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    return HTTPResponse(200, "OK", headers, body)


def _plain_host(host: str) -> bool:
    """Whether ``host`` is safe to repeat in a header (a host name or address and port)."""
    return bool(host) and len(host) <= 255 and all(c.isalnum() or c in ".-:[]" for c in host)


# -- signing in and out -------------------------------------------------------------------


def serve_session(hub: HubSurface, request: HTTPRequest) -> HTTPResponse:
    """``GET /v1/session``: sign in, sign out, or who the cookie says the page is."""
    headers = request.headers
    credentials = hub.protocol.credentials
    action = headers.get_all(_SESSION_HEADER)
    if len(action) > 1 or (action and action[0] not in ("sign-in", "sign-out")):
        return _json(400, {"error": f"{_SESSION_HEADER} must be sign-in or sign-out"})
    refusal = _cross_site(request, websocket=False, tls=hub.ssl is not None)
    if refusal is not None:
        hub.protocol.refuse(refusal)
        return _json(refusal.status, {"error": refusal.reason})
    if action == ["sign-out"]:
        response = _json(200, {"auth": credentials is not None, "credential": None})
        response.headers["Set-Cookie"] = _cookie("", hub.ssl is not None, max_age=0)
        return response
    if action == ["sign-in"]:
        if credentials is None:
            return _json(400, {"error": "this hub has no credentials: nothing to sign in to"})
        authorization = headers.get_all("Authorization")
        if len(authorization) != 1:
            return _json(400, {"error": "sign in with one 'Authorization: Bearer TOKEN' header"})
        admission = hub.protocol.admit([("Authorization", authorization[0])], "")
        if admission.refusal is not None or admission.credential is None:
            reason = "invalid token" if admission.refusal is None else admission.refusal.reason
            return _json(401, {"error": reason})
        token = authorization[0].strip().partition(" ")[2].strip()
        response = _json(200, _who(admission.credential, signed_in=True))
        response.headers["Set-Cookie"] = _cookie(token, hub.ssl is not None)
        return response
    if credentials is None:
        return _json(200, {"auth": False, "credential": None})
    admission = admit_request(hub, request, "", websocket=False)
    if admission.refusal is not None or admission.credential is None:
        return _json(200, {"auth": True, "credential": None})
    return _json(200, _who(admission.credential, signed_in=True))


def _who(credential: Credential, *, signed_in: bool) -> dict[str, Any]:
    return {"auth": True, "credential": credential.name, "signed_in": signed_in}


def _cookie(token: str, secure: bool, max_age: int | None = None) -> str:
    parts = [f"{COOKIE_NAME}={cookie_value(token)}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts)


def cookie_value(token: str) -> str:
    """The cookie's value for ``token``: base64url, so that any token (spaces,
    semicolons, non-ASCII) fits in a cookie."""
    if not token:
        return ""
    return base64.urlsafe_b64encode(token.encode("utf-8", "surrogatepass")).decode().rstrip("=")


def _session_token(headers: Headers) -> str | None:
    for value in headers.get_all("Cookie"):
        for pair in value.split(";"):
            name, _, encoded = pair.strip().partition("=")
            if name != COOKIE_NAME or not encoded:
                continue
            try:
                raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
                return raw.decode("utf-8", "surrogatepass")
            except (ValueError, UnicodeDecodeError):
                return None  # not a cookie of ours: as if there were none
    return None


def admit_request(
    hub: HubSurface, request: HTTPRequest, query: str, *, websocket: bool
) -> Admission:
    """Who a request is: its ``Authorization`` header or ``?token=`` as the protocol reads
    them, or else its session cookie, from the hub's own origin only (module docstring)."""
    raw = list(request.headers.raw_items())
    token = _session_token(request.headers)
    if token is None or hub.protocol.credentials is None or _presents_credential(raw, query):
        return hub.protocol.admit(raw, query)
    refusal = _cross_site(request, websocket=websocket, tls=hub.ssl is not None)
    if refusal is not None:
        return Admission(refusal=hub.protocol.refuse(refusal))
    return hub.protocol.admit([("Authorization", f"Bearer {token}")], "")


def _presents_credential(headers: Sequence[tuple[str, str]], query: str) -> bool:
    if any(name.lower() == "authorization" for name, _ in headers):
        return True
    return any(part.partition("=")[0] == "token" for part in query.split("&"))


def _cross_site(request: HTTPRequest, *, websocket: bool, tls: bool) -> HandshakeRefusal | None:
    """Why a cookie-bearing request is not the hub's own page's, or None."""
    headers = request.headers
    hosts = headers.get_all("Host")
    origins = headers.get_all("Origin")
    if len(hosts) != 1 or len(origins) > 1:
        return HandshakeRefusal(400, "one Host header and at most one Origin", "cross_origin")
    own = f"{'https' if tls else 'http'}://{hosts[0]}"
    if websocket and not origins:
        return HandshakeRefusal(
            403, "a WebSocket signed in by cookie must come from the hub's page", "cross_origin"
        )
    if origins and origins[0] != own:
        return HandshakeRefusal(
            403, f"origin {origins[0][:200]!r} may not use this hub's session", "cross_origin"
        )
    fetch_site = headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return HandshakeRefusal(
            403, f"a {fetch_site[:40]} request may not use this hub's session", "cross_origin"
        )
    return None


# -- the feed -----------------------------------------------------------------------------


def event_patterns(credential: Credential | None) -> list[str]:
    """The subject patterns a dashboard of ``credential`` is sent: :data:`EVENTS_PATTERN`,
    or the parts of it the credential may watch."""
    if credential is None or credential.may_watch(EVENTS_PATTERN):
        return [EVENTS_PATTERN]
    return [p for p in credential.watch if is_subset(p, EVENTS_PATTERN)]


def control_of(credential: Credential | None) -> str | list[str]:
    if credential is None or ANY in credential.control:
        return ANY
    return sorted(credential.control)


class Dashboards:
    """Every dashboard connection of one hub, and their counters."""

    def __init__(self, hub: HubSurface) -> None:
        self.hub = hub
        self.open = 0
        self.counts = dict.fromkeys(
            ("dashboards_served", "dashboard_events_skipped", "dashboard_resyncs"), 0
        )

    async def serve(self, connection: ServerConnection, credential: Credential | None) -> None:
        """Serves one dashboard until its connection ends."""
        feed = _Feed(self, connection, credential)
        self.open += 1
        self.counts["dashboards_served"] += 1
        running: set[asyncio.Task[None]] = set()

        async def command(frame: str | bytes) -> None:
            answer = await answer_command(self.hub, credential, frame)
            await connection.send(orjson.dumps({"type": "answer", **answer}).decode())

        try:
            feed.start()
            async for frame in connection:
                task = asyncio.create_task(command(frame))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            self.open -= 1
            feed.stop()
            for task in running:
                task.cancel()

    def snapshot(self) -> bytes:
        document = {
            "type": "snapshot",
            "services": self.services(),
            "workflows": self.hub.fleet_workflows(),
        }
        return orjson.dumps(document)

    def services(self) -> list[dict[str, Any]]:
        """As ``GET /v1/services`` (this hub's and, in a fleet, the others'), with
        ``disconnected_at`` for this hub's disconnected instances."""
        # The protocol's clock is the event loop's; the page wants wall time.
        now, wall = asyncio.get_running_loop().time(), time.time()
        gone = {
            record.key: format_time_seconds(wall - (now - record.disconnected_at))
            for record in self.hub.protocol.services()
            if record.disconnected_at is not None
        }
        documents = self.hub.fleet_services()
        if gone:
            for document in documents:
                key = (document["service_id"], document["instance_id"])
                if document.get("hub") == self.hub.hub_id and key in gone:
                    document["disconnected_at"] = gone[key]
        return documents


def format_time_seconds(seconds: float) -> str:
    from datetime import datetime, timezone

    return format_time(datetime.fromtimestamp(seconds, timezone.utc))


class _Feed:
    """What one dashboard is sent: events batched per interval, counters, answers."""

    def __init__(
        self, owner: Dashboards, connection: ServerConnection, credential: Credential | None
    ) -> None:
        self.owner = owner
        self.connection = connection
        self.credential = credential
        self.patterns = event_patterns(credential)
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self.pending: list[bytes] = []
        self.resync = False
        self.last: Message | None = None
        self.subscriptions: list[Subscription[Message]] = []
        self.writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        bus = self.owner.hub.bus
        self.subscriptions = [bus.subscribe(p, self.offer, raw=True) for p in self.patterns]
        self.writer = asyncio.create_task(self.write())

    def stop(self) -> None:
        for subscription in self.subscriptions:
            subscription.unsubscribe()
        if self.writer is not None:
            self.writer.cancel()

    def offer(self, message: Message) -> None:
        """The bus handler, called on the publishing thread."""
        if threading.get_ident() == self.loop_thread:
            self.take(message)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the hub is gone
                self.loop.call_soon_threadsafe(self.take, message)

    def take(self, message: Message) -> None:
        if message is self.last:  # one event matching two of the patterns
            return
        self.last = message
        if self.resync:
            self.owner.counts["dashboard_events_skipped"] += 1
            return
        self.pending.append(message.data)
        if len(self.pending) > MAX_PENDING_EVENTS:
            self.owner.counts["dashboard_events_skipped"] += len(self.pending)
            self.pending = []
            self.resync = True

    async def write(self) -> None:
        connection = self.connection
        hello = {
            "type": "hello",
            "credential": None if self.credential is None else self.credential.name,
            "control": control_of(self.credential),
            "events": self.patterns,
        }
        with contextlib.suppress(ConnectionClosed):
            await connection.send(orjson.dumps(hello).decode())
            await connection.send(self.owner.snapshot(), text=True)
            next_stats = 0.0
            while True:
                if self.resync:
                    self.resync = False
                    self.owner.counts["dashboard_resyncs"] += 1
                    await connection.send(self.owner.snapshot(), text=True)
                elif self.pending:
                    events, self.pending = self.pending, []
                    frame = b'{"type":"events","events":[' + b",".join(events) + b"]}"
                    await connection.send(frame, text=True)
                now = self.loop.time()
                if now >= next_stats:
                    next_stats = now + STATS_INTERVAL
                    await connection.send(self.stats_frame())
                await asyncio.sleep(FLUSH_INTERVAL)

    def stats_frame(self) -> str:
        hub = self.owner.hub
        document = {
            "type": "stats",
            "time": format_time_seconds(time.time()),
            "stats": hub.stats(),
            "services": self.owner.services(),
        }
        return orjson.dumps(document).decode()


# -- responses ----------------------------------------------------------------------------


def _headers(content_type: str, body: bytes) -> Headers:
    headers = Headers()
    headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(body))
    headers["Connection"] = "close"
    headers["Cache-Control"] = "no-store"
    return headers


def _json(status: int, document: object) -> HTTPResponse:
    body = orjson.dumps(document)
    return HTTPResponse(status, HTTPStatus(status).phrase, _headers("application/json", body), body)
