"""Event history stores for :class:`turnout.Bus`, with jb-mesh's query semantics.

``history(filter, limit)`` returns up to ``limit`` retained events whose subject matches the
pattern ``filter``, oldest first, starting from the oldest retained one (what jb-mesh's
JetStream "deliver all" consumer returns); ``newest=True`` takes the newest ``limit`` instead,
still in oldest-first order. ``history_since`` keeps the events whose timestamp is at or
after ``since``. ``limit <= 0`` gives ``[]``. Retention follows JetStream's limits: ``max_age``
counts from when a store received an event (not the event's own timestamp), ``max_msgs``
drops the oldest first; ``None``/``0`` means unlimited.

:class:`MemoryHistory` keeps events in memory. :class:`FileHistory` also journals them to a
file (format in ``turnout.history._journal``) so they survive restarts and crashes. Both
retain in the same Rust ring (``turnout._core.HistoryRing``): every append expires what is
too old at once and evicts at most one record, and queries match each distinct subject
once, in Rust.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Protocol

from turnout._core import HistoryRing, is_valid_literal, validate_subject
from turnout._wire import ZERO_TIME
from turnout.events import Event, EventDecodeError
from turnout.history import _journal

if os.name == "posix":
    import fcntl

__all__ = [
    "FileHistory",
    "History",
    "HistoryFormatError",
    "HistoryLockedError",
    "MemoryHistory",
]

DEFAULT_MAX_AGE = timedelta(hours=24)
DEFAULT_MAX_MSGS = 10_000

_Clock = Callable[[], int]
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class HistoryFormatError(ValueError):
    """A file given to :class:`FileHistory` that is not a turnout history journal."""


class HistoryLockedError(RuntimeError):
    """Another open :class:`FileHistory` (in this or another process) holds the file."""


class History(Protocol):
    """What :class:`turnout.Bus` needs from a history store."""

    #: Whether ``append`` uses the event's JSON; the bus then serialises each event once
    #: and passes the bytes along.
    wants_bytes: bool

    def append(self, subject: str, event: Event, data: bytes | None = None) -> None:
        """Retains ``event`` published on ``subject``; ``data`` is its JSON if known."""
        ...

    def history(self, filter: str, limit: int = 50, *, newest: bool = False) -> list[Event]:
        """Retained events matching ``filter`` (see the module docstring)."""
        ...

    def history_since(
        self, filter: str, since: datetime, limit: int = 50, *, newest: bool = False
    ) -> list[Event]:
        """Like :meth:`history`, keeping events with ``timestamp >= since``."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters: at least ``retained``, ``appended``, ``expired``, ``evicted``,
        ``undecodable``."""
        ...

    def close(self) -> None:
        """Releases what the store holds; queries keep working on what it retained."""
        ...


def _checked_limits(max_age: timedelta | None, max_msgs: int) -> int:
    """Validates the retention limits; returns ``max_age`` in ns (0: unlimited)."""
    if max_msgs < 0:
        raise ValueError(f"max_msgs must be >= 0 (0 = unlimited), not {max_msgs}")
    if max_age is not None and max_age < timedelta(0):
        raise ValueError(f"max_age must not be negative, not {max_age}")
    return 0 if max_age is None else max_age // timedelta(microseconds=1) * 1000


def _since(
    ring: HistoryRing, filter: str, since: datetime, limit: int, newest: bool
) -> list[Event]:
    """The ``history_since`` query both stores answer from their ring."""
    validate_subject(filter)
    if limit <= 0:
        return []
    # The ring reads the time of the events the bus stamped or decoded; the others'
    # (given to the constructor) it asks of _event_ns.
    return ring.select_since(filter, _instant_ns(since), limit, newest, _event_ns)


def _event_ns(event: Event) -> int:
    return _instant_ns(event.timestamp or ZERO_TIME)


def _instant_ns(value: datetime) -> int:
    """Nanoseconds since the epoch, exact (a float would lose the nanoseconds); a naive
    datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    delta = value - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros * 1000 + getattr(value, "nanosecond", 0)


class MemoryHistory:
    """Retains recent events in memory, in a ring kept by Rust (which the bus's emit path
    pushes to directly). Thread-safe. Events are shared with the bus's subscribers, not
    copied (they are immutable).

    ``clock`` (ns since the epoch) decides ages; pass your own to test retention."""

    __slots__ = ("_ring",)

    wants_bytes = False

    def __init__(
        self,
        max_age: timedelta | None = DEFAULT_MAX_AGE,
        max_msgs: int = DEFAULT_MAX_MSGS,
        *,
        clock: _Clock = time.time_ns,
    ) -> None:
        max_age_ns = _checked_limits(max_age, max_msgs)
        # The system clock is read in Rust (the bus's stamp doubles as the store time).
        self._ring = HistoryRing(max_msgs, max_age_ns, None if clock is time.time_ns else clock)

    def append(self, subject: str, event: Event, data: bytes | None = None) -> None:
        self._ring.append(subject, event)

    def history(self, filter: str, limit: int = 50, *, newest: bool = False) -> list[Event]:
        validate_subject(filter)
        return self._ring.select(filter, limit, newest)

    def history_since(
        self, filter: str, since: datetime, limit: int = 50, *, newest: bool = False
    ) -> list[Event]:
        return _since(self._ring, filter, since, limit, newest)

    def stats(self) -> dict[str, int]:
        return {**self._ring.counters(), "undecodable": 0}

    def close(self) -> None:
        """Nothing to release."""

    def __len__(self) -> int:
        return len(self._ring)


