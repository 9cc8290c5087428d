"""The bounded channel of one workspace's build updates: coder's buffered ``chan``, for
asyncio.

The dispatcher fills it; consumers read it with ``async for``, ``get``, ``get_many``,
``get_nowait``, or a batch at a time with ``async for batch in channel.batches()``. What
the dispatcher buffers is a ``WorkspaceBuildUpdate`` (object path) or, from the raw path,
the JSON bytes of a message. Bytes are decoded when read, a batch in one call into Rust:
a message of the common shape becomes a ``LazyBuildUpdate`` (its fields checked and held
as Rust values, its Python objects made when a field is read), any other is decoded by
``WorkspaceBuildUpdate.from_json``; a message whose fields are invalid is found out here:
it is skipped and counted in ``undecodable`` (and logged), never raised into the
consumer's loop.

A batch for one channel is buffered in one operation (``deque.extend``), whatever its size.
When the channel is full, its overflow policy applies: ``"block"`` makes the dispatcher wait
for room (and so stalls every channel, as in coder); ``"drop_oldest"`` discards the oldest
buffered updates and counts them in ``dropped``.

Single event loop, not thread-safe: the dispatcher and the consumers run on one loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from itertools import islice
from typing import Literal

from turnout._core import ChannelWait, RoundWaker
from turnout._json_object import MalformedMessageError
from turnout.workspace._build_update import (
    WorkspaceBuildUpdate,
    decode_routed_many,
    decode_routed_update,
)
from turnout.workspace._errors import ChannelClosedError

__all__ = ["CHANNEL_OVERFLOW_POLICIES", "ChannelOverflow", "WorkspaceChannel"]

ChannelOverflow = Literal["block", "drop_oldest"]
CHANNEL_OVERFLOW_POLICIES: tuple[ChannelOverflow, ...] = ("block", "drop_oldest")

_log = logging.getLogger("turnout.workspace")


class WorkspaceChannel:
    """The updates of one workspace, oldest first (see the module docstring)."""

    # Slots: the raw path touches thousands of channels per batch, attribute access counts.
    __slots__ = (
        "_capacity",
        "_closed",
        "_dropped",
        "_getters",
        "_items",
        "_name",
        "_overflow",
        "_room",
        "_undecodable",
        "_waker",
    )

    def __init__(
        self,
        name: str,
        capacity: int,
        overflow: ChannelOverflow,
        *,
        waker: RoundWaker | None = None,
    ) -> None:
        """``waker`` wakes the readers of every channel that shares it with one loop
        callback per turn (the dispatcher gives all its channels one); by default each
        channel has its own."""
        if capacity < 1:
            raise ValueError(f"buffer must be at least 1, not {capacity}")
        if overflow not in CHANNEL_OVERFLOW_POLICIES:
            raise ValueError(
                f"overflow must be one of {CHANNEL_OVERFLOW_POLICIES}, not {overflow!r}"
            )
        self._name = name
        self._capacity = capacity
        self._overflow: ChannelOverflow = overflow
        # A drop_oldest channel is a deque with maxlen: extending it discards the oldest.
        self._items: deque[WorkspaceBuildUpdate | bytes] = deque(
            maxlen=capacity if overflow == "drop_oldest" else None
        )
        # None rather than an empty list when no reader waits: the check on every push
        # then reads no per-channel object (with thousands of channels, a cache miss).
        self._getters: list[ChannelWait] | None = None
        self._waker = RoundWaker() if waker is None else waker
        self._room: asyncio.Future[None] | None = None  # the blocked dispatcher's wait
        self._closed = False
        self._dropped = 0
        self._undecodable = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<WorkspaceChannel {self._name!r} {len(self._items)}/{self._capacity} "
            f"{self._overflow} {state}>"
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def overflow(self) -> ChannelOverflow:
        return self._overflow

    @property
    def closed(self) -> bool:
        """No more updates will arrive (those buffered can still be read)."""
        return self._closed

    @property
    def dropped(self) -> int:
        """Updates discarded by ``drop_oldest`` to make room."""
        return self._dropped

    @property
    def undecodable(self) -> int:
        """Raw messages skipped when read because they are not valid build updates."""
        return self._undecodable

    def __len__(self) -> int:
        """Updates buffered (raw ones counted before decoding)."""
        return len(self._items)

    # --- the consumer's side -------------------------------------------------------------

    def __aiter__(self) -> WorkspaceChannel:
        return self

    async def __anext__(self) -> WorkspaceBuildUpdate:
        try:
            return await self.get()
        except ChannelClosedError:
            raise StopAsyncIteration from None

    async def get(self) -> WorkspaceBuildUpdate:
        """The oldest update, waiting for one; ``ChannelClosedError`` once the channel is
        closed and drained."""
        while True:
            while self._items:
                update = self._take()
                if update is not None:
                    return update
            if self._closed:
                raise ChannelClosedError(f"workspace channel {self._name!r} is closed")
            await self._wait_for_items()

    def get_nowait(self) -> WorkspaceBuildUpdate:
        """The oldest update; ``asyncio.QueueEmpty`` if none is buffered yet,
        ``ChannelClosedError`` once the channel is closed and drained."""
        while self._items:
            update = self._take()
            if update is not None:
                return update
        if self._closed:
            raise ChannelClosedError(f"workspace channel {self._name!r} is closed")
        raise asyncio.QueueEmpty

    async def get_many(self, limit: int | None = None) -> list[WorkspaceBuildUpdate]:
        """Every buffered update (at most ``limit``), waiting until there is at least one;
        ``[]`` once the channel is closed and drained. One wake-up for a whole batch."""
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        while True:
            taken: list[WorkspaceBuildUpdate] = []
            while self._items and (limit is None or len(taken) < limit):
                taken += self._take_many(None if limit is None else limit - len(taken))
            if taken or self._closed:
                return taken
            await self._wait_for_items()

    async def batches(self, limit: int | None = None) -> AsyncIterator[list[WorkspaceBuildUpdate]]:
        """Each batch as it arrives (what ``get_many(limit)`` returns, in a loop), until the
        channel is closed and drained: one wake-up per batch instead of one per update."""
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        # get_many inlined: with a few updates per batch, the frames of a get_many and a
        # wait per batch cost more than the batch's updates.
        items = self._items
        while True:
            if items and limit is None:
                # _take_many(None) inlined, for the same reason.
                batch, uncommon = decode_routed_many(items, self._name)
                items.clear()
                if self._room is not None:
                    self._made_room()
                if uncommon:
                    batch = self._decode_uncommon(batch)
                if batch:
                    yield batch
            elif items:
                batch = self._take_many(limit)
                if batch:
                    yield batch
            elif self._closed:
                return
            else:
                waiter = self._waker.wait()
                getters = self._getters
                if getters is None:
                    self._getters = [waiter]
                else:
                    getters.append(waiter)
                try:
                    await waiter
                except BaseException:
                    self._forget(waiter)
                    raise

    def _take(self) -> WorkspaceBuildUpdate | None:
        """Pops the oldest item, decoded; None if it was an undecodable raw message."""
        item = self._items.popleft()
        self._made_room()
        if not isinstance(item, bytes):
            return item
        return self._decode(item)

    def _take_many(self, count: int | None) -> list[WorkspaceBuildUpdate]:
        """Pops the oldest ``count`` items (all if None), decoded in one call into Rust;
        undecodable raw messages are skipped (and counted)."""
        items = self._items
        if count is None or count >= len(items):
            taken = list(items)
            items.clear()
        else:
            taken = [items.popleft() for _ in range(count)]
        if self._room is not None:
            self._made_room()
        decoded, uncommon = decode_routed_many(taken, self._name)
        if not uncommon:
            return decoded
        return self._decode_uncommon(decoded)

    def _decode_uncommon(
        self, decoded: list[WorkspaceBuildUpdate | bytes]
    ) -> list[WorkspaceBuildUpdate]:
        """``decoded`` with each raw message left (of another shape than Go's) decoded by
        Python's decoder, which has the last word, or dropped (and counted)."""
        slow = (self._decode(item) if isinstance(item, bytes) else item for item in decoded)
        return [update for update in slow if update is not None]

    def _made_room(self) -> None:
        room = self._room
        if room is not None:
            self._room = None
            if not room.done():
                room.set_result(None)

    def _decode(self, item: bytes) -> WorkspaceBuildUpdate | None:
        """A raw message decoded; None (counted and logged) if it is no build update."""
        try:
            return decode_routed_update(item, self._name)
        except MalformedMessageError as exc:
            self._undecodable += 1
            _log.warning(
                "workspace channel %r: skipping an undecodable update: %s", self._name, exc
            )
            return None

    async def _wait_for_items(self) -> None:
        waiter = self._waker.wait()
        if self._getters is None:
            self._getters = []
        self._getters.append(waiter)
        try:
            await waiter
        except BaseException:
            self._forget(waiter)
            raise

    def _forget(self, waiter: ChannelWait) -> None:
        """Drops a reader's wait that ended without a wake-up (cancelled)."""
        # A waiter that was woken has already left the list; a cancelled one has not.
        getters = self._getters
        if getters is not None and waiter in getters:
            getters.remove(waiter)

    # --- the dispatcher's side -----------------------------------------------------------

    def _offer_many(self, batch: Sequence[WorkspaceBuildUpdate | bytes], start: int = 0) -> int:
        """Buffers ``batch[start:]`` in one operation, or as much of it as a ``block``
        channel has room for; returns the index just past the last item buffered. (One
        update is a batch of one.)"""
        items = self._items
        if not start and len(items) + len(batch) <= self._capacity:  # the common case
            items.extend(batch)
            if self._getters:
                self._wake_getters()
            return len(batch)
        count = len(batch) - start
        room = self._capacity - len(items)
        if count <= room:
            items.extend(islice(batch, start, None))
            end = len(batch)
        elif self._overflow == "block":
            if room <= 0:
                return start
            end = start + room
            items.extend(islice(batch, start, end))
        else:
            self._dropped += count - room  # the deque's maxlen discards the oldest
            items.extend(islice(batch, start, None))
            end = len(batch)
        if self._getters:
            self._wake_getters()
        return end

    async def _wait_for_room(self) -> None:
        """Waits until a full ``block`` channel has room (a consumer took something)."""
        while len(self._items) >= self._capacity and not self._closed:
            room = asyncio.get_running_loop().create_future()
            self._room = room
            await room

    def _close(self) -> None:
        self._closed = True
        self._wake_getters()
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)

    def _wake_getters(self) -> None:
        getters = self._getters
        if getters is not None:
            self._getters = None
            self._waker.wake_all(getters)  # nothing for a cancelled one
