"""The hub as its HTTP routes, its dashboard and its operators' commands see it.

:class:`HubSurface` is what :mod:`turnout.ws.http` and :mod:`turnout.ws.dashboard` read
and command (:class:`turnout.ws.Hub` is one), so that they take the hub as an argument
without importing it: imports in ``turnout.ws`` go one way, from the hub down.
:func:`answer_command` runs one operator command (the format is in
:mod:`turnout.ws.http`), for the control WebSocket and the dashboard alike.
"""

from __future__ import annotations

import ssl
from typing import Any, Protocol

import orjson
from websockets.asyncio.server import ServerConnection

from turnout.bus import Bus
from turnout.coordination import (
    Credential,
    HandshakeRefusal,
    HubProtocol,
    RequestOutcome,
    RequestSettled,
)
from turnout.protocol import MessageType

__all__ = ["COMMANDS", "FleetState", "HubSurface", "answer_command"]

COMMANDS = ("pause", "resume", "cancel", "status")


class FleetState(Protocol):
    """What the HTTP routes read of a hub's fleet link."""

    @property
    def connected(self) -> bool: ...


class HubSurface(Protocol):
    """What the HTTP routes, the dashboard and the commands use of a hub."""

    @property
    def bus(self) -> Bus: ...

    @property
    def hub_id(self) -> str: ...

    @property
    def ssl(self) -> ssl.SSLContext | None: ...

    @property
    def protocol(self) -> HubProtocol: ...

    @property
    def fleet(self) -> FleetState | None: ...

    def stats(self) -> dict[str, int]: ...

    def log_refusal(self, connection: ServerConnection, refusal: HandshakeRefusal) -> None: ...

    def fleet_services(self) -> list[dict[str, Any]]: ...

    def fleet_workflows(self) -> list[dict[str, Any]]: ...

    def fleet_workflow(self, workflow_id: str) -> dict[str, Any] | None: ...

    async def pause(
        self,
        workflow_id: str,
        reason: str = "",
        *,
        timeout: float | None = None,
        credential: Credential | None = None,
    ) -> RequestSettled: ...

    async def resume(
        self,
        workflow_id: str,
        from_checkpoint: str = "",
        *,
        timeout: float | None = None,
        credential: Credential | None = None,
    ) -> RequestSettled: ...

    async def cancel(
        self,
        workflow_id: str,
        reason: str = "",
        force: bool = False,
        *,
        timeout: float | None = None,
        credential: Credential | None = None,
    ) -> RequestSettled: ...

    async def status(
        self,
        workflow_id: str,
        *,
        timeout: float | None = None,
        credential: Credential | None = None,
    ) -> RequestSettled: ...


async def answer_command(
    hub: HubSurface, credential: Credential | None, frame: str | bytes
) -> dict[str, Any]:
    """Runs one command frame (see the module docstring) and returns its answer."""
    command_id: Any = None
    try:
        try:
            document = orjson.loads(frame)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise ValueError("a command is a JSON object")
        command_id = document.get("id")
        settled = await _run(hub, credential, document)
    except (ValueError, TypeError, LookupError, PermissionError) as exc:
        answer: dict[str, Any] = {"id": command_id, "outcome": "error", "error": str(exc)}
    else:
        response = settled.response
        error = ""
        if settled.outcome is RequestOutcome.REFUSED and response is not None:
            payload = response.payload or {}
            if response.type is MessageType.PHASE_CHANGED:
                error = f"the workflow ended in phase {payload.get('to', '?')}"
            else:
                error = str(payload.get("error", ""))
        elif settled.outcome is RequestOutcome.EXPIRED:
            error = "no answer before the timeout"
        elif settled.outcome is RequestOutcome.DISCONNECTED:
            error = "the service disconnected first"
        answer = {
            "id": command_id,
            "outcome": settled.outcome.value,
            "response": None if response is None else response.document(),
            "error": error,
        }
    return answer


async def _run(
    hub: HubSurface, credential: Credential | None, document: dict[str, Any]
) -> RequestSettled:
    command = document.get("command")
    workflow_id = document.get("workflow_id")
    if command not in COMMANDS:
        raise ValueError(f"command must be one of {', '.join(COMMANDS)}, not {command!r}")
    if not isinstance(workflow_id, str) or not workflow_id:
        raise ValueError("workflow_id must be a non-empty string")
    timeout = document.get("timeout")
    if timeout is not None and not (isinstance(timeout, (int, float)) and 0 < timeout <= 3600):
        raise ValueError("timeout must be a number of seconds in (0, 3600]")
    reason = _text_field(document, "reason")
    if command == "pause":
        return await hub.pause(workflow_id, reason, timeout=timeout, credential=credential)
    if command == "resume":
        checkpoint = _text_field(document, "from_checkpoint")
        return await hub.resume(workflow_id, checkpoint, timeout=timeout, credential=credential)
    if command == "cancel":
        force = document.get("force", False)
        if not isinstance(force, bool):
            raise ValueError("force must be true or false")
        return await hub.cancel(workflow_id, reason, force, timeout=timeout, credential=credential)
    return await hub.status(workflow_id, timeout=timeout, credential=credential)


def _text_field(document: dict[str, Any], key: str) -> str:
    value = document.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value
