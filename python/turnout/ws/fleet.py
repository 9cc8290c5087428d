"""A hub's link to the fleet on NATS, I/O only: publishes the snapshots
:class:`turnout.coordination.fleet.FleetProtocol` writes, hands it the other hubs', and
carries routed commands as NATS request/reply. What the documents mean, how views merge
and when a hub expires is the protocol's.

One nats-py connection per hub, on the hub's event loop, beside the bus's own: it
connects to the first server of the list that answers, in the order given (so hubs can
be spread over a cluster by listing a different server first for each), reconnects to
the others for ever (every ``reconnect_time_wait`` seconds), and its subscriptions
resume there. Needs the ``nats`` extra.

- ``turnout.fleet.state.<hub>``: snapshots, every ``heartbeat_interval`` seconds and
  soon (:data:`CHANGE_DELAY`) after a change; ``turnout.fleet.hello``: a hub that starts
  asks the others for theirs at once.
- ``turnout.fleet.command.<hub>``: commands for the services this hub holds; each is
  sent to its service in the loop turn that read it, and its reply written as its
  request settles (no task between them). The commands this hub routes
  to others are answered on one subscription of its own, ``<inbox>.<n>``, made once at
  start: a routed command costs one publish, one reply and one timer, nothing to set up.
- ``turnout.fleet.replay.<hub>`` and ``turnout.fleet.resync``: the coordination events
  of the hubs' rings, replayed after a hub's NATS bus reconnected
  (:mod:`turnout.coordination.fleet_replay`). The bus's state is looked at every
  heartbeat; a reconnect seen there starts a replay covering the time since the bus was
  last seen steady, plus :data:`~turnout.coordination.fleet_replay.REPLAY_MARGIN`.
  A request that fails is made again every heartbeat while its hub is listed, for up
  to :data:`~turnout.coordination.fleet_replay.REPLAY_MAX_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import sys
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from typing import Any

import nats
import nats.errors
from nats.aio.msg import Msg
from nats.protocol.command import pub_cmd

from turnout.coordination.fleet import FleetCommand, FleetProtocol, FleetReply, command_subject
from turnout.coordination.fleet_replay import (
    REPLAY_MARGIN,
    REPLAY_MAX_SECONDS,
    RESYNC_SUBJECT,
    EventRing,
    parse_replay_reply,
    parse_replay_request,
    replay_reply,
    replay_request,
    replay_subject,
)
from turnout.transport.nats._client import OrderedClient

__all__ = ["CHANGE_DELAY", "HELLO_SUBJECT", "FleetLink"]

#: The status NATS answers a request with when nothing subscribes to its subject.
_NO_RESPONDERS = "503"

logger = logging.getLogger("turnout.ws.hub")

#: Seconds a snapshot waits after a change, for the changes of the same moment to join it.
CHANGE_DELAY = 0.02
HELLO_SUBJECT = "turnout.fleet.hello"

Snapshot = Callable[[], tuple[list[dict[str, Any]], list[dict[str, Any]]]]
#: Runs a routed command; calls the function given with its reply, once.
Runner = Callable[[FleetCommand, Callable[[FleetReply], None]], Awaitable[None]]
#: The hub's bus: whether it is connected to NATS, and how many times it reconnected.
BusState = Callable[[], tuple[bool, int]]
#: Hands the watchers a replayed event; False when they had it already.
Deliver = Callable[[str, bytes], bool]
#: Seconds a replay request waits for its answer.
REPLAY_TIMEOUT = 5.0


class FleetLink:
    """The fleet's I/O for one hub. ``state()`` gives this hub's service and workflow
    documents; ``run(command)`` runs a routed command here and returns the reply. With
    ``bus_state`` and ``deliver`` (a hub whose bus is NATS), the coordination events the
    hub publishes are :meth:`record`-ed and replayed to the others, and its watchers get
    the others' replays through ``deliver``."""

    def __init__(
        self,
        protocol: FleetProtocol,
        servers: Sequence[str],
        state: Snapshot,
        run: Runner,
        *,
        reconnect_time_wait: float = 0.5,
        connect_timeout: float = 5.0,
        bus_state: BusState | None = None,
        deliver: Deliver | None = None,
    ) -> None:
        self.protocol = protocol
        self.servers = list(servers)
        self._state = state
        self._run = run
        self._reconnect_time_wait = reconnect_time_wait
        self._connect_timeout = connect_timeout
        self._nc: _DirectClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        self._soon: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        # Routed commands waiting for their reply, by the last token of the reply
        # subject, with when they give up; one timer for them all, at the earliest.
        self._replies: dict[str, asyncio.Future[Msg | None]] = {}
        self._deadlines: dict[str, float] = {}
        self._expiry: asyncio.TimerHandle | None = None
        self._expiry_at = 0.0
        self._reply_prefix = ""
        self._reply_numbers = itertools.count()
        self._bus_state = bus_state
        self._deliver = deliver
        self.ring = EventRing()
        self._bus_reconnects = 0
        self._bus_steady_at = 0.0  # when the bus was last seen connected, no new reconnect
        # The other hubs' events still to fetch: hub -> the start of the stretch, on
        # this hub's clock; and the fetches under way.
        self._owed: dict[str, float] = {}
        self._fetching: set[str] = set()
        self._resync_since: float | None = None  # a resync not yet published
        self._pushes = ""  # where the others push their events when this hub resyncs
        self.counts = dict.fromkeys(
            (
                "commands_routed",
                "commands_served",
                "commands_malformed",
                "command_reply_errors",
                "publish_errors",
                "nats_disconnects",
                "nats_reconnects",
                "replays",
                "replays_fetched",
                "replays_served",
                "replay_requests_malformed",
                "replay_reply_errors",
                "replay_errors",
                "replay_truncated",
                "replay_events_received",
                "replay_events_delivered",
                "replay_events_duplicate",
            ),
            0,
        )

    @property
    def replays(self) -> bool:
        """Whether this hub replays coordination events (its bus is NATS)."""
        return self._bus_state is not None and self._deliver is not None

    def record(self, subject: str, data: bytes) -> None:
        """A coordination event this hub published, for the others to replay."""
        if self._loop is not None:
            self.ring.record(self._loop.time(), subject, data)

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def start(self) -> None:
        """Connects, subscribes, publishes this hub's first snapshot and asks the others
        for theirs. Raises what nats-py raises when no server answers."""
        self._loop = asyncio.get_running_loop()

        async def disconnected() -> None:
            self.counts["nats_disconnects"] += 1
            if self._stopping:
                return
            logger.warning("fleet: NATS disconnected hub=%s", self.protocol.hub_id)

        async def reconnected() -> None:
            self.counts["nats_reconnects"] += 1
            logger.info("fleet: NATS reconnected hub=%s", self.protocol.hub_id)
            self.changed()

        async def error(exc: Exception) -> None:
            logger.warning("fleet: NATS error hub=%s: %s", self.protocol.hub_id, exc)

        options: dict[str, Any] = {  # nats-py's hints say int where it takes seconds
            "reconnect_time_wait": self._reconnect_time_wait,
            "connect_timeout": self._connect_timeout,
        }
        self._nc = _DirectClient()
        await self._nc.connect(
            servers=self.servers,
            name=f"turnout-hub-{self.protocol.hub_id}",
            max_reconnect_attempts=-1,
            dont_randomize=True,  # the first server listed first (the module docstring)
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
            **options,
        )
        nc = self._nc
        await nc.subscribe("turnout.fleet.state.*", cb=self._on_state)
        await nc.subscribe(HELLO_SUBJECT, cb=self._on_hello)
        commands = await nc.subscribe(self.protocol.command_subject, cb=self._on_command)
        nc.direct[commands._id] = self._take_command
        self._reply_prefix = nc.new_inbox() + "."
        replies = await nc.subscribe(self._reply_prefix + "*", cb=self._on_reply)
        nc.direct[replies._id] = self._take_reply
        if self.replays:
            assert self._bus_state is not None
            await nc.subscribe(replay_subject(self.protocol.hub_id), cb=self._on_replay_request)
            await nc.subscribe(RESYNC_SUBJECT, cb=self._on_resync)
            self._pushes = nc.new_inbox()
            await nc.subscribe(self._pushes, cb=self._on_push)
            self._bus_reconnects = self._bus_state()[1]
            self._bus_steady_at = self._loop.time()
        await self._publish_snapshot()
        await nc.publish(HELLO_SUBJECT, self.protocol.hub_id.encode())
        await nc.flush()
        self._arm_heartbeat()

    async def stop(self) -> None:
        """Tells the fleet this hub leaves, then closes the connection."""
        if self._nc is None or self._stopping:
            return
        self._stopping = True
        for timer in (self._heartbeat, self._soon, self._expiry):
            if timer is not None:
                timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for waiting in self._replies.values():
            if not waiting.done():
                waiting.set_result(None)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        nc = self._nc
        with contextlib.suppress(Exception):
            for frame in self.protocol.snapshot((), (), leaving=True):
                await nc.publish(self.protocol.state_subject, frame)
            await nc.flush(timeout=2)
        with contextlib.suppress(Exception):
            await nc.close()

    def changed(self) -> None:
        """This hub's state changed: a snapshot goes out within :data:`CHANGE_DELAY`."""
        if self._soon is None and self._loop is not None and not self._stopping:
            self._soon = self._loop.call_later(CHANGE_DELAY, self._spawn_snapshot)

    def _spawn_snapshot(self) -> None:
        self._soon = None
        self._spawn(self._publish_snapshot())

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _arm_heartbeat(self) -> None:
        assert self._loop is not None
        self._heartbeat = self._loop.call_later(self.protocol.heartbeat_interval, self._beat)

    def _beat(self) -> None:
        self.protocol.expire()
        self._spawn(self._publish_snapshot())
        self._check_bus()
        self._arm_heartbeat()

    def _check_bus(self) -> None:
        """When the bus reconnected since the last look, owes this hub a replay from
        every other hub, and them a resync; then starts what is owed."""
        if self._bus_state is None or self._loop is None:
            return
        connected, reconnects = self._bus_state()
        if not connected:
            return  # the outage goes on: it started after _bus_steady_at
        now = self._loop.time()
        if reconnects != self._bus_reconnects:
            self._bus_reconnects = reconnects
            since = self._bus_steady_at - REPLAY_MARGIN
            self.counts["replays"] += 1
            logger.info(
                "fleet: NATS bus reconnected, replaying the last %.1f s hub=%s",
                now - since,
                self.protocol.hub_id,
            )
            self._resync_since = min(since, self._resync_since or since)
            for peer in self.protocol.peers():
                self._owe(peer.hub_id, since)
        self._bus_steady_at = now
        self._settle(now)

    def _owe(self, hub_id: str, since: float) -> None:
        self._owed[hub_id] = min(since, self._owed.get(hub_id, since))

    def _settle(self, now: float) -> None:
        """Publishes a pending resync and starts the fetches owed (each hub's one at a
        time). What is owed for longer than the replays cover is given up."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return  # the next heartbeat tries again
        if self._resync_since is not None:
            since, self._resync_since = self._resync_since, None
            self._spawn(self._resync(since, now))
        for hub_id, since in list(self._owed.items()):
            if now - since > REPLAY_MAX_SECONDS + REPLAY_MARGIN:
                del self._owed[hub_id]
                self.counts["replay_truncated"] += 1
                logger.warning("fleet: gave up the replay from hub %s", hub_id)
            elif hub_id not in self._fetching:
                self._fetching.add(hub_id)
                self._spawn(self._fetch_owed(hub_id, since))

    async def _resync(self, since: float, now: float) -> None:
        """Tells the other hubs that this one's bus reconnected (the stretch since
        ``since``): each pushes its events of it here and fetches this hub's."""
        nc = self._nc
        assert nc is not None
        request = replay_request(self.protocol.hub_id, now - since)
        try:
            await nc.publish(RESYNC_SUBJECT, request, reply=self._pushes)
        except nats.errors.Error as exc:
            self.counts["replay_errors"] += 1
            logger.warning("fleet: cannot publish the resync: %s", exc)
            self._resync_since = min(since, self._resync_since or since)

    async def _fetch_owed(self, hub_id: str, since: float) -> None:
        assert self._loop is not None
        try:
            done = await self._fetch(hub_id, self._loop.time() - since)
        finally:
            self._fetching.discard(hub_id)
        if done and self._owed.get(hub_id) == since:
            del self._owed[hub_id]

    async def _fetch(self, hub_id: str, seconds: float) -> bool:
        """Gives the watchers ``hub_id``'s events of the last ``seconds`` that they miss.
        True when done (or the hub is gone), False to try again."""
        nc = self._nc
        assert nc is not None
        try:
            answer = await nc.request(
                replay_subject(hub_id),
                replay_request(self.protocol.hub_id, seconds),
                timeout=REPLAY_TIMEOUT,
            )
            events, truncated = parse_replay_reply(answer.data)
        except nats.errors.NoRespondersError:
            # Gone, or on its way back to NATS: asked again while still listed.
            if all(peer.hub_id != hub_id for peer in self.protocol.peers()):
                return True
            self.counts["replay_errors"] += 1
            return False
        except (nats.errors.Error, asyncio.TimeoutError, ValueError) as exc:
            self.counts["replay_errors"] += 1
            logger.warning("fleet: no replay from hub %s: %s", hub_id, exc)
            return False
        self.counts["replays_fetched"] += 1
        self._take(hub_id, seconds, events, truncated)
        return True

    def _take(
        self, hub_id: str, seconds: float, events: list[tuple[str, bytes]], truncated: bool
    ) -> None:
        assert self._deliver is not None
        if truncated:
            self.counts["replay_truncated"] += 1
            logger.warning("fleet: hub %s replayed only part of %.1f s", hub_id, seconds)
        delivered = sum(1 for subject, data in events if self._deliver(subject, data))
        counts = self.counts
        counts["replay_events_received"] += len(events)
        counts["replay_events_delivered"] += delivered
        counts["replay_events_duplicate"] += len(events) - delivered
        logger.info(
            "fleet: hub %s replayed %d events, %d missed here", hub_id, len(events), delivered
        )

    async def _on_replay_request(self, msg: Msg) -> None:
        await self._answer_replay(msg, "replay request")

    async def _on_resync(self, msg: Msg) -> None:
        """Another hub's bus reconnected: it gets this hub's events of the stretch (a
        push, for it may not list this hub any more), and this hub owes itself that
        hub's (which it retries until done)."""
        asking = await self._answer_replay(msg, "resync")
        if asking is not None and self._loop is not None:
            hub_id, since = asking
            self._owe(hub_id, since)
            self._settle(self._loop.time())

    async def _answer_replay(self, msg: Msg, what: str) -> tuple[str, float] | None:
        """Answers a replay request or a resync (the same document) with this hub's
        events of the stretch asked for. Returns the asking hub and when its stretch
        started on this hub's clock; None when malformed or asked by this hub."""
        try:
            hub_id, seconds = parse_replay_request(msg.data)
        except ValueError as exc:
            self.counts["replay_requests_malformed"] += 1
            logger.warning("fleet: malformed %s: %s", what, exc)
            return None
        if hub_id == self.protocol.hub_id or self._loop is None:
            return None
        now = self._loop.time()
        if msg.reply:
            events, truncated = self.ring.since(now, seconds)
            try:
                await msg.respond(replay_reply(events, truncated))
            except (nats.errors.Error, OSError) as exc:  # closed, over max_payload, ...
                self.counts["replay_reply_errors"] += 1
                logger.warning("fleet: cannot answer the %s of hub %s: %r", what, hub_id, exc)
            else:
                self.counts["replays_served"] += 1
        return hub_id, now - seconds

    async def _on_push(self, msg: Msg) -> None:
        try:
            events, truncated = parse_replay_reply(msg.data)
        except ValueError as exc:
            self.counts["replay_errors"] += 1
            logger.warning("fleet: malformed replay pushed: %s", exc)
            return
        self.counts["replays_fetched"] += 1
        self._take("(pushed)", 0.0, events, truncated)

    async def _publish_snapshot(self) -> None:
        nc = self._nc
        if nc is None or self._stopping:
            return
        services, workflows = self._state()
        try:
            for frame in self.protocol.snapshot(services, workflows):
                await nc.publish(self.protocol.state_subject, frame)
        except Exception as exc:  # the client's buffer is full while disconnected, ...
            self.counts["publish_errors"] += 1
            logger.warning("fleet: cannot publish the snapshot: %s", exc)

    async def _on_state(self, msg: Msg) -> None:
        self.protocol.receive_snapshot(msg.data)

    async def _on_hello(self, msg: Msg) -> None:
        if msg.data.decode("utf-8", "replace") != self.protocol.hub_id:
            self.changed()

    async def _on_command(self, msg: Msg) -> None:
        self._take_command(msg)

    def _take_command(self, msg: Msg) -> None:
        # Started at once: the command's frame goes to the service in the loop turn
        # that read it, not on the next one.
        task = _start_now(self._serve_command(msg))
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve_command(self, msg: Msg) -> None:
        answer = functools.partial(self._answer, msg.reply)
        try:
            command = FleetCommand.parse(msg.data)
        except ValueError as exc:
            self.counts["commands_malformed"] += 1
            answer(FleetReply("error", error=f"malformed routed command: {exc}"))
            return
        self.counts["commands_served"] += 1
        await self._run(command, answer)

    def _answer(self, reply_subject: str, reply: FleetReply) -> None:
        """Writes a routed command's reply now (called as its request settles)."""
        nc = self._nc
        if not reply_subject or nc is None or self._stopping:
            return
        try:
            nc.publish_now(reply_subject, reply.to_json())
        except (nats.errors.Error, OSError) as exc:  # closed, over max_payload, ...
            self.counts["command_reply_errors"] += 1
            logger.warning("fleet: cannot answer a routed command: %r", exc)

    async def _on_reply(self, msg: Msg) -> None:
        self._take_reply(msg)

    def _take_reply(self, msg: Msg) -> None:
        waiting = self._replies.pop(msg.subject[len(self._reply_prefix) :], None)
        if waiting is not None and not waiting.done():
            waiting.set_result(msg)

    async def route(self, hub_id: str, command: bytes, wait: float) -> FleetReply:
        """Sends ``command`` (a :class:`FleetCommand`'s JSON) to ``hub_id`` and waits up
        to ``wait`` seconds for its reply: ``disconnected`` when no hub answers on its
        subject (it is gone), ``expired`` when the reply does not come in time."""
        nc, loop = self._nc, self._loop
        if nc is None or loop is None:
            raise RuntimeError("the fleet link is not started")
        self.counts["commands_routed"] += 1
        token = str(next(self._reply_numbers))
        waiting: asyncio.Future[Msg | None] = loop.create_future()
        self._replies[token] = waiting
        deadline = self._deadlines[token] = loop.time() + wait
        if self._expiry is None or deadline < self._expiry_at:
            self._arm_expiry(deadline)
        try:
            nc.publish_now(command_subject(hub_id), command, self._reply_prefix + token)
            answer = await waiting
        except nats.errors.Error as exc:  # the connection is closed
            return FleetReply("disconnected", error=f"cannot reach hub {hub_id}: {exc}", hub=hub_id)
        finally:
            self._replies.pop(token, None)
            self._deadlines.pop(token, None)
        if answer is None:
            return FleetReply("expired", error=f"no answer from hub {hub_id} in time", hub=hub_id)
        if answer.headers and answer.headers.get("Status") == _NO_RESPONDERS:
            return FleetReply(
                "disconnected", error=f"hub {hub_id} does not answer (gone)", hub=hub_id
            )
        try:
            return FleetReply.parse(answer.data)
        except ValueError as exc:
            return FleetReply("error", error=f"hub {hub_id} answered badly: {exc}", hub=hub_id)

    def _arm_expiry(self, deadline: float) -> None:
        assert self._loop is not None
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry_at = deadline
        self._expiry = self._loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        """Gives up the routed commands past their deadline; the timer then waits for
        the earliest left (commands routed one after another with the same timeout arm
        it once a timeout, not once a command)."""
        assert self._loop is not None
        self._expiry = None
        # call_at may fire within the clock's resolution before the deadline.
        now = max(self._loop.time(), self._expiry_at)
        for token, deadline in list(self._deadlines.items()):
            if deadline <= now:
                del self._deadlines[token]
                waiting = self._replies.get(token)
                if waiting is not None and not waiting.done():
                    waiting.set_result(None)
        if self._deadlines and not self._stopping:
            self._arm_expiry(min(self._deadlines.values()))


