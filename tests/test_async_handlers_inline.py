"""Async handlers run inline: an async handler's worker that has caught up is not woken as
a task when events come from another thread; its handler runs in the call into its loop,
as the worker task (``asyncio.current_task()``) and in that task's context. A handler
that suspends is continued by the task, and the documented rules hold: per-handler order,
errors isolated and counted, cancellation, ``close()`` delivering what was accepted."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from waiting import until

from turnout.bus import Bus, Subscription
from turnout.events import Event

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="handlers run inline from Python 3.11 on"
)

REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="unset")


def numbered(i: int) -> Event:
    return Event("tool.started", "", None, {"i": i})


def number(event: Event) -> int:
    assert event.data is not None
    return int(event.data["i"])


async def from_thread(bus: Bus, numbers: range) -> None:
    """Emits ``numbers`` from another thread (not an event loop's), one at a time."""

    def emit_all() -> None:
        for i in numbers:
            bus.emit(numbered(i))

    await asyncio.to_thread(emit_all)


async def caught_up(bus: Bus, sub: Subscription[Any], handled: Callable[[], object]) -> None:
    """Emits a warm-up event on this loop and waits until it is handled: the worker then
    waits on an empty mailbox."""
    bus.emit(numbered(-1))
    await until(handled, "the warm-up handled")
    await until(lambda: sub._mailbox is not None and sub._mailbox._parked, "the worker waiting")


async def test_a_handler_that_does_not_suspend_runs_without_waking_its_task() -> None:
    got: list[int] = []

    async def handler(event: Event) -> None:
        got.append(number(event))

    async with Bus(node="n") as bus:
        sub = bus.subscribe("events.>", handler)
        await caught_up(bus, sub, lambda: got == [-1])
        assert sub._mailbox is not None
        parked = sub._mailbox._parked
        await from_thread(bus, range(50))
        await until(lambda: len(got) == 51, "every event handled")
        assert got == [-1, *range(50)]
        # The task still waits on the same future: it never ran for these events.
        assert sub._mailbox._parked is parked
        assert parked is not None and not parked.done()


async def test_an_inline_handler_sees_its_worker_task_and_the_task_context() -> None:
    seen: list[tuple[asyncio.Task[Any] | None, str]] = []

    async def handler(event: Event) -> None:
        seen.append((asyncio.current_task(), REQUEST.get()))
        REQUEST.set(f"after {number(event)}")  # the next event sees it, as in a task

    async with Bus(node="n") as bus:
        token = REQUEST.set("at subscribe")
        sub = bus.subscribe("events.>", handler)
        REQUEST.reset(token)
        await caught_up(bus, sub, lambda: len(seen) == 1)
        await from_thread(bus, range(3))
        await until(lambda: len(seen) == 4, "every event handled")
        tasks = {task for task, _ in seen}
        assert len(tasks) == 1 and None not in tasks  # the one worker task, every time
        assert [value for _, value in seen] == ["at subscribe", "after -1", "after 0", "after 1"]
        assert REQUEST.get() == "unset"  # the handler's context is its own


async def test_a_handler_that_suspends_keeps_the_order_of_its_events() -> None:
    release = asyncio.Event()
    log: list[str] = []

    async def handler(event: Event) -> None:
        i = number(event)
        log.append(f"start {i}")
        if i == 2:
            await release.wait()  # suspends: the worker task goes on with it
        log.append(f"end {i}")

    async with Bus(node="n") as bus:
        sub = bus.subscribe("events.>", handler)
        await caught_up(bus, sub, lambda: log == ["start -1", "end -1"])
        log.clear()
        await from_thread(bus, range(6))
        await until(lambda: "start 2" in log, "the event that suspends started")
        await asyncio.sleep(0.05)  # room for a later event to start too early
        assert log == ["start 0", "end 0", "start 1", "end 1", "start 2"]
        release.set()
        await until(lambda: len(log) == 12, "every event handled")
        assert log == [f"{edge} {i}" for i in range(6) for edge in ("start", "end")]
        # Caught up again, it runs inline again, in order.
        await until(lambda: sub._mailbox is not None and sub._mailbox._parked, "waiting")
        await from_thread(bus, range(6, 9))
        await until(lambda: len(log) == 18, "the later events handled")
        assert log[12:] == [f"{edge} {i}" for i in range(6, 9) for edge in ("start", "end")]


async def test_errors_of_inline_and_continued_handlers_are_counted_and_isolated() -> None:
    got: list[int] = []

    async def handler(event: Event) -> None:
        i = number(event)
        if i < 0:
            got.append(i)
            return
        if i % 3 == 1:
            await asyncio.sleep(0)  # this one fails after suspending, in the task
        if i % 3 != 2:
            got.append(i)
        if i % 3:
            raise ValueError(f"bad {i}")

    async with Bus(node="n") as bus:
        sub = bus.subscribe("events.>", handler)
        await caught_up(bus, sub, lambda: got == [-1])
        await from_thread(bus, range(9))
        await until(lambda: sub.errors == 6, "six failures counted")
        await until(lambda: len(got) == 7, "the others handled")
        assert got == [-1, 0, 1, 3, 4, 6, 7]
        assert bus.stats()["handler_errors"] == 6


async def test_timeouts_inside_an_inline_handler_cancel_the_handler_alone() -> None:
    outcomes: list[str] = []
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handler(event: Event) -> None:
        if number(event) < 0:
            outcomes.append("warm-up")
            return
        try:
            # wait_for needs the current task (from 3.12 it is asyncio.timeout)
            await asyncio.wait_for(asyncio.shield(never), 0.01)
        except asyncio.TimeoutError:
            outcomes.append(f"timed out {number(event)}")

    async with Bus(node="n") as bus:
        sub = bus.subscribe("events.>", handler)
        await caught_up(bus, sub, lambda: outcomes == ["warm-up"])
        await from_thread(bus, range(3))
        await until(lambda: len(outcomes) == 4, "every event handled")
        assert outcomes[1:] == ["timed out 0", "timed out 1", "timed out 2"]
        assert sub.errors == 0
        never.cancel()


async def test_a_handler_cancelling_its_own_task_inline_is_cancelled_where_it_awaits() -> None:
    seen: list[str] = []

    async def handler(event: Event) -> None:
        if number(event) < 0:
            seen.append("warm-up")
            return
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # the worker task: in a task, the next await raises
        seen.append("went on")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled at its await")
            raise

    async with Bus(node="n") as bus:
        sub = bus.subscribe("events.>", handler)
        await caught_up(bus, sub, lambda: seen == ["warm-up"])
        await from_thread(bus, range(1))
        await until(lambda: sub._done.done(), "the worker ended")
        assert seen == ["warm-up", "went on", "cancelled at its await"]


async def test_close_from_another_thread_delivers_what_was_accepted() -> None:
    got: list[int] = []
    entered = threading.Event()

    async def handler(event: Event) -> None:
        i = number(event)
        if i == 5:
            entered.set()
            await asyncio.sleep(0.01)  # suspended while the bus closes
        got.append(i)

    bus = Bus(node="n")
    sub = bus.subscribe("events.>", handler)
    await caught_up(bus, sub, lambda: got == [-1])

    def emit_and_close() -> None:
        for i in range(20):
            bus.emit(numbered(i))
        entered.wait(30)
        bus.close(timeout=30)

    await asyncio.to_thread(emit_and_close)
    assert got == [-1, *range(20)]
    assert sub._done.done()
