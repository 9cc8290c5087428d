"""An operator's client of a hub's control surface (what ``turnout ctl`` and ``turnout
watch --hub`` use): the JSON API over HTTP GET, commands over ``/v1/control``, events over
``/v1/watch``. I/O only: what the answers mean is the hub's (:mod:`turnout.ws.http`).

A hub is named by its base URL, ``ws://`` or ``http://`` (``wss://`` or ``https://`` under
TLS): the same host and port serve all of it. The token travels as ``Authorization:
Bearer`` on HTTP requests and as ``?token=`` on WebSocket paths.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake

from turnout.ws.hub import CONTROL_PATH, WATCH_PATH

__all__ = ["HubClient", "HubClientError"]

_SCHEMES = {
    "ws": ("http", "ws"),
    "http": ("http", "ws"),
    "wss": ("https", "wss"),
    "https": ("https", "wss"),
}


class HubClientError(Exception):
    """The hub could not be reached, or refused the request (``status``: the HTTP status
    when it answered)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HubClient:
    """Talks to the hub at ``url`` with ``token``; ``ca_file`` verifies a TLS hub whose
    certificate the system's authorities did not sign."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        ca_file: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES or not parts.netloc:
            raise ValueError(
                f"a hub URL is ws://, http://, wss:// or https://HOST:PORT, not {url!r}"
            )
        http_scheme, ws_scheme = _SCHEMES[parts.scheme]
        self.http_base = f"{http_scheme}://{parts.netloc}"
        self.ws_base = f"{ws_scheme}://{parts.netloc}"
        self.token = token
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=ca_file) if http_scheme == "https" else None

    # -- the JSON API --

    def get(self, path: str, query: Sequence[tuple[str, str]] = ()) -> Any:
        """GETs ``path`` and returns its JSON; :class:`HubClientError` otherwise."""
        url = self.http_base + path + (f"?{urlencode(list(query))}" if query else "")
        request = urllib.request.Request(url)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._ssl) as answer:
                return orjson.loads(answer.read())
        except urllib.error.HTTPError as exc:
            body = exc.read().decode("utf-8", "replace").strip()
            raise HubClientError(f"HTTP {exc.code}: {body}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise HubClientError(f"cannot reach the hub at {self.http_base}: {exc}") from None
        except orjson.JSONDecodeError as exc:
            raise HubClientError(f"the hub's answer is not JSON: {exc}") from None

    def services(self) -> list[dict[str, Any]]:
        services: list[dict[str, Any]] = self.get("/v1/services")["services"]
        return services

    def workflows(
        self, phase: str | None = None, service: str | None = None
    ) -> list[dict[str, Any]]:
        query = [("phase", phase)] if phase else []
        query += [("service", service)] if service else []
        workflows: list[dict[str, Any]] = self.get("/v1/workflows", query)["workflows"]
        return workflows

    def workflow(self, workflow_id: str) -> dict[str, Any]:
        document: dict[str, Any] = self.get("/v1/workflows/" + quote(workflow_id, safe=""))
        return document

    # -- WebSocket paths --

    def _ws_url(self, path: str, query: list[tuple[str, str]]) -> str:
        if self.token:
            query = [*query, ("token", self.token)]
        return self.ws_base + path + (f"?{urlencode(query)}" if query else "")

    async def command(self, command: str, workflow_id: str, **fields: Any) -> dict[str, Any]:
        """Sends one command on ``/v1/control`` and returns the hub's answer
        (``outcome``, ``response``, ``error``)."""
        document = {"id": 1, "command": command, "workflow_id": workflow_id, **fields}
        try:
            async with connect(
                self._ws_url(CONTROL_PATH, []), ssl=self._ssl, open_timeout=self.timeout
            ) as operator:
                await operator.send(orjson.dumps(document).decode())
                wait = float(fields.get("timeout") or 10.0) + self.timeout
                answer: dict[str, Any] = orjson.loads(await asyncio.wait_for(operator.recv(), wait))
                return answer
        except (OSError, asyncio.TimeoutError, TimeoutError) as exc:
            raise HubClientError(f"cannot reach the hub at {self.ws_base}: {exc}") from None
        except InvalidHandshake as exc:
            raise _refused(exc) from None

    async def watch(self, patterns: Sequence[str]) -> AsyncIterator[dict[str, Any]]:
        """The events matching ``patterns``, as the hub sends them, until it closes."""
        url = self._ws_url(WATCH_PATH, [("subject", p) for p in patterns])
        try:
            watcher = await connect(url, ssl=self._ssl, open_timeout=self.timeout, max_size=None)
        except (OSError, asyncio.TimeoutError, TimeoutError) as exc:
            raise HubClientError(f"cannot reach the hub at {self.ws_base}: {exc}") from None
        except InvalidHandshake as exc:
            raise _refused(exc) from None
        async with watcher:
            async for frame in watcher:
                event: dict[str, Any] = orjson.loads(frame)
                yield event


def _refused(exc: InvalidHandshake) -> HubClientError:
    response = getattr(exc, "response", None)
    if response is None:
        return HubClientError(f"the hub refused: {exc}")
    body = response.body.decode("utf-8", "replace").strip() if response.body else ""
    return HubClientError(f"HTTP {response.status_code}: {body}", response.status_code)
