"""``turnout hub``: a :class:`~turnout.ws.Hub` run until SIGINT or SIGTERM. With
``--nats URL[,URL...]`` the hub's bus is NATS and the hub joins the fleet of the hubs on
those servers, as ``--hub-id`` (default: a generated id)."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
from dataclasses import dataclass
from typing import TextIO

from turnout.bus import Bus
from turnout.coordination import DEFAULT_MAX_WORKFLOWS, DEFAULT_RETENTION
from turnout.coordination.auth import AuthFileError, Credentials
from turnout.ws.hub import DEFAULT_MAX_MESSAGE_SIZE, Hub

__all__ = ["HubOptions", "run_hub"]

_EXIT_FAILED = 1


@dataclass(frozen=True)
class HubOptions:
    """What ``turnout hub`` was asked for."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    auth_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    nats_url: str | None = None
    node: str = "hub"
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    retention: float = DEFAULT_RETENTION
    max_workflows: int = DEFAULT_MAX_WORKFLOWS
    hub_id: str | None = None


def run_hub(options: HubOptions, out: TextIO = sys.stdout) -> int:
    """Serves a hub (on a NATS bus when ``nats_url`` is given, else on an embedded one)
    until SIGINT or SIGTERM, then stops it cleanly; returns the exit status. The URLs it
    listens on are printed to ``out`` once it is listening; a bad auth file or
    certificate stops it before, with the reason on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    hub_logger = logging.getLogger("turnout.ws.hub")
    hub_logger.addHandler(handler)
    hub_logger.setLevel(logging.INFO)
    try:
        return asyncio.run(_serve(options, out))
    finally:
        hub_logger.removeHandler(handler)


def _setup(options: HubOptions) -> tuple[Credentials | None, ssl.SSLContext | None]:
    credentials = None
    if options.auth_file is not None:
        if options.token is not None:
            raise ValueError("give --token or --auth, not both")
        credentials = Credentials.load(options.auth_file)
    context = None
    if (options.tls_cert is None) != (options.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    if options.tls_cert is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(options.tls_cert, options.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the TLS certificate or key: {exc}") from None
    return credentials, context


async def _serve(options: HubOptions, out: TextIO) -> int:
    try:
        credentials, context = _setup(options)
    except (AuthFileError, ValueError) as exc:
        print(f"turnout hub: {exc}", file=sys.stderr)
        return _EXIT_FAILED
    bus: Bus | None = None
    nats_url = options.nats_url
    servers: list[str] = []
    if nats_url is not None:
        servers = [url.strip() for url in nats_url.split(",") if url.strip()]
        try:
            import turnout.nats
        except ImportError as exc:
            print(f"turnout hub: --nats needs the nats extra ({exc})", file=sys.stderr)
            return _EXIT_FAILED
        try:
            # The servers in the order given: operators spread hubs over a cluster by
            # listing a different server first for each.
            bus = await turnout.nats.connect(servers, node=options.node, dont_randomize=True)
        except Exception as exc:
            print(f"turnout hub: cannot connect to NATS at {nats_url}: {exc}", file=sys.stderr)
            return _EXIT_FAILED
    try:
        hub = _hub(options, credentials, context, bus, servers)
    except ValueError as exc:
        print(f"turnout hub: {exc}", file=sys.stderr)
        if bus is not None:
            await bus.aclose()
        return _EXIT_FAILED
    try:
        try:
            await hub.start()
        except OSError as exc:
            print(
                f"turnout hub: cannot listen on {options.host}:{options.port}: {exc}",
                file=sys.stderr,
            )
            return _EXIT_FAILED
        except Exception as exc:  # the fleet's NATS connection
            print(f"turnout hub: cannot join the fleet at {nats_url}: {exc}", file=sys.stderr)
            return _EXIT_FAILED
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop_requested.set)
        where = "NATS " + nats_url if nats_url is not None else "the embedded bus"
        print(f"turnout hub: listening on {hub.url} (on {where}, hub id {hub.hub_id})", file=out)
        print(f"turnout hub: watchers: {hub.watch_url}?subject=events.coordination.>", file=out)
        out.flush()
        await stop_requested.wait()
        await hub.stop()
        print("turnout hub: stopped", file=out)
        out.flush()
        return 0
    finally:
        await hub.stop()
        if bus is not None:
            await bus.aclose()


def _hub(
    options: HubOptions,
    credentials: Credentials | None,
    context: ssl.SSLContext | None,
    bus: Bus | None,
    servers: list[str],
) -> Hub:
    return Hub(
        options.host,
        options.port,
        options.token,
        options.max_message_size,
        bus,
        auth=credentials,
        ssl=context,
        node=options.node,
        retention=options.retention,
        max_workflows=options.max_workflows,
        hub_id=options.hub_id,
        fleet=servers or None,
    )