class _DirectClient(OrderedClient):
    """A nats-py client that hands each message of the subscriptions in ``direct`` (by
    subscription id) to its function as it is read, instead of queueing it for the
    subscription's task, and writes what it publishes at once, instead of on the flusher
    task's next turn (:meth:`publish_now` without awaiting at all): each saves a routed
    command an event-loop turn, each way. A message with headers (NATS's no-responders
    status) goes nats-py's own way, to the subscription's callback."""

    def __init__(self) -> None:
        super().__init__()
        self.direct: dict[int, Callable[[Msg], None]] = {}

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
    ) -> None:
        take = self.direct.get(sid)
        if take is None or headers:
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += len(data)
        take(Msg(self, subject=subject.decode(), reply=reply.decode(), data=data, _sid=sid))

    def publish_now(self, subject: str, payload: bytes, reply: str = "") -> None:
        """Publishes ``payload`` and writes it to the socket now, from code that cannot
        wait or need not (kept for the reconnect while disconnected, as nats-py does);
        raises what ``publish`` raises."""
        if self.is_closed:
            raise nats.errors.ConnectionClosedError
        if self.is_draining_pubs:
            raise nats.errors.ConnectionDrainingError
        if len(payload) > self._max_payload:
            raise nats.errors.MaxPayloadError
        command = pub_cmd(subject, reply, payload)
        if not self.is_connected and (
            self._max_pending_size <= 0
            or len(command) + self._pending_data_size > self._max_pending_size
        ):
            raise nats.errors.OutboundBufferLimitError
        self._pending.append(command)
        self._pending_data_size += len(command)
        self.stats["out_msgs"] += 1
        self.stats["out_bytes"] += len(payload)
        self.write_pending()

    async def _flush_pending(self, force_flush: bool = False) -> Any:
        self.write_pending()
        writer = getattr(self._transport, "_io_writer", None)  # a TCP connection's
        if (
            not self._pending
            and writer is not None
            and not writer.transport.get_write_buffer_size()
        ):
            return None  # all in the socket: the flusher has nothing to wait for
        # The flusher runs, with nothing left to write: it waits for the transport to
        # drain (backpressure), as for any publish.
        return await super()._flush_pending(force_flush)


