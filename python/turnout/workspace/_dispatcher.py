"""Fan-out of workspace build updates from one source to one channel per workspace (coder's
autostart ``WorkspaceDispatcher``), with a raw-bytes fast path routed in Rust.

Two ways in, routing identically:

- the object path: ``WorkspaceBuildUpdate`` objects (``put``, or ``run``/``start`` on an async
  iterable of them), routed by ``update.workspace_name``;
- the raw path: batches of JSON messages as ``bytes`` (``put_raw``, or ``run_raw``/
  ``start_raw`` on an async iterable of batches). ``turnout._core.KeyRouter`` reads only the
  ``workspace_name`` field of each message, without building Python objects and with the
  GIL released (other threads run meanwhile; the event loop waits, so a batch of some
  thousands of messages, under half a millisecond per thousand, keeps it responsive),
  and each channel then takes its share of the batch in one operation, as the very bytes
  objects: nothing is made per message. A consumer's read decodes its batch (see
  ``WorkspaceChannel``).

An update for a name that has no channel is counted in ``unknown``; an item that is not an
update (object path) or a message that is not a JSON object with a string
``workspace_name`` (raw path) is counted in ``malformed``. Nothing is dropped silently.

When the source ends (normally, with an error, or cancelled) every channel is closed, so
consumers always finish. A ``block`` channel that is full makes the dispatcher wait for a
consumer to take something: as in coder, one full channel stalls them all (``stalls``
counts the waits). ``drop_oldest`` channels never stall; they count what they drop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from types import MappingProxyType

from turnout._core import KeyRouter as RustKeyRouter
from turnout._core import RoundWaker
from turnout.workspace._build_update import BUILD_UPDATE_DECODER, WorkspaceBuildUpdate
from turnout.workspace._channel import ChannelOverflow, WorkspaceChannel

__all__ = ["WorkspaceDispatcher"]


class WorkspaceDispatcher:
    """Routes build updates to ``channels[name]`` (see the module docstring).

    ``buffer`` is each channel's capacity (coder uses 16: about nine updates per workspace
    in an autostart test, with headroom). ``overflow`` is the policy of every channel,
    ``channel_overflow`` overrides it for some names. Duplicate names share one channel.
    Used on one event loop; one source feeds it at a time.
    """

    def __init__(
        self,
        names: Iterable[str],
        buffer: int = 16,
        overflow: ChannelOverflow = "block",
        *,
        channel_overflow: Mapping[str, ChannelOverflow] | None = None,
    ) -> None:
        # One waker for all: the readers a batch wakes run in one loop callback.
        waker = RoundWaker()
        channels: dict[str, WorkspaceChannel] = {}
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"workspace names must be str, not {type(name).__name__}")
            if name not in channels:
                channels[name] = WorkspaceChannel(name, buffer, overflow, waker=waker)
        for name, policy in (channel_overflow or {}).items():
            if name not in channels:
                raise ValueError(f"channel_overflow names an unknown workspace: {name!r}")
            channels[name] = WorkspaceChannel(name, buffer, policy, waker=waker)
        self._channels = channels
        self._waker = waker
        self._view: Mapping[str, WorkspaceChannel] = MappingProxyType(channels)
        self._router = RustKeyRouter(channels)
        self._routed = 0
        self._unknown = 0
        self._malformed = 0
        self._stalls = 0
        self._feeding = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    @property
    def channels(self) -> Mapping[str, WorkspaceChannel]:
        """Workspace name -> its channel (read-only)."""
        return self._view

    @property
    def closed(self) -> bool:
        """The channels are closed: the source ended or ``close()`` was called."""
        return self._closed

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The task made by ``start``/``start_raw``, if any."""
        return self._task

    def stats(self) -> dict[str, int]:
        """Counters: ``routed`` (buffered into a channel), ``unknown``, ``malformed``,
        ``stalls`` (waits for a full ``block`` channel), and over all channels ``dropped``,
        ``undecodable`` and ``buffered``; ``channels`` is how many there are."""
        channels = self._channels.values()
        return {
            "channels": len(self._channels),
            "routed": self._routed,
            "unknown": self._unknown,
            "malformed": self._malformed,
            "stalls": self._stalls,
            "dropped": sum(channel.dropped for channel in channels),
            "undecodable": sum(channel.undecodable for channel in channels),
            "buffered": sum(len(channel) for channel in channels),
        }

    # --- feeding -------------------------------------------------------------------------

    async def put(self, update: WorkspaceBuildUpdate) -> None:
        """Routes one update, waiting if its channel is a full ``block`` channel."""
        self._check_open()
        channel = self._channel_for(update)
        if channel is None:
            return
        if channel._offer_many((update,)):
            self._routed += 1
        else:
            await self._offer_rest(channel, (update,), 0)

    async def put_raw(self, batch: Iterable[bytes]) -> None:
        """Routes a batch of JSON messages (``bytes``; ``TypeError`` for anything else, before
        any is routed), waiting whenever a ``block`` channel is full."""
        self._check_open()
        grouped, unknown, malformed = self._router.route_updates(batch, BUILD_UPDATE_DECODER)
        self._unknown += len(unknown)
        self._malformed += len(malformed)
        channels = self._channels
        wake_all = self._waker.wake_all
        routed = 0
        for name, messages in grouped.items():
            channel = channels[name]
            # The common case of _offer_many inlined: with a thousand channels and a few
            # messages each per batch, a call per channel costs more than its messages.
            items = channel._items
            if len(items) + len(messages) <= channel._capacity:
                items.extend(messages)
                getters = channel._getters
                if getters is not None:
                    channel._getters = None
                    wake_all(getters)
                routed += len(messages)
                continue
            end = channel._offer_many(messages)
            if end < len(messages):
                self._routed += routed + end
                routed = 0
                await self._offer_rest(channel, messages, end)
            else:
                routed += end
        self._routed += routed

    def close(self) -> None:
        """Closes every channel: consumers finish once they have read what is buffered.
        Idempotent; feeding a closed dispatcher raises ``RuntimeError``."""
        self._closed = True
        for channel in self._channels.values():
            channel._close()

    async def run(self, source: AsyncIterable[WorkspaceBuildUpdate]) -> None:
        """Routes every update of ``source``, then closes the channels (also when the
        source raises or this is cancelled)."""
        self._claim_source()
        await self._route_updates(source)

    async def run_raw(self, source: AsyncIterable[Iterable[bytes]]) -> None:
        """Routes every batch of ``source`` through the raw path, then closes the channels
        (also when the source raises or this is cancelled)."""
        self._claim_source()
        await self._route_batches(source)

    async def start(self, source: AsyncIterable[WorkspaceBuildUpdate]) -> asyncio.Task[None]:
        """Starts routing ``source`` in a task and returns it at once (coder's ``Start``);
        await the task to wait for the end of the source."""
        self._claim_source()
        self._task = asyncio.get_running_loop().create_task(self._route_updates(source))
        return self._task

    async def start_raw(self, source: AsyncIterable[Iterable[bytes]]) -> asyncio.Task[None]:
        """``start`` for a source of raw batches."""
        self._claim_source()
        self._task = asyncio.get_running_loop().create_task(self._route_batches(source))
        return self._task

    def _claim_source(self) -> None:
        self._check_open()
        if self._feeding:
            raise RuntimeError("the dispatcher already has a source")
        self._feeding = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the dispatcher is closed")

    async def _route_updates(self, source: AsyncIterable[WorkspaceBuildUpdate]) -> None:
        try:
            async for update in source:
                # put() inlined: the object path costs a coroutine call less per update.
                channel = self._channel_for(update)
                if channel is None:
                    continue
                if channel._offer_many((update,)):
                    self._routed += 1
                else:
                    await self._offer_rest(channel, (update,), 0)
        finally:
            self.close()

    async def _route_batches(self, source: AsyncIterable[Iterable[bytes]]) -> None:
        try:
            async for batch in source:
                await self.put_raw(batch)
        finally:
            self.close()

    def _channel_for(self, update: WorkspaceBuildUpdate) -> WorkspaceChannel | None:
        """The channel of ``update``; None (counted) for a non-update or an unknown name."""
        if not isinstance(update, WorkspaceBuildUpdate) or not isinstance(
            update.workspace_name, str
        ):
            self._malformed += 1
            return None
        channel = self._channels.get(update.workspace_name)
        if channel is None:
            self._unknown += 1
        return channel

    async def _offer_rest(
        self,
        channel: WorkspaceChannel,
        messages: Sequence[WorkspaceBuildUpdate | bytes],
        end: int,
    ) -> None:
        """Buffers ``messages[end:]`` into a full ``block`` channel as room appears;
        ``RuntimeError`` if the dispatcher is closed meanwhile (nothing more is buffered)."""
        while end < len(messages):
            self._stalls += 1
            await channel._wait_for_room()
            self._check_open()
            taken = channel._offer_many(messages, end)
            self._routed += taken - end
            end = taken
