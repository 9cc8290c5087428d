"""What the bus hands out: :class:`Subscription` (a handler's), :class:`Stream` (a bounded
async iterator of matching events) and :class:`Message` (what raw subscribers receive)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from turnout.bus._mailbox import Mailbox, MailboxClosed, Overflow

if TYPE_CHECKING:
    from turnout.bus import Bus

__all__ = ["FINISHED", "Message", "Stream", "Subscription"]

T = TypeVar("T")

# The `_done` of every subscription with no worker: finished from the start, never set.
FINISHED: concurrent.futures.Future[None] = concurrent.futures.Future()
FINISHED.set_result(None)


@dataclass(frozen=True, slots=True)
class Message:
    """What a raw subscriber receives: the subject and the payload bytes as published."""

    subject: str
    data: bytes


class Subscription(Generic[T]):
    """A handler's subscription; ``T`` is :class:`Event`, or :class:`Message` when raw.

    A sync handler is called on the publishing thread. An ``async def`` handler runs on the
    event loop it was subscribed from, one event at a time, fed through a bounded mailbox
    whose overflow policy and counters (``dropped``, ``overfilled``) are shown here.
    ``unsubscribe()`` is idempotent; events already in the mailbox are still handled. Also
    a context manager that unsubscribes on exit.
    """

    __slots__ = (
        "_active",
        "_bus",
        "_call",
        "_done",
        "_handle",
        "_loop",
        "_mailbox",
        "_worker",
        "errors",
        "handler",
        "pattern",
        "queue",
        "raw",
    )

    def __init__(
        self,
        bus: Bus,
        pattern: str,
        queue: str | None,
        raw: bool,
        handler: Callable[[T], object] | None,
        mailbox: Mailbox[T] | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self.pattern = pattern
        self.queue = queue
        self.raw = raw
        self.handler = handler
        #: How many times the handler raised.
        self.errors = 0
        self._bus = bus
        self._mailbox = mailbox
        self._loop = loop
        # What the dispatcher calls with each event: the sync handler itself, or the
        # mailbox feeding an async handler or a stream.
        call = mailbox.put if mailbox is not None else handler
        assert call is not None
        self._call: Callable[[T], object] = call
        self._handle = -1
        self._active = True
        self._worker: object = None  # keeps the worker task alive (loops hold weak refs)
        # Set when nothing of this subscription runs any more: at once (the one shared,
        # finished future) unless a worker task feeds an async handler from the mailbox.
        # A future holds a lock and a condition: a sync subscription must not pay for one.
        self._done: concurrent.futures.Future[None] = (
            FINISHED if mailbox is None or handler is None else concurrent.futures.Future()
        )

    @property
    def active(self) -> bool:
        return self._active

    @property
    def dropped(self) -> int:
        """Events dropped by a full mailbox's overflow policy."""
        return 0 if self._mailbox is None else self._mailbox.dropped

    @property
    def overfilled(self) -> int:
        """Events a full ``"block"`` mailbox took beyond its size (see the module doc)."""
        return 0 if self._mailbox is None else self._mailbox.overfilled

    @property
    def pending(self) -> int:
        """Events waiting in the mailbox."""
        return 0 if self._mailbox is None else len(self._mailbox)

    def unsubscribe(self) -> None:
        self._bus._unsubscribe(self)

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unsubscribe()

    def __repr__(self) -> str:
        queue = f" queue={self.queue!r}" if self.queue else ""
        return f"<Subscription {self.pattern!r}{queue} handler={self.handler!r}>"


class Stream(Generic[T]):
    """A bounded stream of the events (or raw messages) matching a pattern.

    Iterate it with ``async for``; it ends once it is closed and drained (``close()``, the
    ``async with`` block ending, or the bus closing). Events published after the stream
    was created are buffered until read; when the buffer is full the overflow policy
    applies, and ``dropped``/``overfilled`` count what it did.
    """

    def __init__(self, subscription: Subscription[T], mailbox: Mailbox[T]) -> None:
        self._subscription = subscription
        self._mailbox = mailbox

    @property
    def pattern(self) -> str:
        return self._subscription.pattern

    @property
    def queue(self) -> str | None:
        return self._subscription.queue

    @property
    def maxsize(self) -> int:
        return self._mailbox.maxsize

    @property
    def overflow(self) -> Overflow:
        return self._mailbox.overflow

    @property
    def dropped(self) -> int:
        return self._mailbox.dropped

    @property
    def overfilled(self) -> int:
        return self._mailbox.overfilled

    @property
    def pending(self) -> int:
        return len(self._mailbox)

    @property
    def closed(self) -> bool:
        return self._mailbox.closed

    def close(self) -> None:
        """Stops receiving; what is buffered can still be read, then iteration ends."""
        self._subscription.unsubscribe()

    def __aiter__(self) -> Stream[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return self._mailbox.get_nowait()  # with a backlog, no second coroutine
        except IndexError:
            pass
        try:
            return await self._mailbox.get()
        except MailboxClosed:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Stream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Stream {self.pattern!r} pending={self.pending} dropped={self.dropped}>"
