"""Log forwarding to a coordination hub: the when-v3 coordinator's ``LogEntry``,
``LogForwarder`` and logrus hook, for Python.

:class:`LogEntry` is the wire record, defined with the other wire types in
:mod:`turnout.protocol` and importable from here. Its JSON (``to_json``) has Go's struct order, with
``timestamp``, ``level`` and ``message`` always present and every other key left out when
empty; inside a message payload (``to_payload``) the same keys come sorted, as Go's map
round trip leaves them. An unset timestamp is written as Go's zero time; the forwarder and
the Rust frame writers stamp unset timestamps with the time they take the entry.

:class:`LogForwarder` batches entries into ``log_batch`` frames. The buffer and the frame
writer are Rust's (:class:`turnout._core.LogBatcher`): an entry is converted to Rust values
as it is logged, and frames are written with the GIL released. Flushes happen when a full
batch is waiting (on the logging thread), every ``flush_interval`` seconds (on a daemon
thread), on :meth:`LogForwarder.flush` and on :meth:`LogForwarder.stop`.

:class:`ForwardingHandler` is a :class:`logging.Handler` that turns records into entries for
a forwarder (or anything with a ``log(entry)`` method, such as a coordinator client).
"""

from __future__ import annotations

import logging
import threading
import traceback
import weakref
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, Literal, Protocol

import orjson

from turnout._core import LogBatcher
from turnout._message_ids import new_message_id
from turnout.protocol import LogEntry, LogLevel

__all__ = [
    "ForwardingHandler",
    "LogEntry",
    "LogForwarder",
    "LogLevel",
    "LogTarget",
    "Overflow",
]


class LogTarget(Protocol):
    """Where :class:`ForwardingHandler` puts entries: a :class:`LogForwarder`, or anything
    else with this method."""

    def log(self, entry: LogEntry) -> None: ...


Overflow = Literal["drop_oldest", "drop_newest"]


