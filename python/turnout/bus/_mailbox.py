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

Runs. What one put brings (a run: the events of a received run, one list shared by every
mailbox it goes to; a single event is a run of one) is read by an async handler's worker
in place, through its own iterator, with no call per item; the rest of the run being read
still counts against ``maxsize``. A producer waiting for room is told after each run the
worker finishes (a stream's reader tells it after each item).

Wake-ups. A put that finds the consumer waiting wakes it; from another thread that is a
write to its loop's self-pipe, which gives up the GIL to the consumer's thread. A bus
delivering a run of messages holds those wake-ups in its :class:`Wakeups` until the whole
run is buffered: the consumers then find the run waiting and take it without waiting, and
each loop is woken once per run rather than once per message.

Inline runs. An async handler's worker that has caught up waits on its mailbox; what
wakes it is a call into its loop (a plain callback, outside any task). Waking the task
there would cost a task step per handler and run (a future resolved, a callback
scheduled, the worker's coroutines resumed and suspended again), which with many
handlers and small runs is most of the work. Instead that callback runs the handler
right there, inline, as Python 3.12's eager tasks run a new task's first step: in the
worker task's own context, with ``asyncio.current_task()`` set to the worker task. An
event whose handler finishes without suspending costs no task step. When one suspends
(it awaits something not ready), the rest, that handler call first, is handed to the
worker task: the task resumes the suspended coroutine and goes on with the mailbox, so
no later event of that handler starts before it finished. Only on Python 3.11 and later
(the worker task is made with a context the mailbox holds), and only for a wake-up from
another thread: a put on the consumer's own loop wakes the worker task as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import operator
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator, Sequence
from typing import Any, Generic, Literal, TypeVar, cast

__all__ = ["OVERFLOW_POLICIES", "Mailbox", "MailboxClosed", "Overflow", "Wakeups"]

Overflow = Literal["block", "drop_oldest", "drop_newest"]
OVERFLOW_POLICIES: tuple[Overflow, ...] = ("block", "drop_oldest", "drop_newest")

T = TypeVar("T")
# A consumer to wake: its mailbox and the future it waits on.
_Woken = tuple["Mailbox[Any]", "asyncio.Future[None]"]

# A blocked producer rechecks this often whether the consumer's loop has gone away.
_LOOP_CHECK_SECONDS = 0.25

# What makes a task the current one while a callback runs its code (what asyncio's own
# eager tasks use); without them handlers are never run inline.
_enter_task: Callable[[asyncio.AbstractEventLoop, asyncio.Task[Any]], None] | None = getattr(
    asyncio.tasks, "_enter_task", None
)
_leave_task: Callable[[asyncio.AbstractEventLoop, asyncio.Task[Any]], None] | None = getattr(
    asyncio.tasks, "_leave_task", None
)


class MailboxClosed(Exception):
    """Raised by :meth:`Mailbox.get` once the mailbox is closed and empty."""


class Wakeups:
    """The consumer wake-ups a bus holds while it delivers a run (see the module docstring).

    Only the thread holding the bus's dispatch lock puts into its mailboxes, holds and
    releases. Waking a loop from another thread writes to its self-pipe, and that write
    gives the GIL to the loop's thread whenever it is asking for it, busy or not; so
    while a call into a loop is pending, wake-ups of later runs for that loop join it
    instead of writing again (``_scheduled``, shared with that loop's thread)."""

    __slots__ = ("_held", "_lock", "_scheduled", "holding")

    def __init__(self) -> None:
        self.holding = False
        self._held: list[_Woken] = []
        self._lock = threading.Lock()  # guards _scheduled
        self._scheduled: dict[asyncio.AbstractEventLoop, list[_Woken]] = {}

    def hold(self) -> None:
        self.holding = True

    def add(self, mailbox: Mailbox[Any], getter: asyncio.Future[None]) -> None:
        self._held.append((mailbox, getter))

    def release(self) -> None:
        """Stops holding and wakes every consumer held."""
        self.holding = False
        self.flush()

    def flush(self) -> None:
        """Wakes every consumer held so far, with at most one call into each event loop."""
        held = self._held
        if not held:
            return
        self._held = []
        by_loop: dict[asyncio.AbstractEventLoop, list[_Woken]] = {}
        for woken in held:
            by_loop.setdefault(woken[1].get_loop(), []).append(woken)
        running = asyncio._get_running_loop()
        for loop, getters in by_loop.items():
            if loop is running:  # maybe inside a task: the workers are woken as tasks
                for _mailbox, getter in getters:
                    _resolve(getter)
                continue
            with self._lock:
                pending = self._scheduled.get(loop)
                if pending is not None:  # the call already on its way wakes these too
                    pending.extend(getters)
                    continue
                self._scheduled[loop] = getters
            try:
                loop.call_soon_threadsafe(self._wake, loop)
            except RuntimeError:  # a closed loop: nobody waits there any more
                with self._lock:
                    del self._scheduled[loop]

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        """On ``loop``, outside any task: wakes the consumers gathered for it."""
        with self._lock:
            woken = self._scheduled.pop(loop, [])
        for mailbox, getter in woken:
            mailbox._wakened(getter)


class Mailbox(Generic[T]):
    """A bounded single-producer, single-consumer buffer (see the module docstring).

    Items are buffered as runs: a run put in one call (:meth:`put_run`, one list shared
    by every mailbox the run goes to) is read by the consumer through its own iterator
    over that list, without a call per item; :meth:`put` is a run of one. What counts
    against ``maxsize`` is every item not yet taken: those of the queued runs and the
    rest of the run being read.

    Threads. The producer (one thread at a time) appends runs and counts them in
    ``_put``; the consumer takes the next run under ``_lock`` and counts what it took in
    ``_taken``. Dropping the oldest items (``"drop_oldest"``) advances the iterators of
    the run being read and of the queued runs, under ``_lock``, so that no run is taken
    meanwhile; an iterator's step is one C call, so the consumer and a dropping producer
    never get the same item."""

    __slots__ = (
        "_blocked_threads",
        "_closed",
        "_current",
        "_dropped_queued",
        "_getter",
        "_handover",
        "_inline",
        "_lock",
        "_loop",
        "_parked",
        "_put",
        "_runs",
        "_space",
        "_space_waiters",
        "_taken",
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
        self._runs: deque[Iterator[T]] = deque()  # queued, each over its own items
        self._current: Iterator[T] = iter(())  # the run the consumer reads
        self._lock = threading.Lock()  # taking a run; dropping from runs
        self._put = 0  # items ever queued (the producer's count)
        self._taken = 0  # items in runs when the consumer took them (the consumer's)
        self._dropped_queued = 0  # items dropped from runs before they were taken
        self._loop = loop  # the consumer's; known once it first waits if not given
        self._getter: asyncio.Future[None] | None = None
        # The future an async handler's worker task waits on while it has nothing to do,
        # and what running its handler inline needs; what an inline run left to the task.
        # Only the consumer's loop thread touches these.
        self._parked: asyncio.Future[None] | None = None
        self._inline: _Inline | None = None
        self._handover: _Handover | None = None
        self._wakeups = wakeups  # the bus's, holding wake-ups during a run
        self._space = threading.Condition(threading.Lock())
        self._blocked_threads = 0
        self._space_waiters: list[asyncio.Future[None]] = []
        # Whether a producer waits for room: read by the consumer after each run it has
        # read and each item a stream takes; set under ``_space`` before the producer
        # checks for room.
        self.space_wanted = False
        self._unblocked = False  # set when closing: no producer may wait any more
        self._closed = False

    def __len__(self) -> int:
        with self._lock:
            return self._size()

    def _size(self) -> int:
        """Items not yet taken. Exact under ``_lock``; without it, at least the truth
        (``_taken`` is read before the current run: a run taken in between counts
        twice, never not at all)."""
        queued = self._put - self._dropped_queued - self._taken
        return max(queued + operator.length_hint(self._current), 0)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def full(self) -> bool:
        return len(self) >= self.maxsize and not self._unblocked

    def put(self, item: T) -> None:
        """Buffers ``item``, applying the overflow policy when full."""
        self.put_run((item,))

    def put_run(self, run: Sequence[T]) -> None:
        """Buffers the items of ``run`` in order, as many :meth:`put` calls would, with
        one wake-up of the consumer. ``run`` is read in place: it must not change."""
        count = len(run)
        if self._size() + count <= self.maxsize:
            self._put += count
            self._runs.append(iter(run))
        elif self.overflow == "drop_newest":
            # Exact under the lock: read without it, the size may have counted a run the
            # consumer was taking twice, and the whole run may fit after all.
            with self._lock:
                room = min(max(self.maxsize - self._size(), 0), count)
                self.dropped += count - room
                if room:
                    self._put += room
                    self._runs.append(iter(run[:room]))
        elif self.overflow == "drop_oldest":
            with self._lock:
                self._put += count
                self._runs.append(iter(run))
                self.dropped += self._drop_oldest(self._size() - self.maxsize)
        elif self._unblocked or asyncio._get_running_loop() is not None:
            with self._lock:
                self.overfilled += min(max(self._size() + count - self.maxsize, 0), count)
                self._put += count
                self._runs.append(iter(run))
        else:
            self._put_waiting(run)
            return
        if self._getter is not None:
            self._wake()

    def _drop_oldest(self, excess: int) -> int:
        """Drops up to ``excess`` of the oldest items not taken; holding ``_lock``."""
        dropped = 0
        current = self._current
        while dropped < excess and next(current, _NOTHING) is not _NOTHING:
            dropped += 1
        for run in self._runs:
            while dropped < excess and next(run, _NOTHING) is not _NOTHING:
                dropped += 1
                self._dropped_queued += 1
            if dropped >= excess:
                break
        return dropped

    def _put_waiting(self, run: Sequence[T]) -> None:
        """The ``"block"`` policy on a thread that may wait: what fits goes in, then the
        rest as the consumer makes room (see the module docstring)."""
        start = 0
        while start < len(run):
            room = self.maxsize - self._size()
            if room <= 0:
                if self._getter is not None:
                    self._wake()
                if self._wakeups is not None:
                    self._wakeups.flush()  # the consumer that would make room may be held
                room = self._wait_for_room()
            stop = start + room if room > 0 else len(run)
            chunk = run[start:stop]
            if room <= 0:  # could not wait: beyond maxsize, counted
                self.overfilled += len(chunk)
            self._put += len(chunk)
            self._runs.append(iter(chunk))
            start = stop
        if self._getter is not None:
            self._wake()

    def _wait_for_room(self) -> int:
        """Waits until the consumer makes room; the room, or 0 if it can wait no more."""
        with self._space:
            self._blocked_threads += 1
            self.space_wanted = True
            try:
                while self._size() >= self.maxsize and not self._unblocked:
                    if self._loop is not None and self._loop.is_closed():
                        self._unblocked = True  # no consumer can ever come back
                        break
                    self._space.wait(_LOOP_CHECK_SECONDS)
            finally:
                self._blocked_threads -= 1
                self.space_wanted = self._blocked_threads > 0 or bool(self._space_waiters)
        return max(self.maxsize - self._size(), 0)

    def _wake(self) -> None:
        getter = self._getter
        if getter is None:
            return
        self._getter = None
        wakeups = self._wakeups
        if wakeups is not None and wakeups.holding:
            wakeups.add(self, getter)
            return
        loop = getter.get_loop()
        if asyncio._get_running_loop() is loop:
            _resolve(getter)
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(self._wakened, getter)

    def _wakened(self, getter: asyncio.Future[None]) -> None:
        """On the consumer's loop, outside any task: a put woke the consumer waiting on
        ``getter``. An async handler's worker with nothing to do has its handler run
        right here (see "Inline runs" in the module docstring); any other is woken."""
        if getter.done():
            return
        inline = self._inline
        if inline is None or self._parked is not getter or self._closed:
            getter.set_result(None)
            return
        inline.context.run(self._run_inline, inline, getter)

    def _run_inline(self, inline: _Inline, getter: asyncio.Future[None]) -> None:
        """Drains the mailbox through the handler, in the worker task's context and as
        that task, until it is empty (the worker stays waiting on ``getter``) or a
        handler suspends or raises beyond ``Exception`` (handed to the worker task)."""
        loop = getter.get_loop()
        task = inline.task
        enter, leave = _enter_task, _leave_task
        assert enter is not None and leave is not None  # else nothing is run inline
        try:
            enter(loop, task)
        except RuntimeError:  # another task is running: no inline run from here
            getter.set_result(None)
            return
        try:
            while True:
                driver = inline.driver
                if driver is None:
                    driver = inline.driver = inline.make_driver()
                try:
                    yielded = driver.send(None)
                except BaseException as exc:  # the worker raises it, as if it ran it
                    inline.driver = None
                    self._handover = _Handover(None, None, exc)
                    break
                if yielded is not _IDLE:  # suspended in a handler
                    self._handover = _Handover(driver, yielded, None)
                    break
                if getter.done() or self._closed:  # woken (closed, cancelled): its task goes on
                    break
                self._getter = getter  # waiting again, on the same future
                if not self._runs:
                    return
                self._getter = None  # a put raced with waiting again
        finally:
            leave(loop, task)
        if not getter.done():
            getter.set_result(None)

    def _next_run(self) -> bool:
        """The consumer moves on to the next queued run with items; False if none."""
        if not self._runs:  # only the consumer takes runs: none queued stays none taken
            return False
        with self._lock:
            runs = self._runs
            while runs:
                run = runs.popleft()
                count = operator.length_hint(run)
                if count:
                    # In this order: a producer reading _taken and then _current
                    # meanwhile counts the run twice rather than not at all.
                    self._current = run
                    self._taken += count
                    return True
        return False

    def _take(self) -> T | _Nothing:
        """The next item, or ``_NOTHING`` if none is buffered."""
        while True:
            item = next(self._current, _NOTHING)
            if item is not _NOTHING or not self._next_run():
                if self.space_wanted:
                    self.signal_space()
                return item

    async def get(self) -> T:
        """The next item; raises :class:`MailboxClosed` once closed and drained."""
        while True:
            item = self._take()
            if item is not _NOTHING:
                return cast(T, item)
            if self._closed:
                raise MailboxClosed
            loop = asyncio.get_running_loop()
            self._loop = loop
            waiter: asyncio.Future[None] = loop.create_future()
            self._getter = waiter
            if self._runs or self._closed:  # a put raced with publishing the waiter
                self._getter = None
                continue
            try:
                await waiter
            finally:
                self._getter = None

    def get_nowait(self) -> T:
        """The next buffered item; raises ``IndexError`` when there is none."""
        item = self._take()
        if item is _NOTHING:
            raise IndexError("no item is buffered")
        return cast(T, item)

    async def feed(
        self,
        handler: Callable[[T], Awaitable[object]],
        failed: Callable[[Exception], object],
        context: contextvars.Context | None = None,
    ) -> None:
        """Awaits ``handler`` with each item in order, one at a time, until the mailbox is
        closed and drained; ``failed`` gets what a call raised. Within a run the next
        item is one step of the run's iterator; only an empty mailbox is waited on. The
        item in the handler's hands is the only one taken and not handled, so
        ``maxsize`` bounds everything else not yet handled and ``drop_oldest`` can still
        drop the oldest of them.

        Run as a task made with ``context`` (its own), a wake-up from another thread may
        run the handler inline instead of waking the task (see the module docstring)."""
        task = asyncio.current_task()
        if context is not None and task is not None and _enter_task and _leave_task:
            make_driver = functools.partial(self._drive, handler, failed)
            self._inline = _Inline(make_driver, context, task)
        try:
            while True:
                handover = self._handover
                if handover is not None:  # an inline run suspended in a handler, or raised
                    self._handover = None
                    await handover
                await self._drain(handler, failed)
                if self._closed and not self._runs:
                    return
                await self._park()
        finally:
            self._inline = None

    async def _drain(
        self,
        handler: Callable[[T], Awaitable[object]],
        failed: Callable[[Exception], object],
    ) -> None:
        """Awaits ``handler`` with each item taken in order until none is buffered."""
        while True:
            for item in self._current:
                try:
                    await handler(item)
                except Exception as exc:
                    failed(exc)
            if self.space_wanted:
                self.signal_space()
            if not self._next_run():
                return

    async def _drive(
        self,
        handler: Callable[[T], Awaitable[object]],
        failed: Callable[[Exception], object],
    ) -> None:
        """The inline runs' coroutine, one per worker, made once: each ``send(None)``
        drains the mailbox as :meth:`_drain` does and yields ``_IDLE`` once it is empty;
        anything else it yields is a handler suspending (see :class:`_Handover`)."""
        while True:
            for item in self._current:
                try:
                    await handler(item)
                except Exception as exc:
                    failed(exc)
            if self.space_wanted:
                self.signal_space()
            if not self._next_run():
                await _IDLE

    async def _park(self) -> None:
        """The worker waits until a put or closing wakes it, or an inline run hands it
        the rest of what it started."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        waiter: asyncio.Future[None] = loop.create_future()
        self._getter = waiter
        if self._runs or self._closed:  # a put raced with publishing the waiter
            self._getter = None
            return
        self._parked = waiter
        try:
            await waiter
        except asyncio.CancelledError as exc:
            # Cancelled after an inline run handed over a suspended handler but before
            # this task took it: the cancellation is the handler's, as in a task.
            handover = self._handover
            if handover is None or handover.coro is None:
                raise
            handover.cancelled = exc
        finally:
            self._getter = None
            self._parked = None

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


class _Nothing:
    """What :meth:`Mailbox._take` returns when no item is buffered."""


_NOTHING = _Nothing()


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


class _Idle:
    """What the inline driver awaits once the mailbox is empty: it yields itself, to the
    inline run or the handover driving it (never to a task, which would refuse it)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, Any, None]:
        yield self


_IDLE = _Idle()


class _Inline:
    """What running an async handler inline takes: the worker task and that task's
    context to run it as, and its driver (:meth:`Mailbox._drive`), made on first need and
    again after a handler raised beyond ``Exception`` through it."""

    __slots__ = ("context", "driver", "make_driver", "task")

    def __init__(
        self,
        make_driver: Callable[[], Coroutine[Any, Any, None]],
        context: contextvars.Context,
        task: asyncio.Task[Any],
    ) -> None:
        self.make_driver = make_driver
        self.driver: Coroutine[Any, Any, None] | None = None
        self.context = context
        self.task = task


class _Handover:
    """What an inline run leaves to the worker task, which awaits it: the driver that
    suspended in a handler and what it yielded (a future it waits on, or None for a bare
    yield), continued as if the task had run it all along until the driver is idle
    again; or what it raised beyond ``Exception``, raised again."""

    __slots__ = ("cancelled", "coro", "raised", "yielded")

    def __init__(
        self,
        coro: Coroutine[Any, Any, None] | None,
        yielded: object,
        raised: BaseException | None,
    ) -> None:
        self.coro = coro
        self.yielded = yielded
        self.raised = raised
        self.cancelled: BaseException | None = None  # the task was cancelled before it

    def __await__(self) -> Generator[Any, Any, None]:
        coro = self.coro
        if coro is None:
            assert self.raised is not None
            raise self.raised
        yielded = self.yielded
        # Cancelled meanwhile, do what Task.cancel() does: cancel the future waited on,
        # else throw the cancellation in.
        if self.cancelled is not None and not (asyncio.isfuture(yielded) and yielded.cancel()):
            try:
                yielded = coro.throw(self.cancelled)
            except StopIteration:
                return
        while yielded is not _IDLE:
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # thrown in by the task: cancellation
                try:
                    yielded = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration:
                    return
