"""The parent's side of :mod:`turnout._bench.ws_receivers` (W10 and W11): start a process
of watchers, wait for the lines it prints, stop it by closing its stdin."""

from __future__ import annotations

import asyncio
import contextlib
import sys

from turnout._bench.workloads import WorkloadError

__all__ = ["expect_line", "start_receivers"]

# How long a receivers process may take to connect or to count one round's frames.
WAIT_S = 60.0


async def start_receivers(
    stack: contextlib.AsyncExitStack, url: str, watchers: int, frames_per_round: int
) -> asyncio.subprocess.Process:
    """``watchers`` connections to ``url`` in a child process, ready once this returns;
    ``stack`` stops the process when it closes."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "turnout._bench.ws_receivers",
        url,
        str(watchers),
        str(frames_per_round),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    stack.push_async_callback(_stop, process)
    await expect_line(process, b"ready")
    return process


async def expect_line(process: asyncio.subprocess.Process, expected: bytes) -> None:
    """Waits for the process's next line and raises :class:`WorkloadError` unless it is
    ``expected`` (``ready``, or ``done`` after a round)."""
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), WAIT_S)
    except asyncio.TimeoutError:
        raise WorkloadError(f"the watchers did not say {expected!r} in time") from None
    if line.strip() != expected:
        raise WorkloadError(f"the watchers said {line!r}, not {expected!r}")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.stdin is not None:
        process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), 10)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