class LogForwarder:
    """Batches log entries into ``log_batch`` frames and hands each frame (``bytes``, one
    complete message) to ``send``.

    **Batches.** Up to ``buffer_size`` entries per frame. A frame goes out when a full
    batch is waiting, every ``flush_interval`` seconds (``None``: no timer), on
    :meth:`flush` and on :meth:`stop`.

    **Bound.** At most ``capacity`` entries wait. Past that, ``overflow`` decides:
    ``"drop_oldest"`` (default: keep the newest logs) or ``"drop_newest"``; either way
    every dropped entry is counted. :meth:`log` never blocks, whatever the sink does.

    **Threads.** :meth:`log` may be called from any number of threads. ``send`` is called
    by one thread at a time, frames in the order they were built: on a size flush by the
    logging thread that found a full batch (if another thread is already sending, that
    thread sends this batch too, and the logging thread returns at once), on the interval
    by the flusher thread, else by the thread calling :meth:`flush` or :meth:`stop`. No
    lock that :meth:`log` waits on is held while ``send`` runs, so ``send`` may itself log
    through this forwarder; a slow ``send`` delays only the thread running it, while the
    buffer absorbs what others log and applies the overflow policy when full.

    **Send errors.** A ``send`` that raises loses its frame: the entries in it are counted
    as dropped, the call in ``send_errors``, and the exception is kept in
    :attr:`last_send_error`; forwarding goes on with the next frame. A ``BaseException``
    that is not an ``Exception`` (``asyncio.CancelledError``, ``KeyboardInterrupt``) is
    counted the same way, then raised again to the caller of :meth:`log`, :meth:`flush`
    or :meth:`stop`; what it left buffered stays ``pending``. Retrying would resend
    frames the sink may have half taken, and hold memory for a sink that is gone; the
    coordinator's own send queue is where retrying over a reconnect belongs.

    **Stop.** :meth:`stop` ends the timer and sends everything buffered; calling it again
    is harmless. Entries logged after it are still sent: each call flushes at once, as no
    timer is left to do it.

    **Odd input.** An entry is never lost to what it holds: each lone surrogate in its
    text (a path from ``os.fsdecode``, say) is replaced by U+FFFD, and ``fields`` that
    JSON cannot carry as given (a cycle, more than 254 levels, a lone surrogate, a key
    that is not a ``str``) are written from a repaired copy: containers deeper than 32
    levels, or past 10,000 values in all, become the string ``"[cut]"``, keys become
    their ``str``. Such entries are counted in ``repaired``.

    ``stats()`` counts entries: ``accepted`` (every entry given to :meth:`log`), ``sent``,
    ``dropped`` (overflow and send errors), ``pending``; accepted = sent + dropped +
    pending once logging pauses. ``repaired`` counts the accepted entries that were
    repaired as above.
    """

    __slots__ = (
        "__weakref__",
        "_batch_size",
        "_batcher",
        "_failed",
        "_flusher",
        "_frames",
        "_last_error",
        "_offer",
        "_offer_fields",
        "_overflow",
        "_send",
        "_send_errors",
        "_sender",
        "_sending",
        "_sent",
        "_stop_event",
        "_stopped",
    )

    def __init__(
        self,
        send: Callable[[bytes], object],
        buffer_size: int = 100,
        flush_interval: float | None = 5.0,
        capacity: int = 10_000,
        overflow: Overflow = "drop_oldest",
    ) -> None:
        if flush_interval is not None and not flush_interval > 0:
            raise ValueError(f"flush_interval must be positive or None, not {flush_interval!r}")
        if capacity < buffer_size:
            raise ValueError(f"capacity ({capacity}) must hold one batch ({buffer_size})")
        self._batcher = LogBatcher(buffer_size, capacity, overflow)
        self._offer = self._batcher.offer
        self._offer_fields = self._batcher.offer_fields
        self._batch_size = buffer_size
        self._overflow = overflow
        self._send = send
        # Held by the one thread handing frames to `send`; loggers only ever try it.
        self._sending = threading.Lock()
        self._sender: int | None = None
        self._stopped = False
        # Written only by the thread holding `_sending`.
        self._sent = 0
        self._frames = 0
        self._failed = 0
        self._send_errors = 0
        self._last_error: BaseException | None = None
        self._stop_event = threading.Event()
        self._flusher: threading.Thread | None = None
        if flush_interval is not None:
            self._flusher = threading.Thread(
                target=_flush_periodically,
                args=(weakref.ref(self), self._stop_event, flush_interval),
                name="turnout-log-flusher",
                daemon=True,
            )
            # Collected without stop(): the thread ends at its next tick.
            weakref.finalize(self, self._stop_event.set)
            self._flusher.start()

    def log(self, entry: LogEntry) -> None:
        """Buffers ``entry`` (stamping it now if it has no timestamp); sends the full
        batches waiting, unless another thread is already sending. ``ValueError`` for an
        unknown level, ``TypeError`` for a field of the wrong type."""
        if self._offer(entry):
            self._send_full_batches()
        if self._stopped:
            self.flush()

    def _log_fields(self, *fields: Any) -> None:
        """:meth:`log` for an entry given as ``LogBatcher.offer_fields`` takes it, stamped
        now: how :class:`ForwardingHandler` logs, building no :class:`LogEntry`."""
        if self._offer_fields(*fields):
            self._send_full_batches()
        if self._stopped:
            self.flush()

    def flush(self) -> None:
        """Sends everything buffered when called, in frames of up to ``buffer_size``.
        Waits for a send under way on another thread. Called from inside ``send`` it
        returns at once: the loop that called ``send`` goes on with the full batches, and
        a partial one waits for the next flush."""
        me = threading.get_ident()
        if self._sender == me:
            return
        with self._sending:
            self._sender = me
            try:
                remaining = self._batcher.pending
                # Bounded by what was there, so a flood of new entries cannot keep it
                # here; after stop() everything goes.
                while remaining > 0 or self._stopped:
                    full = self._batcher.batch_ready
                    frame = self._batcher.take_frame(new_message_id())
                    if frame is None:
                        break
                    # Only this thread takes: a full batch seen before the take is what
                    # the take got. A partial one may have grown, so it is counted.
                    count = self._batch_size if full else _entries_in(frame)
                    remaining -= count
                    self._deliver(frame, count)
            finally:
                self._sender = None

    def stop(self) -> None:
        """Stops the interval timer and sends everything buffered (idempotent)."""
        self._stopped = True
        self._stop_event.set()
        flusher = self._flusher
        if (
            flusher is not None
            and flusher is not threading.current_thread()
            and self._sender != threading.get_ident()  # the flusher may be waiting on us
        ):
            flusher.join()
        self.flush()

    def __enter__(self) -> LogForwarder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def last_send_error(self) -> BaseException | None:
        """The exception the last failing ``send`` raised."""
        return self._last_error

    def stats(self) -> dict[str, int]:
        """Entry counts (see the class docstring) and ``frames`` sent, ``send_errors``."""
        batcher = self._batcher
        overflowed = batcher.dropped
        accepted = batcher.accepted
        if self._overflow == "drop_newest":
            accepted += overflowed  # refused entries never entered the buffer
        return {
            "accepted": accepted,
            "sent": self._sent,
            "dropped": overflowed + self._failed,
            "pending": batcher.pending,
            "repaired": batcher.repaired,
            "frames": self._frames,
            "send_errors": self._send_errors,
        }

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"LogForwarder(buffer_size={self._batch_size}, pending={s['pending']}, "
            f"sent={s['sent']}, dropped={s['dropped']}, stopped={self._stopped})"
        )

    def _send_full_batches(self) -> None:
        batcher = self._batcher
        while self._sending.acquire(blocking=False):
            try:
                self._sender = threading.get_ident()
                while batcher.batch_ready:
                    frame = batcher.take_frame(new_message_id())
                    if frame is None:
                        break
                    self._deliver(frame, self._batch_size)
            finally:
                self._sender = None
                self._sending.release()
            # A batch that filled after the last look but before the release found the
            # lock taken: look again rather than strand it.
            if not batcher.batch_ready:
                return

    def _deliver(self, frame: bytes, count: int) -> None:
        try:
            self._send(frame)
        except BaseException as exc:
            # Counted whatever was raised; a cancellation or an interrupt still goes up.
            self._send_errors += 1
            self._failed += count
            self._last_error = exc
            if not isinstance(exc, Exception):
                raise
        else:
            self._sent += count
            self._frames += 1