class FileHistory:
    """Retains recent events in memory and journals them to ``path``, so a new
    ``FileHistory`` on the same path finds them again after a restart or a crash.

    Every append is one ``write`` of one complete line to a file opened for appending, so
    a killed process loses at most the line being written, which the next open finds torn
    and cuts off. ``sync=True`` also fsyncs each append, for events that must survive a
    power loss. Records that fail their checksum, or whose JSON is not an event, are
    skipped when the file is read and counted in :meth:`stats`. Once the dead prefix
    (records past ``max_age``/``max_msgs``) outweighs the live records, the live ones are
    copied to a new file that atomically replaces the old one. Until then dead records
    stay on file: reopening with larger bounds can bring some of them back.

    One ``FileHistory`` at a time may hold a path: a lock file ``<path>.lock`` keeps a
    second one, in any process, out (:class:`HistoryLockedError`). Thread-safe.
    """

    wants_bytes = True
    #: Compaction waits until the dead prefix is at least this large.
    COMPACT_MIN_BYTES = 64 * 1024

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_age: timedelta | None = DEFAULT_MAX_AGE,
        max_msgs: int = DEFAULT_MAX_MSGS,
        *,
        sync: bool = False,
        clock: _Clock = time.time_ns,
    ) -> None:
        self.path = os.fspath(path)
        # Records hold their journal offset as if the file had never been compacted.
        self._ring = HistoryRing(
            max_msgs, _checked_limits(max_age, max_msgs), None if clock is time.time_ns else clock
        )
        self._clock = clock
        self._sync = sync
        self._lock = threading.Lock()
        self._corrupt = 0
        self._undecodable = 0
        self._torn = 0
        self._compactions = 0
        # Records remember their position as if the file had never been compacted; the
        # bytes compaction removed are subtracted to find them in the current file.
        self._removed = 0
        self._lock_fd = _lock_file(self.path + ".lock")
        try:
            self._fd = self._open_journal()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._closed = False

    def _open_journal(self) -> int:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._compaction_path)  # left by a crash during compaction
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            buf = _read_all(fd)
            state = _journal.header_state(buf)
            if state == "foreign":
                raise HistoryFormatError(f"{self.path} is not a turnout history file")
            if state == "fresh":
                os.ftruncate(fd, 0)
                _write_all(fd, _journal.HEADER)
                os.fsync(fd)
                buf = _journal.HEADER
            found = _journal.scan(buf)
            if found.torn(len(buf)):
                self._torn += 1
                os.ftruncate(fd, found.end)  # the next line must not continue a torn one
            self._corrupt += found.corrupt
            self._size = found.end
            for record in found.records:
                try:
                    event = Event.from_json(record.payload)
                except EventDecodeError:
                    self._undecodable += 1
                    continue
                self._ring.append(record.subject, event, record.store_ns, record.offset)
            self._ring.expire(self._clock())
        except BaseException:
            os.close(fd)
            raise
        return fd

    @property
    def _compaction_path(self) -> str:
        return self.path + ".compact"

    def append(self, subject: str, event: Event, data: bytes | None = None) -> None:
        if not is_valid_literal(subject):
            validate_subject(subject, literal=True)  # raises, naming the broken rule
        payload = data if data is not None else event.to_json()
        with self._lock:
            if self._closed:
                raise ValueError(f"FileHistory {self.path} is closed")
            now = self._clock()
            line = _journal.encode_record(now, subject, payload)
            start = self._size
            try:
                _write_all(self._fd, line)
                if self._sync:
                    os.fsync(self._fd)
            except BaseException:
                # A partial line would swallow the next record: cut it off again.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, start)
                raise
            self._size = start + len(line)
            self._ring.append(subject, event, now, start + self._removed)
            self._compact_if_worthwhile()

    def _compact_if_worthwhile(self) -> None:
        first = self._ring.first_position()
        first_live = self._size if first is None else first - self._removed
        dead = first_live - len(_journal.HEADER)
        if dead < self.COMPACT_MIN_BYTES or dead < self._size - first_live:
            return
        live = os.pread(self._fd, self._size - first_live, first_live)
        tmp = os.open(self._compaction_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(tmp, _journal.HEADER + live)
            os.fsync(tmp)
        finally:
            os.close(tmp)
        os.replace(self._compaction_path, self.path)
        _sync_directory(os.path.dirname(os.path.abspath(self.path)))
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        self._removed += dead
        self._size = len(_journal.HEADER) + len(live)
        self._compactions += 1

    def history(self, filter: str, limit: int = 50, *, newest: bool = False) -> list[Event]:
        validate_subject(filter)
        return self._ring.select(filter, limit, newest)

    def history_since(
        self, filter: str, since: datetime, limit: int = 50, *, newest: bool = False
    ) -> list[Event]:
        return _since(self._ring, filter, since, limit, newest)

    def stats(self) -> dict[str, int]:
        """Retention counters plus ``corrupt`` (lines failing their checksum), ``torn``
        (torn last lines cut off), ``undecodable`` (intact lines that are no event),
        ``compactions`` and ``file_bytes``."""
        with self._lock:
            return {
                **self._ring.counters(),
                "undecodable": self._undecodable,
                "corrupt": self._corrupt,
                "torn": self._torn,
                "compactions": self._compactions,
                "file_bytes": self._size,
            }

    def close(self) -> None:
        """Closes the journal and releases the path; queries still answer from memory."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._fd)
            os.close(self._lock_fd)

    def __enter__(self) -> FileHistory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._ring)


def _lock_file(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if os.name == "posix":
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise HistoryLockedError(f"{path} is held by another FileHistory") from None
    return fd


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync_directory(path: str) -> None:
    """Makes a rename in ``path`` durable (POSIX); elsewhere there is nothing to sync."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
