"""The one bounded wait the suite's asyncio tests share: poll a condition until it holds.
The bound only fails a test that would otherwise hang; it is never a timing assertion."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# Generous: the suite runs on loaded two-core machines, and a wait normally ends at once.
WAIT = 30.0


async def until(condition: Callable[[], object], what: str, wait: float = WAIT) -> None:
    """Returns once ``condition()`` is true; fails naming ``what`` after ``wait`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)