def _entries_in(frame: bytes) -> int:
    """The entries in a ``log_batch`` frame (read only for partial batches, which are rare:
    a few per flush interval)."""
    logs = orjson.loads(frame)["payload"]["logs"]
    return len(logs) if isinstance(logs, list) else 0


def _flush_periodically(
    forwarder_ref: weakref.ref[LogForwarder], stop: threading.Event, interval: float
) -> None:
    # Holds the forwarder only while flushing, so an abandoned forwarder can be collected
    # (its finalizer sets `stop`).
    while not stop.wait(interval):
        forwarder = forwarder_ref()
        if forwarder is None:
            return
        forwarder.flush()
        del forwarder


# --- logging integration -------------------------------------------------------------------

_LEVEL_OF_NUMBER = {
    logging.DEBUG: LogLevel.DEBUG,
    logging.INFO: LogLevel.INFO,
    logging.WARNING: LogLevel.WARN,
    logging.ERROR: LogLevel.ERROR,
    logging.CRITICAL: LogLevel.FATAL,
}


_LEVELS_DESCENDING = sorted(_LEVEL_OF_NUMBER.items(), reverse=True)


def _level_of(levelno: int) -> LogLevel:
    """A custom level maps to the highest standard level it reaches (below DEBUG: debug)."""
    for threshold, level in _LEVELS_DESCENDING:
        if levelno >= threshold:
            return level
    return LogLevel.DEBUG


# Every attribute the logging machinery puts on a record; anything else came from `extra`.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", (), None).__dict__
) | {"message", "asctime", "taskName"}
_PLAIN_RECORD_SIZE = len(logging.LogRecord("", logging.INFO, "", 0, "", (), None).__dict__)

# The typed entry field an `extra` key fills (when its value is a string), and the rank of
# its spelling: when several spellings of one field are given, the lowest rank fills it.
_ID_SPELLINGS = {
    spelling: (name, rank)
    for name, camel in (
        ("trace_id", "trace"),
        ("span_id", "span"),
        ("workflow_id", "workflow"),
        ("action_id", "action"),
        ("correlation_id", "correlation"),
    )
    for rank, spelling in enumerate((name, camel + "Id", camel + "ID"))
}

_FALLBACK_FORMATTER = logging.Formatter()


