"""``turnout hub``: a :class:`~turnout.ws.Hub` run until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import TextIO

from turnout.bus import Bus
from turnout.ws.hub import DEFAULT_MAX_MESSAGE_SIZE, Hub

__all__ = ["run_hub"]

_EXIT_FAILED = 1


def run_hub(
    host: str,
    port: int,
    *,
    token: str | None = None,
    nats_url: str | None = None,
    node: str = "hub",
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    out: TextIO = sys.stdout,
) -> int:
    """Serves a hub on ``host``:``port`` (on a NATS bus when ``nats_url`` is given, else on
    an embedded one) until SIGINT or SIGTERM, then stops it cleanly; returns the exit
    status. The URLs it listens on are printed to ``out`` once it is listening."""
    return asyncio.run(_serve(host, port, token, nats_url, node, max_message_size, out))


async def _serve(
    host: str,
    port: int,
    token: str | None,
    nats_url: str | None,
    node: str,
    max_message_size: int,
    out: TextIO,
) -> int:
    bus: Bus | None = None
    if nats_url is not None:
        try:
            import turnout.nats
        except ImportError as exc:
            print(f"turnout hub: --nats needs the nats extra ({exc})", file=sys.stderr)
            return _EXIT_FAILED
        try:
            bus = await turnout.nats.connect(nats_url, node=node)
        except Exception as exc:
            print(f"turnout hub: cannot connect to NATS at {nats_url}: {exc}", file=sys.stderr)
            return _EXIT_FAILED
    hub = Hub(host, port, token, max_message_size, bus, node=node)
    try:
        try:
            await hub.start()
        except OSError as exc:
            print(f"turnout hub: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
            return _EXIT_FAILED
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop_requested.set)
        where = "NATS " + nats_url if nats_url is not None else "the embedded bus"
        print(f"turnout hub: listening on {hub.url} (on {where})", file=out)
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
