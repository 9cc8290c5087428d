"""The bounded buffer between the bus's dispatcher and one asyncio consumer.

Every stream and every subscription with an ``async def`` handler owns one. The bus puts
items from whichever thread is dispatching (one at a time: it holds its dispatch lock), and
one consumer takes them on its event loop. When full, the overflow policy decides:

- ``"drop_newest"``: the new item is dropped; ``"drop_oldest"``: the oldest buffered one
  is. Either way ``dropped`` counts it.
- ``"block"``: the putting thread waits for the consumer to make room. A thread that is
  running an event loop is never made to wait (the consumer may be a task on that very
  loop, which could then never run): the item is buffered beyond ``maxsize`` instead and
  ``overfilled`` counts it. Async producers get real backpressure through
  :meth:`Mailbox.wait_for_space` (``Bus.aemit``).

Wake-ups. A put that finds the consumer waiting wakes it; from another thread that is a
write to its loop's self-pipe, which gives up the GIL to the consumer's thread. A bus
delivering a run of messages holds those wake-ups in its :class:`Wakeups` until the whole
run is buffered: the consumers then find the run waiting and take it without waiting, and
each loop is woken once per run rather than once per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, Literal, TypeVar

__all__ = ["OVERFLOW_POLICIES", "Mailbox", "MailboxClosed", "Overflow", "Wakeups"]

Overflow = Literal["block", "drop_oldest", "drop_newest"]
OVERFLOW_POLICIES: tuple[Overflow, ...] = ("block", "drop_oldest", "drop_newest")

T = TypeVar("T")

# A blocked producer rechecks this often whether the consumer's loop has gone away.
_LOOP_CHECK_SECONDS = 0.25


class MailboxClosed(Exception):
    """Raised by :meth:`Mailbox.get` once the mailbox is closed and empty."""


class Wakeups:
    """The consumer wake-ups a bus holds while it delivers a run (see the module docstring).

    Only the thread holding the bus's dispatch lock puts into its mailboxes, holds and
    releases, so no lock guards it."""

    __slots__ = ("_held", "holding")

    def __init__(self) -> None:
        self.holding = False
        self._held: list[asyncio.Future[None]] = []

    def hold(self) -> None:
        self.holding = True

    def add(self, getter: asyncio.Future[None]) -> None:
        self._held.append(getter)

    def release(self) -> None:
        """Stops holding and wakes every consumer held."""
        self.holding = False
        self.flush()

    def flush(self) -> None:
        """Wakes every consumer held so far, with one call into each event loop."""
        held = self._held
        if not held:
            return
        self._held = []
        if len(held) == 1:
            _resolve_from_any_thread(held[0])
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for getter in held:
            by_loop.setdefault(getter.get_loop(), []).append(getter)
        running = asyncio._get_running_loop()
        for loop, getters in by_loop.items():
            if loop is running:
                _resolve_all(getters)
            else:
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                    loop.call_soon_threadsafe(_resolve_all, getters)


class Mailbox(Generic[T]):
    """A bounded single-producer, single-consumer buffer (see the module docstring)."""

    __slots__ = (
        "_blocked_threads",
        "_closed",
        "_getter",
        "_items",
        "_loop",
        "_space",
        "_space_waiters",
        "_unblocked",
        "_wakeups",
        "dropped",
        "maxsize",
        "overfilled",
        "overflow",
        "space_wanted",
    )

    def __init__(
        self,
        maxsize: int,
        overflow: Overflow,
        loop: asyncio.AbstractEventLoop | None = None,
        wakeups: Wakeups | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, not {maxsize}")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}, not {overflow!r}")
        self.maxsize = maxsize
        self.overflow: Overflow = overflow
        self.dropped = 0
        self.overfilled = 0
        self._items: deque[T] = deque()
        self._loop = loop  # the consumer's; known once it first waits if not given
        self._getter: asyncio.Future[None] | None = None
        self._wakeups = wakeups  # the bus's, holding wake-ups during a run
        self._space = threading.Condition(threading.Lock())
        self._blocked_threads = 0
        self._space_waiters: list[asyncio.Future[None]] = []
        # Whether a producer waits for room: read by the consumer after every take, so
        # one flag, set under ``_space`` before the producer checks for room.
        self.space_wanted = False
        self._unblocked = False  # set when closing: no producer may wait any more
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def full(self) -> bool:
        return len(self._items) >= self.maxsize and not self._unblocked

    def put(self, item: T) -> None:
        """Buffers ``item``, applying the overflow policy when full."""
        items = self._items
        if len(items) >= self.maxsize and not self._make_room():
            return
        items.append(item)
        if self._getter is not None:
            self._wake()

    def put_run(self, run: list[T]) -> None:
        """Buffers the items of ``run`` in order, as many :meth:`put` calls would, with
        one wake-up of the consumer."""
        items = self._items
        if len(items) + len(run) <= self.maxsize:
            items.extend(run)  # the consumer only takes: the room can only grow
            if self._getter is not None:
                self._wake()
            return
        room = self.maxsize - len(items)
        if room > 0:
            items.extend(run[:room])
        else:
            room = 0
        if self._getter is not None:
            self._wake()  # before any wait for room: the consumer makes it
        for item in run[room:]:
            self.put(item)

    def _wake(self) -> None:
        getter = self._getter
        if getter is None:
            return
        self._getter = None
        wakeups = self._wakeups
        if wakeups is not None and wakeups.holding:
            wakeups.add(getter)
        else:
            _resolve_from_any_thread(getter)

    def _make_room(self) -> bool:
        """Applies the overflow policy to a full buffer; False if ``item`` is dropped."""
        if self.overflow == "drop_newest":
            self.dropped += 1
            return False
        if self.overflow == "drop_oldest":
            try:
                self._items.popleft()
            except IndexError:  # the consumer emptied it meanwhile: nothing to drop
                return True
            self.dropped += 1
            return True
        if self._unblocked or asyncio._get_running_loop() is not None:
            self.overfilled += 1
            return True
        if self._wakeups is not None:
            self._wakeups.flush()  # the consumer that would make room may be held
        with self._space:
            self._blocked_threads += 1
            self.space_wanted = True
            try:
                while len(self._items) >= self.maxsize and not self._unblocked:
                    if self._loop is not None and self._loop.is_closed():
                        self._unblocked = True  # no consumer can ever come back
                        break
                    self._space.wait(_LOOP_CHECK_SECONDS)
            finally:
                self._blocked_threads -= 1
                self.space_wanted = self._blocked_threads > 0 or bool(self._space_waiters)
        if len(self._items) >= self.maxsize:
            self.overfilled += 1
        return True

    async def get(self) -> T:
        """The next item; raises :class:`MailboxClosed` once closed and drained."""
        items = self._items
        while not items:
            if self._closed:
                raise MailboxClosed
            loop = asyncio.get_running_loop()
            self._loop = loop
            waiter: asyncio.Future[None] = loop.create_future()
            self._getter = waiter
            if items or self._closed:  # a put raced with publishing the waiter
                self._getter = None
                continue
            try:
                await waiter
            finally:
                self._getter = None
        item = items.popleft()
        if self.space_wanted:
            self.signal_space()
        return item

    def get_nowait(self) -> T:
        """The next buffered item; raises ``IndexError`` when there is none."""
        item = self._items.popleft()
        if self.space_wanted:
            self.signal_space()
        return item

    async def feed(
        self,
        handler: Callable[[T], Awaitable[object]],
        failed: Callable[[Exception], object],
    ) -> None:
        """Awaits ``handler`` with each item in order, one at a time, until the mailbox is
        closed and drained; ``failed`` gets what a call raised. While items are buffered
        the next is taken without waiting (one C call and a flag read); only an empty
        mailbox is waited on. One item at a time, never a batch, so that ``maxsize``
        bounds everything not yet handled and ``drop_oldest`` can still drop the oldest
        of them: only the item in the handler's hands is outside the mailbox."""
        take = self._items.popleft
        while True:
            try:
                item = take()
            except IndexError:
                try:
                    item = await self.get()
                except MailboxClosed:
                    return
            else:
                if self.space_wanted:
                    self.signal_space()
            try:
                await handler(item)
            except Exception as exc:
                failed(exc)

    async def wait_for_space(self) -> None:
        """Returns once the mailbox has room (or can no longer make anyone wait)."""
        while self.full and not self._closed:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            with self._space:
                self._space_waiters.append(waiter)
                self.space_wanted = True
            if not self.full:
                break
            await waiter

    def unblock(self) -> None:
        """From now on a full ``"block"`` mailbox overfills instead of making a producer
        wait: the bus is closing and must be able to finish its last deliveries."""
        self._unblocked = True
        self.signal_space()

    def close(self) -> None:
        """No more items will come; the consumer drains what is buffered, then
        :meth:`get` raises :class:`MailboxClosed`."""
        self._closed = True
        self.unblock()
        getter = self._getter
        if getter is not None:
            self._getter = None
            _resolve_from_any_thread(getter)

    def signal_space(self) -> None:
        """Tells the producers waiting for room that the consumer took items."""
        with self._space:
            self._space.notify_all()
            waiters, self._space_waiters = self._space_waiters, []
            self.space_wanted = self._blocked_threads > 0
        for waiter in waiters:
            _resolve_from_any_thread(waiter)


def _resolve_from_any_thread(waiter: asyncio.Future[None]) -> None:
    loop = waiter.get_loop()
    if asyncio._get_running_loop() is loop:
        _resolve(waiter)
        return
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
        loop.call_soon_threadsafe(_resolve, waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _resolve_all(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