class ForwardingHandler(logging.Handler):
    """A :class:`logging.Handler` that forwards records as :class:`LogEntry` objects to
    ``target.log`` (a :class:`LogForwarder`, or anything with that method).

    - Levels: DEBUG → debug, INFO → info, WARNING → warn, ERROR → error, CRITICAL → fatal;
      a custom level takes the highest of those it reaches.
    - ``message`` is ``record.getMessage()`` (the handler's formatter is not applied: the
      structure goes in the other fields); ``source_file`` and ``source_line`` are the
      record's ``pathname`` and ``lineno``.
    - ``extra`` keys ``trace_id``, ``span_id``, ``workflow_id``, ``action_id`` and
      ``correlation_id`` (also spelled ``traceId``/``traceID`` and so on) fill those fields
      when their value is a string; when several spellings of one field are given, the
      snake_case one wins, then ``traceId`` over ``traceID``, and the others go to
      ``fields``. Every other extra goes to ``fields`` as given (in frames, values JSON
      cannot carry are written with ``str``, NaN and infinities as null).
    - An exception (``exc_info``) adds ``fields["error"]`` (its one-line summary) and
      ``fields["exception"]`` (the formatted traceback); ``stack_info`` adds
      ``fields["stack"]``.
    - Odd input (lone surrogates, cyclic or very deep extras) never loses the record: a
      :class:`LogForwarder` repairs the entry and counts it (see its "Odd input").
    - The timestamp is left for the target to stamp: a forwarder does it as it takes the
      entry, on this same thread, so building a ``datetime`` per record is saved.
    """

    def __init__(self, target: LogTarget, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.target = target
        self._log = target.log
        # A forwarder takes the fields as they are: no LogEntry is built per record. Not a
        # subclass, whose own `log` must see every entry.
        self._log_fields = target._log_fields if type(target) is LogForwarder else None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            attributes = record.__dict__
            extras = (
                attributes.keys() - _RECORD_ATTRIBUTES
                if len(attributes) > _PLAIN_RECORD_SIZE
                else None
            )
            if extras:
                trace, span, workflow, action, correlation, fields = _split_extras(
                    attributes, extras
                )
            else:
                trace = span = workflow = action = correlation = ""
                fields = None
            if record.exc_info or record.stack_info:
                fields = self._add_exception(record, fields)
            parts = (
                _LEVEL_OF_NUMBER.get(record.levelno) or _level_of(record.levelno),
                record.getMessage(),
                trace,
                span,
                workflow,
                action,
                correlation,
                fields,
                record.pathname,
                record.lineno,
            )
            if self._log_fields is not None:
                self._log_fields(*parts)
            else:
                self._log(LogEntry(None, *parts))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _add_exception(
        self, record: logging.LogRecord, fields: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        formatter = self.formatter or _FALLBACK_FORMATTER
        exc_info = record.exc_info
        if exc_info and exc_info[1] is not None:
            fields = {} if fields is None else fields
            summary = traceback.format_exception_only(exc_info[0], exc_info[1])
            fields["error"] = "".join(summary).strip()
            fields["exception"] = record.exc_text or formatter.formatException(exc_info)
        if record.stack_info:
            fields = {} if fields is None else fields
            fields["stack"] = formatter.formatStack(record.stack_info)
        return fields


def _split_extras(
    attributes: Mapping[str, Any], extras: AbstractSet[str]
) -> tuple[str, str, str, str, str, dict[str, Any] | None]:
    """A record's extra attributes as (trace_id, span_id, workflow_id, action_id,
    correlation_id, fields); the outcome does not depend on the order of ``extras``."""
    ids: dict[str, str] = {}
    filled_by: dict[str, tuple[int, str]] = {}  # typed field -> (rank, extra key) filling it
    fields: dict[str, Any] = {}
    for key in extras:
        value = attributes[key]
        spelling = _ID_SPELLINGS.get(key)
        if spelling is None or not isinstance(value, str):
            fields[key] = value
            continue
        name, rank = spelling
        earlier = filled_by.get(name)
        if earlier is None or rank < earlier[0]:
            if earlier is not None:  # outranked: the earlier spelling becomes a field
                fields[earlier[1]] = ids[name]
            filled_by[name] = (rank, key)
            ids[name] = value
        else:
            fields[key] = value
    return (
        ids.get("trace_id", ""),
        ids.get("span_id", ""),
        ids.get("workflow_id", ""),
        ids.get("action_id", ""),
        ids.get("correlation_id", ""),
        fields or None,
    )
