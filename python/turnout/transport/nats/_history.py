"""Event history served from a JetStream stream, with the query semantics of
:meth:`turnout.Bus.history` (jb-mesh's).

The stream captures everything published on ``events.>`` by anyone (turnout nodes, Go
jb-mesh nodes, plain clients), so this store's ``append`` does nothing: the bus's own emits
reach the stream as JetStream publishes through the transport, whose acknowledgements are
counted there. A query first waits until this bus's earlier publishes are acknowledged, so
a bus reads its own writes, then reads the stream through a short-lived ephemeral consumer
filtered on the query's pattern (the server does the wildcard filtering):

- oldest first: from the first matching message until ``limit`` events are read;
- ``newest=True``: a binary search over start sequences, using the consumer's count of
  matching messages, finds where the newest ``limit`` begin, and only those are read (when
  undecodable records make that too few, the whole match is read instead);
- ``history_since``: every matching message is read, keeping events whose own timestamp
  is at or after ``since``, as the embedded stores do.

Records whose payload is not an event are skipped and counted (``undecodable``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.js import api
from nats.js.errors import NotFoundError, ServiceUnavailableError

from turnout._core import is_subset, subjects_collide, validate_subject
from turnout._wire import ZERO_TIME
from turnout.events import SUBJECT_PREFIX, Event, EventDecodeError
from turnout.history import DEFAULT_MAX_AGE, DEFAULT_MAX_MSGS
from turnout.history import _instant_ns as instant_ns
from turnout.transport.nats._io import NatsTransport

__all__ = ["STREAM_SUBJECTS", "JetStreamHistory", "PersistConfig", "PersistError"]

logger = logging.getLogger("turnout.nats")

#: What the stream captures.
STREAM_SUBJECTS = SUBJECT_PREFIX + ">"
# Messages asked for per pull request while reading a query's match.
_FETCH_BATCH = 512
# A query's consumer is removed by the server if the query dies before deleting it.
_CONSUMER_IDLE_SECONDS = 60.0
# What a cluster answers while it elects leaders after losing a server; queries retry.
_ELECTING = (asyncio.TimeoutError, NoRespondersError, ServiceUnavailableError)
_RETRY_SECONDS = 0.25


class PersistError(RuntimeError):
    """The JetStream stream cannot be created, updated or read (JetStream not enabled on
    the server, a stream of that name with other subjects, ...)."""


@dataclass(frozen=True)
class PersistConfig:
    """jb-mesh's ``PersistConfig``: which JetStream stream keeps the events, and how many
    and how long. ``max_age`` is a :class:`~datetime.timedelta` or seconds; ``None`` or
    zero, like ``max_msgs=0``, means unlimited. ``replicas`` is the stream's replica
    count in a cluster (3 survives the loss of one server).

    The limits are those of a stream this bus creates. A stream of that name that exists
    already (made by another service, perhaps another language's) is used as it is, as
    long as it captures ``events.>``; otherwise :class:`PersistError` names the
    difference. ``update=True`` makes an existing stream this configuration instead."""

    stream_name: str = "MESH_EVENTS"
    max_age: timedelta | float | None = DEFAULT_MAX_AGE
    max_msgs: int = DEFAULT_MAX_MSGS
    replicas: int = 1
    update: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.stream_name, str) or not self.stream_name:
            raise ValueError("stream_name must be a non-empty str")
        if any(c in self.stream_name for c in " \t\r\n.*>"):
            raise ValueError(f"invalid JetStream stream name: {self.stream_name!r}")
        age = self.max_age
        if age is not None and not isinstance(age, timedelta):
            if isinstance(age, bool) or not isinstance(age, (int, float)):
                raise TypeError(f"max_age must be a timedelta or seconds, not {age!r}")
            object.__setattr__(self, "max_age", timedelta(seconds=age))
        if self.max_age is not None and self.max_age < timedelta(0):  # type: ignore[operator]
            raise ValueError(f"max_age must not be negative, not {self.max_age}")
        if self.max_msgs < 0:
            raise ValueError(f"max_msgs must be >= 0 (0 = unlimited), not {self.max_msgs}")
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, not {self.replicas}")
        if not isinstance(self.update, bool):
            raise TypeError(f"update must be a bool, not {self.update!r}")

    @classmethod
    def default(cls) -> PersistConfig:
        """jb-mesh's ``DefaultPersistConfig()``."""
        return cls()

    @property
    def max_age_seconds(self) -> float:
        """``max_age`` in seconds, 0 for unlimited."""
        age = self.max_age
        assert age is None or isinstance(age, timedelta)
        return 0.0 if age is None else age.total_seconds()

    def stream_config(self) -> api.StreamConfig:
        return api.StreamConfig(
            name=self.stream_name,
            subjects=[STREAM_SUBJECTS],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            max_age=self.max_age_seconds,
            max_msgs=self.max_msgs or -1,
            num_replicas=self.replicas,
        )


def _differences(current: api.StreamConfig, wanted: api.StreamConfig) -> list[str]:
    """What ``current`` has other than ``wanted``, one phrase each."""
    pairs = [
        ("subjects", current.subjects or [], wanted.subjects),
        ("storage", current.storage, wanted.storage),
        ("max_msgs", current.max_msgs or -1, wanted.max_msgs),
        ("max_age", round(current.max_age or 0.0, 6), round(wanted.max_age or 0.0, 6)),
        ("replicas", current.num_replicas or 1, wanted.num_replicas),
    ]
    return [f"{name} {have!r} (wanted {want!r})" for name, have, want in pairs if have != want]


def _captures_events(subjects: list[str] | None) -> bool:
    return any(is_subset(STREAM_SUBJECTS, subject) for subject in subjects or [])


class JetStreamHistory:
    """A :class:`turnout.history.History` read from a JetStream stream (see the module
    docstring). The sync queries wait on the NATS I/O thread; ``ahistory`` and
    ``ahistory_since`` are their async forms."""

    wants_bytes = False

    def __init__(
        self, transport: NatsTransport, config: PersistConfig, query_timeout: float = 30.0
    ) -> None:
        self.config = config
        self._transport = transport
        self._query_timeout = query_timeout
        self._undecodable = 0
        self._queries = 0
        self._state: dict[str, int] = {"retained": 0, "appended": 0, "removed": 0}

    # -- set-up (on the I/O loop) -----------------------------------------------------

    async def ensure_stream(self) -> None:
        """Creates the stream; uses an existing one as it is (updates it with ``update``).
        Raises :class:`PersistError` when it cannot, or when the existing stream does not
        capture ``events.>``."""
        jsm = self._transport.client.jsm()
        config = self.config
        wanted = config.stream_config()
        try:
            try:
                info = await jsm.stream_info(config.stream_name)
            except NotFoundError:
                await jsm.add_stream(wanted)
                return
            differences = _differences(info.config, wanted)
            if not differences:
                return
            if config.update:  # updating needs a healthy cluster
                await jsm.update_stream(wanted)
                return
        except Exception as exc:
            raise PersistError(
                f"cannot set up JetStream stream {config.stream_name!r} on "
                f"{STREAM_SUBJECTS}: {exc!r}"
            ) from exc
        if not _captures_events(info.config.subjects):
            raise PersistError(
                f"JetStream stream {config.stream_name!r} exists and does not capture "
                f"{STREAM_SUBJECTS}: {'; '.join(differences)}; PersistConfig(update=True) "
                "would make it this configuration"
            )
        logger.info(
            "using JetStream stream %r as it is: %s", config.stream_name, "; ".join(differences)
        )

    # -- the History protocol -------------------------------------------------------

    def append(self, subject: str, event: Event, data: bytes | None = None) -> None:
        """Nothing to do: the stream records the transport's publishes itself."""

    def history(self, filter: str, limit: int = 50, *, newest: bool = False) -> list[Event]:
        return self._sync(filter, limit, newest, None)

    def history_since(
        self, filter: str, since: datetime, limit: int = 50, *, newest: bool = False
    ) -> list[Event]:
        return self._sync(filter, limit, newest, since)

    async def ahistory(self, filter: str, limit: int = 50, *, newest: bool = False) -> list[Event]:
        validate_subject(filter)
        return await self._transport.run(self.query(filter, limit, newest, None))

    async def ahistory_since(
        self, filter: str, since: datetime, limit: int = 50, *, newest: bool = False
    ) -> list[Event]:
        validate_subject(filter)
        return await self._transport.run(self.query(filter, limit, newest, since))

    def _sync(self, filter: str, limit: int, newest: bool, since: datetime | None) -> list[Event]:
        validate_subject(filter)
        return self._transport.run_sync(self.query(filter, limit, newest, since), None)

    def stats(self) -> dict[str, int]:
        """``retained`` (messages in the stream), ``appended`` (its last sequence),
        ``removed`` (by the limits or purges), ``undecodable`` (records skipped by
        queries) and ``queries``. Read from the server, except on the NATS I/O thread or
        while disconnected, where the last known figures are given."""
        if self._transport.connected and not self._transport.on_io_thread():
            # Stats answer even when the server does not: the last known figures then.
            with contextlib.suppress(ConnectionError, TimeoutError, PersistError):
                self._transport.run_sync(self._refresh_state(), 5.0)
        return {**self._state, "undecodable": self._undecodable, "queries": self._queries}

    def close(self) -> None:
        """Nothing to release: the transport owns the connection."""

    # -- queries (on the I/O loop) --------------------------------------------------

    async def _refresh_state(self) -> None:
        await self._transport.barrier()
        try:
            info = await self._transport.client.jsm().stream_info(self.config.stream_name)
        except Exception as exc:
            raise PersistError(f"cannot read stream {self.config.stream_name!r}: {exc!r}") from exc
        state = info.state
        self._state = {
            "retained": state.messages,
            "appended": state.last_seq,
            "removed": state.last_seq - state.messages,
        }

    async def query(
        self, filter: str, limit: int, newest: bool, since: datetime | None
    ) -> list[Event]:
        """The events of a query, oldest first (see the module docstring); raises
        :class:`PersistError` when it cannot be answered within ``query_timeout``."""
        if limit <= 0 or not subjects_collide(filter, STREAM_SUBJECTS):
            return []
        self._queries += 1
        try:
            return await asyncio.wait_for(
                self._query(filter, limit, newest, since), self._query_timeout
            )
        except asyncio.TimeoutError:
            raise PersistError(
                f"history query on {filter!r} not answered within {self._query_timeout} s"
            ) from None

    async def _query(
        self, filter: str, limit: int, newest: bool, since: datetime | None
    ) -> list[Event]:
        await self._transport.barrier()  # this bus reads its own writes
        deadline = time.monotonic() + self._query_timeout
        while True:
            skipped = self._undecodable
            try:
                return await self._query_once(filter, limit, newest, since)
            except _ELECTING as exc:
                # A cluster that lost a server answers again once it has elected new
                # leaders for its JetStream state and the stream.
                self._undecodable = skipped
                if time.monotonic() + _RETRY_SECONDS >= deadline:
                    raise PersistError(f"history query on {filter!r} failed: {exc!r}") from exc
                await asyncio.sleep(_RETRY_SECONDS)
            except (NatsError, OSError) as exc:
                raise PersistError(f"history query on {filter!r} failed: {exc!r}") from exc

    async def _query_once(
        self, filter: str, limit: int, newest: bool, since: datetime | None
    ) -> list[Event]:
        if since is None and newest:
            start = await self._newest_start(filter, limit)
            if start is not None:
                skipped = self._undecodable
                found = await self._read(filter, start, limit, False, None)
                if len(found) == limit:
                    return found
                self._undecodable = skipped  # counted again by the full read below
        return await self._read(filter, 1, limit, newest, since)

    async def _newest_start(self, filter: str, limit: int) -> int | None:
        """The sequence where the newest ``limit`` matching messages begin: the largest
        start whose count of matching messages is still ``limit``. None if fewer match."""
        info = await self._transport.client.jsm().stream_info(self.config.stream_name)
        low, high = max(1, info.state.first_seq), info.state.last_seq
        if await self._count_from(filter, low) <= limit:
            return None
        while low < high:  # invariant: count_from(low) > limit or low is the answer
            middle = (low + high + 1) // 2
            if await self._count_from(filter, middle) >= limit:
                low = middle
            else:
                high = middle - 1
        return low

    async def _count_from(self, filter: str, start: int) -> int:
        jsm = self._transport.client.jsm()
        name = self._transport.client._nuid.next().decode()
        info = await jsm.add_consumer(self.config.stream_name, self._consumer(name, filter, start))
        await jsm.delete_consumer(self.config.stream_name, name)
        return int(info.num_pending or 0)

    def _consumer(self, name: str, filter: str, start: int) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            name=name,
            filter_subject=filter,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            ack_policy=api.AckPolicy.NONE,
            inactive_threshold=_CONSUMER_IDLE_SECONDS,
            mem_storage=True,
            num_replicas=1,
        )

    async def _read(
        self, filter: str, start: int, limit: int, newest: bool, since: datetime | None
    ) -> list[Event]:
        client = self._transport.client
        jsm = client.jsm()
        stream = self.config.stream_name
        name = client._nuid.next().decode()
        info = await jsm.add_consumer(stream, self._consumer(name, filter, start))
        remaining = int(info.num_pending or 0)
        since_ns = None if since is None else instant_ns(since)
        kept: deque[Event] | list[Event] = deque(maxlen=limit) if newest else []
        sub = await client.jetstream().pull_subscribe_bind(name=name, stream=stream)
        try:
            while remaining > 0:
                try:
                    batch = await sub.fetch(min(remaining, _FETCH_BATCH), timeout=5.0)
                except asyncio.TimeoutError:
                    # Nothing came: the rest expired meanwhile (the stream's limits), or
                    # the consumer's server is slow to answer (a cluster that just lost a
                    # server). Only the first ends the read; a short answer must not pass
                    # for the whole history. The query's own timeout bounds the retries.
                    remaining = int((await sub.consumer_info()).num_pending or 0)
                    continue
                for msg in batch:
                    remaining -= 1
                    event = self._decode(msg.data)
                    if event is None:
                        continue
                    if since_ns is not None and instant_ns(event.timestamp or ZERO_TIME) < since_ns:
                        continue
                    kept.append(event)
                    if not newest and len(kept) == limit:
                        return list(kept)
        finally:
            # The server also removes the consumer once idle: a failed clean-up must not
            # hide what went wrong before it.
            with contextlib.suppress(NatsError, OSError, asyncio.TimeoutError):
                await sub.unsubscribe()
                await jsm.delete_consumer(stream, name)
        return list(kept)

    def _decode(self, data: bytes) -> Event | None:
        try:
            return Event.from_json(data)
        except EventDecodeError:
            self._undecodable += 1
            return None