def _start_now(coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Runs ``coroutine`` here up to its first wait, then as a task (an eager task, as
    Python 3.12 has them); None when it finished without waiting."""
    loop = asyncio.get_running_loop()
    if sys.version_info >= (3, 12):
        task = asyncio.Task(coroutine, loop=loop, eager_start=True)
        return None if task.done() else task
    try:
        waited = coroutine.send(None)
    except StopIteration:
        return None
    except Exception:  # as a task's would be, not raised into the caller (a read loop)
        logger.exception("fleet: a routed command failed")
        return None
    task = loop.create_task(_carry_on(coroutine, waited))
    # A task cancelled before its first step never hands the coroutine over: closed
    # then, it still runs its finally clauses (a no-op once it finished).
    task.add_done_callback(lambda _: coroutine.close())
    return task


async def _carry_on(coroutine: Coroutine[Any, Any, None], waited: Any) -> None:
    await _resume(coroutine, waited)


@types.coroutine
def _resume(coroutine: Coroutine[Any, Any, None], waited: Any) -> Generator[Any, Any, None]:
    """Hands the task what ``coroutine`` waits on, then what the task sends (or throws:
    a cancellation) to the coroutine, as ``await`` would have from the start."""
    while True:
        try:
            sent = yield waited
        except BaseException as exc:  # a cancellation: the coroutine's to handle
            try:
                waited = coroutine.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waited = coroutine.send(sent)
            except StopIteration:
                return
