"""The hub's watchers: bus events fanned out to WebSocket connections, I/O only.

A watcher (``/v1/watch?subject=PATTERN...``) gets every bus event matching one of its
patterns, once, in publish order, one text frame of the event's JSON each.

- **One subscription per pattern**, shared by every watcher of it (:class:`_Fanout`): the
  bus matches and calls once per pattern however many watchers follow it.
- **Writes are batched**: a watcher's events of one event-loop turn go out in one write,
  and while events keep arriving turn after turn the write waits up to
  :data:`MAX_FLUSH_DEFERRALS` turns; an event's frame is made once and the same bytes
  written to every watcher (server frames are unmasked).
- **A watcher never slows the hub**: once more than ``buffer`` bytes wait unsent for one,
  further events for it are dropped (drop_newest: the bytes already queued cannot be
  taken back) and counted in ``watcher_dropped``.
- **In a fleet, each coordination event once**: with ``seen`` set, the coordination
  events another hub replays (:meth:`Watchers.replay`, after this hub's NATS bus
  reconnected) and those arriving live pass one :class:`SeenWindow`; the second copy of
  an event is dropped, counted in ``watcher_duplicates``.
- **A stalled watcher is closed** (1008, counted in ``watchers_closed_slow``): one that
  has stayed full (dropping) for longer than ``stall_after`` seconds, that took none of
  its unsent bytes over a whole check interval, or that did not answer the ping of the
  previous check. Watchers get these pings from here, not from the WebSocket library's
  keepalive: its ping waits for a full buffer to drain, so a watcher that stops reading
  would never be pinged and would hold its buffer for ever.
"""

from __future__ import annotations

import asyncio
import threading

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from turnout._core import subject_matches
from turnout.bus import Bus, Message
from turnout.coordination.fleet_replay import SeenWindow

__all__ = ["MAX_FLUSH_DEFERRALS", "Watchers"]

#: The most event-loop turns watcher writes wait for more events to go out together.
MAX_FLUSH_DEFERRALS = 8
_POLICY_VIOLATION = 1008
_COORDINATION_PREFIX = "events.coordination."


