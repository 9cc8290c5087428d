"""The event bus: jb-mesh's ``Bus`` in process, routed by one Rust ``SubjectIndex``.

An event's way: ``emit`` stamps a copy of the event (timestamp now, node filled), takes its
subject ``"events." + type`` (validated once per type), and publishes it. Publishing
appends it to the history store and hands it to the transport (if anything leaves this
bus), then looks up the subject's route: the index's match (its values are this bus's
subscriptions), cached per subject until the subscriptions change. Sync handlers are
called right there; async handlers and streams get it through their bounded mailbox
(``turnout._mailbox``); each queue group gets it once, its members taking turns. JSON is
written at most once per event, and only when something needs bytes: a history file, a
raw subscriber, a transport that sends bytes.

Ordering and threads. Publishing is serialised by one dispatch lock, which defines the
publish order: every subscription, and the history, see events in that order. A thread
that finds the lock taken waits for it, except when waiting could deadlock; then it leaves
its event in the queue that the thread holding the lock drains before letting go:

- a publish from inside a handler on the dispatching thread is delivered right after the
  event being delivered (never nested inside it, which would reorder events);
- a thread running an event loop never waits (the event loop may be what the dispatching
  thread is waiting for, to make room in a stream).

Backpressure. ``emit``/``publish`` on a thread without an event loop wait for room in a
full ``"block"`` mailbox. On an event-loop thread they cannot wait (the consumer may be a
task of that loop): the mailbox takes the event beyond its ``maxsize`` and counts it as
``overfilled`` (in ``stats()`` and on the stream or subscription). ``await aemit(...)``
gives real backpressure there: it waits until every matched ``"block"`` mailbox has room.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, cast, overload

from turnout._core import (
    BusCore,
    DispatchLock,
    Route,
    SubjectIndex,
    is_valid_literal,
    validate_subject,
)
from turnout.bus._handles import Message, Stream, Subscription
from turnout.bus._mailbox import Mailbox, Overflow, Wakeups
from turnout.events import SUBJECT_PREFIX, Event, EventDecodeError, EventEncodeError
from turnout.history import History, MemoryHistory
from turnout.transport import Transport
from turnout.transport.local import LocalTransport

__all__ = ["Bus", "BusClosedError", "Message", "Stream", "Subscription"]

logger = logging.getLogger("turnout.bus")

DEFAULT_MAXSIZE = 1024
_running_loop = asyncio._get_running_loop
# Caches of validated subjects; cleared when full so hostile inputs cannot grow them.
_SUBJECT_CACHE_LIMIT = 4096
# How often close() rechecks that a worker's event loop is still running.
_WORKER_CHECK_SECONDS = 0.05

# Where a message being dispatched comes from.
_EMITTED = 0  # emit/aemit on this bus: an event, recorded in the history
_PUBLISHED = 1  # publish on this bus: raw bytes, recorded if its subject is an event's
_RECEIVED = 2  # arrived through the transport from another process


class BusClosedError(RuntimeError):
    """The bus was closed: it accepts no more events or subscriptions."""


class _Payload:
    """One dispatched message's other form, made on first need: the event decoded from
    the bytes, or the bytes (and :class:`Message`) encoded from the event."""

    __slots__ = ("_bus", "_decoded", "_encoded", "data", "event", "message", "subject")

    def __init__(self, bus: Bus, subject: str, event: Event | None, data: bytes | None):
        self._bus = bus
        self.subject = subject
        self.event = event
        self.data = data
        self.message: Message | None = None
        self._decoded = event is not None
        self._encoded = data is not None

    def as_event(self) -> Event | None:
        """The event, or None (counted once) if the bytes are not one."""
        if not self._decoded:
            self._decoded = True
            assert self.data is not None
            try:
                self.event = Event.from_json(self.data)
            except EventDecodeError as exc:
                self._bus._undecodable += 1
                logger.debug("undecodable message on %s: %s", self.subject, exc)
        return self.event

    def as_message(self) -> Message | None:
        """The raw message, or None (counted once) if the event cannot be encoded."""
        if self.message is None:
            if not self._encoded:
                self._encoded = True
                assert self.event is not None
                try:
                    self.data = self.event.to_json()
                except EventEncodeError as exc:
                    self._bus._encode_errors += 1
                    logger.error(
                        "cannot encode event on %s for raw subscribers: %s", self.subject, exc
                    )
            if self.data is None:
                return None
            self.message = Message(self.subject, self.data)
        return self.message


class Bus(BusCore):
    """An event bus: ``emit``/``publish``, ``subscribe``/``stream``,
    history queries, ``stats()``, ``close()``/``aclose()``. See the module docstring for
    ordering, threads and backpressure.

    ``history`` (default: a new :class:`turnout.MemoryHistory`) and ``transport`` (default:
    an isolated :class:`turnout.transport.local.LocalTransport`) become the bus's own and
    are closed with it. ``loop`` is where ``async def`` handlers subscribed from outside
    any event loop run.

    ``emit`` runs in Rust (:class:`turnout._core.BusCore`): stamping, the history ring,
    the route cache, the counters and the calls of sync handlers; the rules with more to
    decide (hand-offs between threads, raw subscribers, queue groups, mailboxes, errors)
    are the methods here, which it calls when they apply.
    """

    # The counters ``_published``, ``_delivered`` and the ``_closed`` flag live in Rust.
    __slots__ = (
        "__weakref__",
        "_append_history",
        "_draining",
        "_encode_errors",
        "_event_subjects",
        "_history",
        "_history_errors",
        "_index",
        "_literals",
        "_local_queues",
        "_lock",
        "_loop",
        "_needs_bytes",
        "_pending",
        "_received",
        "_registry",
        "_remote",
        "_retired",
        "_routes",
        "_subscriptions",
        "_transport",
        "_transport_errors",
        "_turns",
        "_undecodable",
        "_wakeups",
    )

    def __init__(
        self,
        node: str = "",
        *,
        history: History | None = None,
        transport: Transport | None = None,
        cache_size: int = 1024,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._index = SubjectIndex(cache_size)
        self._history: History = MemoryHistory() if history is None else history
        self._append_history = self._history.append
        self._transport: Transport = LocalTransport() if transport is None else transport
        self._loop = loop
        # Whether every emitted event needs its JSON at once (so encoding errors reach
        # the emitter rather than being found later by a dispatcher).
        self._needs_bytes = self._history.wants_bytes or (
            self._transport.remote and self._transport.wants_bytes
        )
        self._remote = self._transport.remote
        self._local_queues = not self._transport.owns_queue_groups
        self._event_subjects: dict[str, str] = {}
        self._literals: set[str] = set()
        # Subject -> route, filled from the index and cleared on every change of the
        # subscriptions, both under the registry lock: a route is never older than the
        # index. A hit is one dict lookup instead of a match and two lists built.
        self._routes: dict[str, Route] = {}

        # The dispatch lock (see the module docstring). Re-entrant so that a thread can
        # tell its own dispatch (``dispatching`` set while it holds it) from another's.
        self._lock = DispatchLock()
        self._pending: deque[tuple[Any, ...]] = deque()
        self._turns: dict[str, int] = {}  # queue group -> next member's turn
        # Consumer wake-ups held while a received run is delivered (only under the lock).
        self._wakeups = Wakeups()

        self._registry = threading.Lock()  # guards the fields below
        self._subscriptions: dict[int, Subscription[Any]] = {}
        self._draining: set[Subscription[Any]] = set()  # unsubscribed, worker still busy
        # Counters of subscriptions that are gone, so stats() stays cumulative.
        self._retired = {"handler_errors": 0, "dropped": 0, "overfilled": 0}

        self._received = 0
        self._undecodable = 0
        self._encode_errors = 0
        self._history_errors = 0
        self._transport_errors = 0
        self._transport.attach(self._receive)
        attach_runs = getattr(self._transport, "attach_runs", None)
        if attach_runs is not None:
            attach_runs(self._receive_run)
        # A MemoryHistory's ring is pushed to by the emit path itself; any other store
        # (a subclass too: it may do more) is called through its ``append``.
        memory = self._history if type(self._history) is MemoryHistory else None
        self._wire(
            node=node,
            subjects=self._event_subjects,
            routes=self._routes,
            pending=self._pending,
            lock=self._lock,
            history_ring=None if memory is None else memory._ring,
            history_append=self._append_history,
            needs_bytes=self._needs_bytes,
            remote=self._remote,
            local_queues=self._local_queues,
        )

    # -- publishing ---------------------------------------------------------------

    async def aemit(self, event: Event) -> str:
        """:meth:`emit` that first waits until every ``"block"`` stream or async handler
        the event goes to has room (backpressure that does not stall the event loop)."""
        subject = self._event_subjects.get(event.type)
        if subject is None:
            subject = self._event_subject(event.type)
        route = self._route(subject)
        await self._wait_for_room(route)
        stamped = event._stamped(self.node)
        self._publish(subject, stamped, stamped.to_json() if self._needs_bytes else None, route)
        return subject

    def publish(self, subject: str, data: bytes | bytearray | memoryview) -> None:
        """Publishes raw bytes on a literal ``subject``. Raw subscribers get them as a
        :class:`Message`; the others get the :class:`Event` they decode to (messages that
        are not events are skipped for them and counted as ``undecodable``)."""
        self._publish(*self._raw_message(subject, data), None, _PUBLISHED)

    async def apublish(self, subject: str, data: bytes | bytearray | memoryview) -> None:
        """:meth:`publish` with the backpressure of :meth:`aemit`."""
        subject, _, payload = self._raw_message(subject, data)
        route = self._route(subject)
        await self._wait_for_room(route)
        self._publish(subject, None, payload, route, _PUBLISHED)

    def _event_subject(self, event_type: str) -> str:
        if not isinstance(event_type, str):
            raise TypeError(f"event type must be str, not {type(event_type).__name__}")
        subject = SUBJECT_PREFIX + event_type
        validate_subject(subject, literal=True)
        if len(self._event_subjects) >= _SUBJECT_CACHE_LIMIT:
            self._event_subjects.clear()
        self._event_subjects[event_type] = subject
        return subject

    def _raw_message(
        self, subject: str, data: bytes | bytearray | memoryview
    ) -> tuple[str, None, bytes]:
        if subject not in self._literals:
            if not isinstance(subject, str) or not is_valid_literal(subject):
                validate_subject(subject, literal=True)  # raises, naming the broken rule
            if len(self._literals) >= _SUBJECT_CACHE_LIMIT:
                self._literals.clear()
            self._literals.add(subject)
        if not isinstance(data, bytes):
            if not isinstance(data, (bytearray, memoryview)):
                raise TypeError(f"data must be bytes, not {type(data).__name__}")
            data = bytes(data)
        return subject, None, data

    async def _wait_for_room(self, route: Route) -> None:
        mailboxes = [
            sub._mailbox
            for sub in _all_entries(route)
            if sub._mailbox is not None and sub._mailbox.overflow == "block"
        ]
        while True:
            full = next((mailbox for mailbox in mailboxes if mailbox.full), None)
            if full is None:
                return
            await full.wait_for_space()

    def _publish(
        self,
        subject: str,
        event: Event | None,
        data: bytes | None,
        route: Route | None = None,
        source: int = _EMITTED,
    ) -> None:
        if self._closed:
            raise BusClosedError("the bus is closed")
        lock = self._lock
        pending = self._pending
        if lock.acquire(False):
            if lock.dispatching or pending:
                # Published by a handler on the dispatching thread (the lock is
                # re-entrant), or behind earlier hand-offs: queue it after them.
                pending.append((subject, event, data, route, source, None))
                if lock.dispatching:
                    lock.release()  # the dispatch loop below us delivers it next
                else:
                    self._drain_locked()
                return
            lock.dispatching = True
            try:
                self._dispatch(subject, event, data, route, source, None)
            finally:
                lock.dispatching = False
                lock.release()
            if pending and lock.acquire(False):  # handed off while we dispatched
                self._drain_locked()
            return
        self._hand_off((subject, event, data, route, source, None), may_wait=True)

    def _receive(
        self, subject: str, event: Event | None, data: bytes | None, queue: str | None = None
    ) -> None:
        """The transport's entry point (see :mod:`turnout.transport`); never waits."""
        if self._closed:
            return
        if event is None and data is None:
            raise ValueError("a received message needs an event or its bytes")
        self._hand_off((subject, event, data, None, _RECEIVED, queue), may_wait=False)

    def _receive_run(self, run: list[tuple[int, str, bytes]]) -> None:
        """The entry point of a transport reading messages in runs: ``(sid, subject,
        data)`` each, in order, for plain interest (the sid is the transport's); never
        waits. The run is delivered as one while no other dispatch is in the way: every
        mailbox gets its part in one put, and its consumer one wake-up after the run."""
        if self._closed:
            return
        lock = self._lock
        if lock.acquire(False):
            if not lock.dispatching and not self._pending:
                wakeups = self._wakeups
                lock.dispatching = True
                wakeups.hold()
                try:
                    self._dispatch_run(run)
                finally:
                    wakeups.release()
                    lock.dispatching = False
                    lock.release()
                if self._pending and lock.acquire(False):  # handed off meanwhile
                    self._drain_locked()
                return
            lock.release()
        for _sid, subject, data in run:
            self._hand_off((subject, None, data, None, _RECEIVED, None), may_wait=False)

    def _dispatch_run(self, run: list[tuple[int, str, bytes]]) -> None:
        """Delivers a received run under the dispatch lock, in order. Consecutive
        messages on one subject whose plain subscriptions all have mailboxes (async
        handlers, streams) go to each mailbox in one put: nothing there calls back into
        the bus. Any other message is dispatched alone, and what its sync handlers
        publish is delivered before the next one."""
        pending = self._pending
        local_queues = self._local_queues
        start, end = 0, len(run)
        while start < end:
            subject = run[start][1]
            stop = start + 1
            while stop < end and run[stop][1] == subject:
                stop += 1
            route = self._routes.get(subject) or self._route(subject)
            plain = route.plain
            if (
                plain
                and (route.groups is None or not local_queues)
                and all(sub._mailbox is not None for sub in plain)
            ):
                self._received += stop - start
                self._deliver_run(plain, subject, [item[2] for item in run[start:stop]])
            else:
                for index in range(start, stop):
                    self._dispatch(subject, None, run[index][2], None, _RECEIVED, None)
                    while pending:
                        self._dispatch(*pending.popleft())
            start = stop

    def _deliver_run(self, plain: tuple[Any, ...], subject: str, datas: list[bytes]) -> None:
        """Puts the messages ``datas`` on ``subject`` into every mailbox of ``plain``: one
        list of events (decoded once) or raw messages shared by all of them."""
        events: list[Event] | None = None
        messages: list[Message] | None = None
        delivered = 0
        for sub in plain:
            batch: list[Any]
            if sub.raw:
                if messages is None:
                    messages = [Message(subject, data) for data in datas]
                batch = messages
            else:
                if events is None:
                    events = self._decode_run(subject, datas)
                batch = events
            if not batch:
                continue
            try:
                sub._mailbox.put_run(batch)
            except Exception as exc:
                self._handler_failed(sub, exc)
            delivered += len(batch)
        self._delivered += delivered

    def _decode_run(self, subject: str, datas: list[bytes]) -> list[Event]:
        """The events of ``datas``; those that are none are skipped and counted."""
        decode = Event.from_json
        try:
            return [decode(data) for data in datas]
        except EventDecodeError:
            pass
        events = []
        for data in datas:
            try:
                events.append(decode(data))
            except EventDecodeError as exc:
                self._undecodable += 1
                logger.debug("undecodable message on %s: %s", subject, exc)
        return events

    def _hand_off(self, item: tuple[Any, ...], may_wait: bool) -> None:
        """Queues ``item`` for dispatch; waits for the dispatch lock only where waiting
        cannot deadlock (see the module docstring)."""
        self._pending.append(item)
        lock = self._lock
        if lock.acquire(False):
            if lock.dispatching:  # this thread is dispatching: it delivers it next
                lock.release()
            else:
                self._drain_locked()
        elif may_wait and _running_loop() is None:
            lock.acquire()  # held by another thread, which may be waiting for room
            self._drain_locked()
        # Otherwise the thread holding the lock delivers it before letting go: it
        # rechecks the queue after releasing (_drain_locked), so nothing is stranded.

    def _drain_locked(self) -> None:
        """Dispatches queued items in order; called holding the lock, releases it."""
        lock = self._lock
        pending = self._pending
        while True:
            lock.dispatching = True
            try:
                while pending:
                    self._dispatch(*pending.popleft())
            finally:
                lock.dispatching = False
                lock.release()
            if not pending or not lock.acquire(False):
                return

    def _dispatch(
        self,
        subject: str,
        event: Event | None,
        data: bytes | None,
        route: Route | None,
        source: int,
        queue: str | None,
    ) -> None:
        """Delivers one message of any source; runs under the dispatch lock."""
        if source == _EMITTED:
            assert event is not None
            self._dispatch_event(subject, event, data, route)
            return
        payload = _Payload(self, subject, event, data)
        if source == _PUBLISHED:
            self._published += 1
            if subject.startswith(SUBJECT_PREFIX):
                decoded = payload.as_event()
                if decoded is not None:
                    self._record(subject, decoded, data)
            if self._remote:
                self._send(subject, event, data)
        else:
            self._received += 1
        route = route or self._routes.get(subject) or self._route(subject)
        plain, groups = route.plain, route.groups
        if plain and queue is None:
            self._deliver_payload(plain, payload)
        if groups is not None and (self._local_queues or queue is not None):
            self._deliver_to_groups(groups, queue, payload)

    def _route(self, subject: str) -> Route:
        """What ``subject`` routes to: from the route cache, else matched in the index."""
        route = self._routes.get(subject)
        if route is None:
            with self._registry:
                matched = self._index.match(subject)
                plain = tuple(matched.plain)
                route = Route(plain, matched.queues if len(matched) != len(plain) else None)
                if len(self._routes) >= _SUBJECT_CACHE_LIMIT:
                    self._routes.clear()
                self._routes[subject] = route
        return route

    def _record(self, subject: str, event: Event, data: bytes | None) -> None:
        try:
            self._append_history(subject, event, data)
        except Exception as exc:
            self._history_failed(subject, exc)

    def _history_failed(self, subject: str, exc: Exception) -> None:
        self._history_errors += 1
        logger.error("history failed to append an event on %s", subject, exc_info=exc)

    def _send(self, subject: str, event: Event | None, data: bytes | None) -> None:
        try:
            self._transport.publish(subject, event, data)
        except Exception as exc:
            self._transport_errors += 1
            logger.error("transport failed to publish on %s", subject, exc_info=exc)

    def _deliver_mixed(
        self, plain: tuple[Any, ...], subject: str, event: Event, data: bytes | None
    ) -> None:
        """The emit path's plain delivery when some subscription wants raw bytes."""
        self._deliver_payload(plain, _Payload(self, subject, event, data))

    def _deliver_emitted_to_groups(
        self, groups: dict[str, list[Any]], subject: str, event: Event, data: bytes | None
    ) -> None:
        """The emit path's delivery to queue groups."""
        self._deliver_to_groups(groups, None, _Payload(self, subject, event, data))

    def _deliver_payload(self, plain: tuple[Any, ...], payload: _Payload) -> None:
        """Plain delivery when some entries want raw bytes or the event is still bytes."""
        delivered = 0
        for sub in plain:
            argument = payload.as_message() if sub.raw else payload.as_event()
            if argument is None:
                continue
            delivered += 1
            try:
                sub._call(argument)
            except Exception as exc:
                self._handler_failed(sub, exc)
        self._delivered += delivered

    def _deliver_to_groups(
        self, groups: dict[str, list[Any]], only: str | None, payload: _Payload
    ) -> None:
        """One member of each queue group (or of group ``only``) takes the message."""
        turns = self._turns
        for group, members in groups.items():
            if only is not None and group != only:
                continue
            turn = turns.get(group, 0)
            turns[group] = turn + 1
            sub: Subscription[Any] = members[turn % len(members)]
            argument = payload.as_message() if sub.raw else payload.as_event()
            if argument is None:
                continue
            try:
                sub._call(argument)
            except Exception as exc:
                self._handler_failed(sub, exc)
            self._delivered += 1

    def _handler_failed(self, sub: Subscription[Any], exc: Exception) -> None:
        sub.errors += 1
        logger.error("handler %r for %r raised", sub.handler, sub.pattern, exc_info=exc)

    # -- subscribing --------------------------------------------------------------

    @overload
    def subscribe(
        self,
        pattern: str,
        handler: Callable[[Event], object],
        queue: str | None = None,
        *,
        raw: Literal[False] = False,
        maxsize: int = DEFAULT_MAXSIZE,
        overflow: Overflow = "block",
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Subscription[Event]: ...

    @overload
    def subscribe(
        self,
        pattern: str,
        handler: Callable[[Message], object],
        queue: str | None = None,
        *,
        raw: Literal[True],
        maxsize: int = DEFAULT_MAXSIZE,
        overflow: Overflow = "block",
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Subscription[Message]: ...

    def subscribe(
        self,
        pattern: str,
        handler: Callable[[Any], object],
        queue: str | None = None,
        *,
        raw: bool = False,
        maxsize: int = DEFAULT_MAXSIZE,
        overflow: Overflow = "block",
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Subscription[Any]:
        """Calls ``handler`` with every event published on a subject matching
        ``pattern`` (a :class:`Message` instead when ``raw``). In queue group ``queue``,
        each event goes to one member of the group.

        An ``async def`` handler runs on ``loop``, else the running loop, else the bus's
        ``loop``; ``maxsize`` and ``overflow`` bound its mailbox. A sync handler runs on
        the publishing thread and must not block for long: it holds up the publisher."""
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        mailbox: Mailbox[Any] | None = None
        target: asyncio.AbstractEventLoop | None = None
        if _is_async(handler):
            target = loop or _running_loop() or self._loop
            if target is None:
                raise RuntimeError(
                    "an async handler needs an event loop: subscribe from a running loop "
                    "or pass loop= (here or to Bus)"
                )
            mailbox = Mailbox(maxsize, overflow, target, self._wakeups)
        sub = Subscription(self, pattern, queue, raw, handler, mailbox, target)
        self._register(sub)
        if mailbox is not None and target is not None:
            self._start_worker(sub, target)
        return sub

    def subscribe_type(
        self,
        event_type: str,
        handler: Callable[[Event], object],
        queue: str | None = None,
        *,
        maxsize: int = DEFAULT_MAXSIZE,
        overflow: Overflow = "block",
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Subscription[Event]:
        """:meth:`subscribe` to the pattern ``"events." + event_type`` (for raw messages,
        subscribe to that pattern with ``raw=True``)."""
        pattern = SUBJECT_PREFIX + event_type
        return self.subscribe(
            pattern, handler, queue, maxsize=maxsize, overflow=overflow, loop=loop
        )

    @overload
    def stream(
        self,
        pattern: str,
        maxsize: int = DEFAULT_MAXSIZE,
        overflow: Overflow = "block",
        queue: str | None = None,
        *,
        raw: Literal[False] = False,
    ) -> Stream[Event]: ...

    @overload
    def stream(
        self,
        pattern: str,
        maxsize: int = DEFAULT_MAXSIZE,
        overflow: Overflow = "block",
        queue: str | None = None,
        *,
        raw: Literal[True],
    ) -> Stream[Message]: ...

    def stream(
        self,
        pattern: str,
        maxsize: int = DEFAULT_MAXSIZE,
        overflow: Overflow = "block",
        queue: str | None = None,
        *,
        raw: bool = False,
    ) -> Stream[Any]:
        """A :class:`Stream` of what is published on subjects matching ``pattern`` from
        now on, bounded by ``maxsize`` with the given overflow policy."""
        mailbox: Mailbox[Any] = Mailbox(maxsize, overflow, _running_loop(), self._wakeups)
        sub = Subscription(self, pattern, queue, raw, None, mailbox, None)
        self._register(sub)
        return Stream(sub, mailbox)

    def check_pattern(self, pattern: str) -> None:
        """Raises :class:`turnout.InvalidSubjectError`, naming the rule, if this bus
        cannot subscribe to ``pattern``: if it is not a valid pattern, and on a bus whose
        transport adds rules of its own (NATS: :class:`turnout.nats.NatsBus`) if it breaks
        one of those."""
        validate_subject(pattern)

    def _register(self, sub: Subscription[Any]) -> None:
        if sub.queue is not None and (not isinstance(sub.queue, str) or not sub.queue):
            raise ValueError(f"queue group must be a non-empty str, not {sub.queue!r}")
        with self._registry:
            if self._closed:
                raise BusClosedError("the bus is closed")
            sub._handle = self._index.insert(sub.pattern, sub, sub.queue)
            self._routes.clear()
            self._subscriptions[sub._handle] = sub
        self._transport.add_interest(sub.pattern, sub.queue)

    def _unsubscribe(self, sub: Subscription[Any]) -> None:
        with self._registry:
            if not sub._active:
                return
            sub._active = False
            self._index.remove(sub._handle)
            self._routes.clear()
            del self._subscriptions[sub._handle]
            if sub._done.done():
                self._retire(sub)
            else:  # its worker still handles what is buffered: count it until it ends
                self._draining.add(sub)
        self._transport.remove_interest(sub.pattern, sub.queue)
        if sub._mailbox is not None:
            sub._mailbox.close()

    def _retire(self, sub: Subscription[Any]) -> None:
        """Keeps a finished subscription's counters in stats(); holding the registry."""
        self._retired["handler_errors"] += sub.errors
        self._retired["dropped"] += sub.dropped
        self._retired["overfilled"] += sub.overfilled

    def _worker_finished(self, sub: Subscription[Any]) -> None:
        with self._registry:
            sub._done.set_result(None)
            if sub in self._draining:
                self._draining.discard(sub)
                self._retire(sub)

    def _start_worker(self, sub: Subscription[Any], loop: asyncio.AbstractEventLoop) -> None:
        """Starts the async handler's worker task on ``loop``, in a copy of the
        subscriber's context. Made with that context (Python 3.11+), the mailbox holds the
        task's own context and may run the handler inline in it (see
        :mod:`turnout.bus._mailbox`)."""
        if sys.version_info < (3, 11):
            worker = self._consume(sub, None)
            if _running_loop() is loop:
                sub._worker = loop.create_task(worker)
            else:
                sub._worker = asyncio.run_coroutine_threadsafe(worker, loop)
            return
        context = contextvars.copy_context()
        worker = self._consume(sub, context)
        if _running_loop() is loop:
            sub._worker = loop.create_task(worker, context=context)
            return

        def start() -> None:
            sub._worker = loop.create_task(worker, context=context)

        try:
            loop.call_soon_threadsafe(start)
        except RuntimeError:  # a closed loop: the worker never runs
            worker.close()
            raise

    async def _consume(self, sub: Subscription[Any], context: contextvars.Context | None) -> None:
        """An async handler's worker: its events, one at a time, in order
        (:meth:`Mailbox.feed`)."""
        mailbox = sub._mailbox
        assert mailbox is not None
        handler = cast(Callable[[Any], Awaitable[object]], sub.handler)
        try:
            await mailbox.feed(handler, functools.partial(self._handler_failed, sub), context)
        finally:
            self._worker_finished(sub)

    # -- history ------------------------------------------------------------------

    @property
    def history_store(self) -> History:
        return self._history

    def history(self, filter: str, limit: int = 50, *, newest: bool = False) -> list[Event]:
        """Retained events on subjects matching ``filter``, oldest first: the first
        ``limit`` from the oldest, or with ``newest=True`` the last ``limit``."""
        return self._history.history(filter, limit, newest=newest)

    def history_since(
        self, filter: str, since: datetime, limit: int = 50, *, newest: bool = False
    ) -> list[Event]:
        """Like :meth:`history`, keeping events whose timestamp is at or after ``since``."""
        return self._history.history_since(filter, since, limit, newest=newest)

    # -- observing ----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters: ``published`` (on this bus), ``received`` (through the transport),
        ``delivered`` (to handlers, mailboxes and streams), ``handler_errors``,
        ``dropped`` and ``overfilled`` (by mailboxes' overflow policies),
        ``undecodable``, ``encode_errors``, ``history_errors``, ``transport_errors``,
        ``subscriptions``, ``streams``, ``pending``, and the ``index`` and ``history``
        stores' own stats."""
        with self._registry:
            active = len(self._subscriptions)
            subs = [*self._subscriptions.values(), *self._draining]
            retired = dict(self._retired)
        return {
            "published": self._published,
            "received": self._received,
            "delivered": self._delivered,
            "handler_errors": retired["handler_errors"] + sum(sub.errors for sub in subs),
            "dropped": retired["dropped"] + sum(sub.dropped for sub in subs),
            "overfilled": retired["overfilled"] + sum(sub.overfilled for sub in subs),
            "undecodable": self._undecodable,
            "encode_errors": self._encode_errors,
            "history_errors": self._history_errors,
            "transport_errors": self._transport_errors,
            "subscriptions": active,
            "streams": sum(1 for sub in subs if sub._active and sub.handler is None),
            "pending": len(self._pending),
            "index": self._index.stats(),
            "history": self._history.stats(),
        }

    @property
    def closed(self) -> bool:
        return self._closed

    # -- closing ------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Stops accepting events, delivers everything accepted before (to handlers and
        streams, whose iteration then ends), and closes the transport and the history
        store. Idempotent.

        Async handlers finish their mailboxes on their own loops; ``close`` waits for
        them (up to ``timeout`` seconds) unless called on such a loop, where it cannot:
        use ``await aclose()`` there."""
        subs = self._shut()
        if subs is None:
            return
        self._transport.close()
        self._history.close()
        deadline = None if timeout is None else time.monotonic() + timeout
        current = _running_loop()
        for sub in subs:
            loop = sub._loop
            while loop is not None and loop is not current and not sub._done.done():
                if not loop.is_running():
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    return
                try:
                    sub._done.result(_WORKER_CHECK_SECONDS)
                except concurrent.futures.TimeoutError:
                    continue

    async def aclose(self) -> None:
        """:meth:`close`, then waits for the transport and for async handlers to finish
        what they were given."""
        subs = self._shut()
        if subs is None:
            return
        await self._transport.aclose()
        self._history.close()
        current = asyncio.get_running_loop()
        for sub in subs:
            loop = sub._loop
            if loop is not None and (loop is current or loop.is_running()):
                await asyncio.wrap_future(sub._done)

    def _shut(self) -> list[Subscription[Any]] | None:
        """Closes the bus for new work and flushes it; None if it was already closed."""
        if self._lock.acquire(False):
            dispatching = self._lock.dispatching
            self._lock.release()
            if dispatching:
                raise RuntimeError("a bus cannot be closed from a handler it is calling")
        with self._registry:
            if self._closed:
                return None
            self._closed = True
            subs = list(self._subscriptions.values())
        for sub in subs:
            if sub._mailbox is not None:
                sub._mailbox.unblock()  # the last deliveries must not wait for room
        self._lock.acquire()  # the dispatcher in flight finishes; then the hand-offs
        self._drain_locked()
        for sub in subs:
            self._unsubscribe(sub)
        return subs

    def __enter__(self) -> Bus:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Bus:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._subscriptions)} subscriptions"
        return f"<Bus node={self.node!r} {state}>"


def _all_entries(route: Route) -> list[Subscription[Any]]:
    plain, groups = route.plain, route.groups
    entries: list[Subscription[Any]] = list(plain)
    for members in (groups or {}).values():
        entries.extend(members)
    return entries


def _is_async(handler: Callable[..., object]) -> bool:
    """Whether calling ``handler`` makes a coroutine: an ``async def`` function, a partial
    of one, or an object whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - we want the method itself
    return call is not None and inspect.iscoroutinefunction(call)
