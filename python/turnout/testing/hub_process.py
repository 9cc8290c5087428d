"""A coordination hub in a child process on a free loopback port, for tests.

A child process rather than a task on the test's event loop: the same hub then serves
synchronous tests, asynchronous ones and other processes alike, and killing it is what a
crashed hub looks like to its clients. The child is ``turnout hub`` itself, so what a test
talks to is what users run; it needs the ``ws`` extra.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence

from turnout.testing.nats_server import START_TIMEOUT, free_port

__all__ = ["HubProcess", "running_hub"]

_LISTENING = "listening on "


class HubProcess:
    """``turnout hub`` on ``127.0.0.1:port``, requiring ``token`` as a bearer token (an
    empty ``token``: an open hub). With ``nats_url`` (a URL or several) it joins the fleet
    on those NATS servers as ``hub_id`` (default: a generated one). ``args``: more options
    for ``turnout hub`` (with ``--auth FILE``, the file's credentials replace the token)."""

    def __init__(
        self,
        *,
        port: int | None = None,
        token: str | None = None,
        nats_url: str | Sequence[str] | None = None,
        hub_id: str | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.port = port or free_port()
        self.token = secrets.token_urlsafe(16) if token is None else token
        self.nats_url = (
            nats_url if nats_url is None or isinstance(nats_url, str) else ",".join(nats_url)
        )
        self.hub_id = hub_id
        self.args = tuple(args)
        self._process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        """Where services connect (the coordination endpoint)."""
        return f"ws://127.0.0.1:{self.port}/v1/coordination"

    @property
    def watch_url(self) -> str:
        """Where watchers connect (add ``?subject=PATTERN``)."""
        return f"ws://127.0.0.1:{self.port}/v1/watch"

    @property
    def base_url(self) -> str:
        """The hub's base URL (what ``turnout ctl --hub`` and :class:`turnout.ws.HubClient`
        take)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        """The header a client needs to be let in."""
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> HubProcess:
        """Starts the hub and returns once it listens (again after a :meth:`kill`)."""
        if self.running:
            raise RuntimeError("the hub is already running")
        command = [sys.executable, "-m", "turnout", "hub", "--port", str(self.port)]
        if self.nats_url is not None:
            command += ["--nats", self.nats_url]
        if self.hub_id is not None:
            command += ["--hub-id", self.hub_id]
        command += self.args
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TURNOUT_HUB_TOKEN": self.token}
        # stderr to a file, not a pipe: nobody reads it while the hub runs, and a full
        # pipe would block the hub.
        with tempfile.TemporaryFile("w+") as errors:
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=errors, text=True, env=env
            )
            self._process = process
            assert process.stdout is not None
            # The hub prints its URL once it listens; an early exit closes stdout instead.
            ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
            line = process.stdout.readline() if ready else ""
            if _LISTENING not in line:
                self.kill()
                errors.seek(0)
                raise RuntimeError(f"turnout hub did not start: {line}{errors.read()}".strip())
        return self

    def kill(self) -> None:
        """Kills the hub at once (SIGKILL), like a crash."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(timeout=START_TIMEOUT)
        if process.stdout is not None:
            process.stdout.close()
        self._process = None


@contextlib.contextmanager
def running_hub(
    *, nats_url: str | Sequence[str] | None = None, hub_id: str | None = None
) -> Iterator[HubProcess]:
    """A started hub with a fresh token, killed on exit whatever happens."""
    hub = HubProcess(nats_url=nats_url, hub_id=hub_id)
    try:
        yield hub.start()
    finally:
        hub.kill()