class Watchers:
    """Every watcher of one hub, on the hub's event loop."""

    def __init__(self, bus: Bus, buffer: int, stall_after: float | None) -> None:
        self.bus = bus
        self.buffer = buffer
        self.stall_after = stall_after
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread = 0
        self._watchers: set[_Watcher] = set()
        self._fanouts: dict[str, _Fanout] = {}
        self._dirty: list[_Watcher] = []
        self._flush_scheduled = False
        self._deliveries = 0  # events handed to watchers, to see whether more are coming
        self._deliveries_seen = 0
        self._deferrals = 0
        self._checker: asyncio.TimerHandle | None = None
        #: The coordination events given to the watchers lately (None: no replays).
        self.seen: SeenWindow | None = None
        self.counts = dict.fromkeys(
            (
                "watchers_served",
                "watcher_delivered",
                "watcher_dropped",
                "watcher_discarded",
                "watcher_ignored",
                "watchers_closed_slow",
                "watcher_replayed",
                "watcher_duplicates",
            ),
            0,
        )

    def __len__(self) -> int:
        return len(self._watchers)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.loop_thread = threading.get_ident()
        if self.stall_after is not None:
            self._checker = loop.call_later(self.stall_after, self._check)

    def stop(self) -> None:
        """Flushes what waits and unsubscribes everything (the connections are closed by
        the caller, after this)."""
        if self._checker is not None:
            self._checker.cancel()
            self._checker = None
        self.flush_now()
        for fanout in self._fanouts.values():
            fanout.subscription.unsubscribe()
        self._fanouts.clear()

    def connections(self) -> list[ServerConnection]:
        return [watcher.connection for watcher in self._watchers]

    async def serve(self, connection: ServerConnection, patterns: list[str]) -> None:
        """Serves one watcher until its connection ends."""
        watcher = _Watcher(self, connection)
        if self.stall_after is not None and connection.keepalive_task is not None:
            connection.keepalive_task.cancel()  # the check pings instead (module docstring)
        self._watchers.add(watcher)
        self.counts["watchers_served"] += 1
        try:
            for pattern in patterns:
                fanout = self._fanouts.get(pattern)
                if fanout is None:
                    fanout = self._fanouts[pattern] = _Fanout(self, pattern)
                fanout.watchers.append(watcher)
            async for _ in connection:
                self.counts["watcher_ignored"] += 1
        finally:
            watcher.forget()
            self._watchers.discard(watcher)
            for pattern in patterns:
                fanout = self._fanouts.get(pattern)
                if fanout is None:  # the hub stopped
                    continue
                fanout.watchers.remove(watcher)
                if not fanout.watchers:
                    fanout.subscription.unsubscribe()
                    del self._fanouts[pattern]

    def replay(self, subject: str, data: bytes) -> bool:
        """Hands the watchers a coordination event replayed by another hub, unless they
        had it already (False). On the hub's loop."""
        message = Message(subject, data)
        seen = self.seen
        if seen is not None and not seen.admit(data, message):
            self.counts["watcher_duplicates"] += 1
            return False
        self.counts["watcher_replayed"] += 1
        for fanout in self._fanouts.values():
            if subject_matches(subject, fanout.pattern):
                fanout.hand_out(message)
        return True

    def schedule_flush(self, watcher: _Watcher) -> None:
        self._dirty.append(watcher)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._deferrals = 0
            # Whatever scheduled this turn may well go on producing on its next step,
            # which runs after this callback: the first look always waits a turn.
            self._deliveries_seen = -1
            assert self.loop is not None
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        if not self._flush_scheduled:
            return  # flush_now ran meanwhile
        assert self.loop is not None
        if self._deliveries != self._deliveries_seen and self._deferrals < MAX_FLUSH_DEFERRALS:
            # Events keep coming, turn after turn: wait one more turn, so that they go out
            # in one write per watcher rather than one write per event.
            self._deferrals += 1
            self._deliveries_seen = self._deliveries
            self.loop.call_soon(self._flush)
            return
        self.flush_now()

    def flush_now(self) -> None:
        """Writes what waits for every watcher now."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        # Each event's frame, and each run of events' frames, is made once per turn and
        # shared by the watchers that get it.
        frames: dict[object, bytes] = {}
        for watcher in dirty:
            watcher.flush(frames)

    def _check(self) -> None:
        assert self.loop is not None and self.stall_after is not None
        now = self.loop.time()
        for watcher in list(self._watchers):
            reason = watcher.stalled(now, self.stall_after)
            if reason is not None:
                self.counts["watchers_closed_slow"] += 1
                watcher.close(reason)
        self._checker = self.loop.call_later(self.stall_after, self._check)


class _Fanout:
    """The watchers following one pattern, behind one bus subscription."""

    __slots__ = ("_watchers", "pattern", "subscription", "watchers")

    def __init__(self, watchers: Watchers, pattern: str) -> None:
        self._watchers = watchers
        self.pattern = pattern
        self.watchers: list[_Watcher] = []
        self.subscription = watchers.bus.subscribe(pattern, self.offer, raw=True)

    def offer(self, message: Message) -> None:
        """The bus handler, called on the publishing thread."""
        owner = self._watchers
        if threading.get_ident() == owner.loop_thread:
            self.deliver(message)
        elif owner.loop is not None:
            try:
                owner.loop.call_soon_threadsafe(self.deliver, message)
            except RuntimeError:  # the loop is closed: the hub is gone
                owner.counts["watcher_discarded"] += len(self.watchers)

    def deliver(self, message: Message) -> None:
        seen = self._watchers.seen
        if (
            seen is not None
            and message.subject.startswith(_COORDINATION_PREFIX)
            and not seen.admit(message.data, message)
        ):
            self._watchers.counts["watcher_duplicates"] += 1  # a replay brought it first
            return
        self.hand_out(message)

    def hand_out(self, message: Message) -> None:
        self._watchers._deliveries += 1
        for watcher in self.watchers:
            watcher.take(message)


class _Watcher:
    """One watcher connection: takes events on the hub's loop and writes them once per
    event-loop turn."""

    __slots__ = (
        "_dirty",
        "_full_since",
        "_last",
        "_owner",
        "_pending",
        "_pending_bytes",
        "_ping",
        "_unsent_at_check",
        "_written",
        "connection",
    )

    def __init__(self, owner: Watchers, connection: ServerConnection) -> None:
        self._owner = owner
        self.connection = connection
        self._pending: list[Message] = []
        self._pending_bytes = 0
        self._dirty = False
        self._last: Message | None = None
        self._full_since: float | None = None  # when it first dropped, since its last write
        self._written = 0  # bytes written since the last check
        self._unsent_at_check = 0
        self._ping: asyncio.Future[object] | None = None  # the last check's ping

    def take(self, message: Message) -> None:
        # One bus event reaches a watcher once per pattern of its that matches; the bus
        # hands every subscription the same Message object, and one after the other.
        if message is self._last:
            return
        self._last = message
        size = len(message.data)
        if self._pending_bytes + size > self._owner.buffer and self._pending:
            self._dropped(1)
            return
        self._pending.append(message)
        self._pending_bytes += size
        if not self._dirty:
            self._dirty = True
            self._owner.schedule_flush(self)

    def _dropped(self, count: int) -> None:
        self._owner.counts["watcher_dropped"] += count
        if self._full_since is None:
            loop = self._owner.loop
            self._full_since = 0.0 if loop is None else loop.time()

    def flush(self, frames: dict[object, bytes]) -> None:
        messages, waiting = self._pending, self._pending_bytes
        self._pending = []
        self._pending_bytes = 0
        self._dirty = False
        counts = self._owner.counts
        connection = self.connection
        if connection.protocol.state is not State.OPEN:
            counts["watcher_discarded"] += len(messages)
            return
        if not messages:
            return
        transport = connection.transport
        unsent = transport.get_write_buffer_size()
        if unsent and unsent + waiting > self._owner.buffer:
            self._dropped(len(messages))
            return
        self._full_since = None
        if connection.protocol.extensions:
            # A negotiated extension (compression) encodes frames per connection.
            for message in messages:
                broadcast((connection,), message.data, text=True)
            self._written += waiting
        else:
            data = _frames_of(messages, frames)
            transport.write(data)
            self._written += len(data)
        counts["watcher_delivered"] += len(messages)

    def stalled(self, now: float, stall_after: float) -> str | None:
        """Why to close this watcher now (None: it is keeping up). Called once per check
        interval."""
        transport = self.connection.transport
        if transport is None or transport.is_closing():
            return None
        unsent = transport.get_write_buffer_size()
        taken = self._unsent_at_check + self._written - unsent
        before, self._unsent_at_check, self._written = self._unsent_at_check, unsent, 0
        if self._full_since is not None and now - self._full_since >= stall_after:
            return f"watcher too slow: its buffer stayed full for {stall_after:g} s"
        if before and unsent and taken <= 0:
            return f"watcher stalled: it read nothing for {stall_after:g} s"
        if self._ping is not None and not self._ping.done():
            return f"watcher did not answer a ping within {stall_after:g} s"
        self._ping = asyncio.ensure_future(self._send_ping())
        return None

    async def _send_ping(self) -> object:
        try:
            waiter = await self.connection.ping()
            return await waiter
        except ConnectionClosed:
            return None  # its handler sees the close

    def forget(self) -> None:
        if self._ping is not None:
            self._ping.cancel()

    def close(self, reason: str) -> None:
        connection = self.connection
        if self._ping is not None:
            self._ping.cancel()
        transport = connection.transport
        connection.protocol.fail(_POLICY_VIOLATION, reason)
        if transport.get_write_buffer_size():
            # A close frame would wait behind the full buffer: the socket is cut (the
            # protocol has recorded the close code).
            transport.abort()
            return
        for data in connection.protocol.data_to_send():
            if data:
                transport.write(data)
        transport.close()


def _frames_of(messages: list[Message], made: dict[object, bytes]) -> bytes:
    """The text frames of ``messages``, back to back. Server frames are unmasked: with no
    extension, an event's frame is the same bytes for every watcher."""
    key: object = id(messages[0]) if len(messages) == 1 else tuple(map(id, messages))
    data = made.get(key)
    if data is None:
        parts = []
        for message in messages:
            frame = made.get(id(message))
            if frame is None:
                frame = made[id(message)] = Frame(Opcode.TEXT, message.data).serialize(mask=False)
            parts.append(frame)
        data = made[key] = b"".join(parts)
    return data
