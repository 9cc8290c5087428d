"""W7, logs: 1,000,000 entries through a ``LogForwarder``.

Cases, each on the same entries (1,000 distinct ones, cycled; one thread):

- ``log, end to end``: ``LogForwarder.log`` with the size flushes it triggers (frames of 100
  written in Rust and handed to a sink that drops them), then ``stop()``: entries/s.
- ``log, buffer only``: ``LogForwarder.log`` alone, no frame written while timing: the
  cost of taking an entry in, the buffer growing to the whole run; ``(steady)``: the
  buffer kept small, chunks of 1,000 logged (timed) then flushed (untimed).
- ``frames``: ``LogBatcher.take_frame`` emptying a buffer filled with the whole run:
  entries/s serialised into ``log_batch`` frames (the GIL released while writing);
  ``(steady)``: chunks of 1,000 offered (untimed) just before, as in use.
- ``reference`` beside the others: the obvious pure-Python forwarder (a locked list, dicts
  and ``orjson`` per batch), the baseline of the ratios.
- ``logging call``: ``logger.info(...)`` with an ``extra`` field, through a
  ``ForwardingHandler`` to a forwarder (``rust``), beside the same call through the
  standard library's ``logging.handlers.QueueHandler`` on a ``queue.SimpleQueue``
  (``queuehandler``) and through a plain-Python handler building the same entry for the
  pure-Python forwarder (``reference``): ns per call.

``turnout bench --workload W7`` runs it (through :func:`run`); ``TURNOUT_BENCH_QUICK=1``
selects the small scale of ``python -m turnout._bench.w7_logs``, which prints the figures
with the targets (log ≥ 1,000,000 entries/s, frames ≥ 2,000,000 entries/s, the handler no
dearer than ``QueueHandler``).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import logging.handlers
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson

from turnout._bench.implementations import Implementation
from turnout._bench.rates import CaseTable, Figure, Prepared, best_of, quick_mode, render, run_cases
from turnout._bench.report import ResultRow
from turnout._bench.workloads import Scale, StepReporter
from turnout._core import LogBatcher
from turnout._message_ids import new_message_id
from turnout._wire import format_time
from turnout.logs import ForwardingHandler, LogEntry, LogForwarder, LogLevel

__all__ = [
    "CASES",
    "FULL",
    "LOGGING_CALL",
    "QUICK",
    "SELF_TIMED",
    "W7Scale",
    "cases",
    "main",
    "operations_of",
    "prepare_buffer_only",
    "prepare_buffer_only_steady",
    "prepare_end_to_end",
    "prepare_frames",
    "prepare_frames_steady",
    "prepare_logging_call",
    "prepare_python_buffer_only",
    "prepare_python_end_to_end",
    "prepare_python_frames",
    "prepare_python_logging_call",
    "run",
    "run_all",
    "sample_entries",
]

LOG_TARGET_PER_S = 1_000_000.0
FRAMES_TARGET_PER_S = 2_000_000.0
BATCH = 100
CHUNK = 1_000


@dataclass(frozen=True)
class W7Scale:
    name: str
    entries: int
    logging_calls: int


QUICK = W7Scale("quick", entries=20_000, logging_calls=5_000)
FULL = W7Scale("full", entries=1_000_000, logging_calls=200_000)


def sample_entries(count: int) -> list[LogEntry]:
    """``count`` entries: 1,000 distinct ones (levels, ids, some with fields), cycled."""
    levels = list(LogLevel)
    distinct = [
        LogEntry(
            None,
            levels[n % len(levels)],
            f"request {n} handled in {n % 97} ms",
            trace_id=f"trace-{n:04d}",
            workflow_id=f"wf-{n % 50:03d}",
            action_id="" if n % 3 else f"act-{n % 7}",
            fields={"attempt": n % 4, "path": "/v1/items"} if n % 10 == 0 else None,
            source_file="service/handler.py",
            source_line=100 + n % 50,
        )
        for n in range(1_000)
    ]
    return list(itertools.islice(itertools.cycle(distinct), count))


def _discard(frame: bytes) -> None:
    pass


def _expect(what: str, got: int, wanted: int) -> None:
    if got != wanted:
        raise AssertionError(f"{what}: {got} entries, expected {wanted}")


def prepare_end_to_end(scale: W7Scale) -> Prepared:
    entries = sample_entries(scale.entries)
    forwarder = LogForwarder(_discard, BATCH, flush_interval=None, capacity=2 * BATCH)

    def run() -> int:
        deque(map(forwarder.log, entries), maxlen=0)
        forwarder.stop()
        return len(entries)

    def check() -> None:
        stats = forwarder.stats()
        _expect("log, end to end", stats["sent"], len(entries))

    return Prepared(run, check)


def prepare_buffer_only(scale: W7Scale) -> Prepared:
    """``log`` alone into a forwarder whose batch is larger than the run: no frame is
    written, and the buffer grows to the whole run."""
    entries = sample_entries(scale.entries)
    forwarder = LogForwarder(_discard, len(entries) + 1, None, capacity=len(entries) + 1)

    def run() -> int:
        deque(map(forwarder.log, entries), maxlen=0)
        return len(entries)

    def check() -> None:
        _expect("log, buffer only", forwarder.stats()["pending"], len(entries))
        forwarder.stop()

    return Prepared(run, check)


def prepare_buffer_only_steady(scale: W7Scale) -> Prepared:
    """``log`` alone, the buffer kept small as in use: chunks of 1,000 entries logged
    (timed), each chunk then flushed (untimed). Times itself."""
    entries = sample_entries(scale.entries)
    chunks = [entries[at : at + CHUNK] for at in range(0, len(entries), CHUNK)]
    forwarder = LogForwarder(_discard, CHUNK + 1, None, capacity=CHUNK + 1)
    timed = [0.0]

    def run() -> int:
        log, clock = forwarder.log, time.perf_counter
        for chunk in chunks:
            start = clock()
            deque(map(log, chunk), maxlen=0)
            timed[0] += clock() - start
            forwarder.flush()
        return len(entries)

    def check() -> None:
        _expect("log, buffer only (steady)", forwarder.stats()["sent"], len(entries))
        forwarder.stop()

    return Prepared(run, check, lambda: timed[0])


def prepare_frames(scale: W7Scale) -> Prepared:
    """``take_frame`` until a buffer filled with the whole run (untimed) is empty."""
    batcher = LogBatcher(BATCH, capacity=scale.entries)
    deque(map(batcher.offer, sample_entries(scale.entries)), maxlen=0)
    frames: list[bytes] = []

    def run() -> int:
        take = batcher.take_frame
        while (frame := take(new_message_id())) is not None:
            frames.append(frame)
        return scale.entries

    def check() -> None:
        _expect("frames", len(frames) * BATCH, scale.entries)
        _expect("frames (last)", len(orjson.loads(frames[-1])["payload"]["logs"]), BATCH)

    return Prepared(run, check)


def prepare_frames_steady(scale: W7Scale) -> Prepared:
    """``take_frame`` as a forwarder uses it, soon after the entries came in: chunks of
    1,000 offered (untimed), then written as frames of 100 (timed). Times itself."""
    entries = sample_entries(scale.entries)
    chunks = [entries[at : at + CHUNK] for at in range(0, len(entries), CHUNK)]
    batcher = LogBatcher(BATCH, capacity=CHUNK)
    taken = [0]
    timed = [0.0]

    def run() -> int:
        take, clock = batcher.take_frame, time.perf_counter
        for chunk in chunks:
            deque(map(batcher.offer, chunk), maxlen=0)
            start = clock()
            while take(new_message_id()) is not None:
                taken[0] += 1
            timed[0] += clock() - start
        return len(entries)

    return Prepared(
        run, lambda: _expect("frames (steady)", taken[0] * BATCH, len(entries)), lambda: timed[0]
    )


class _PythonForwarder:
    """The baseline: what a batching forwarder is in plain Python. Entries are stamped as
    they come, kept in a locked list, and written per batch as dicts through orjson."""

    def __init__(self, send: Callable[[bytes], object], batch: int) -> None:
        self._send = send
        self._batch = batch
        self._lock = threading.Lock()
        self._buffer: list[tuple[int, LogEntry]] = []

    def log(self, entry: LogEntry) -> None:
        with self._lock:
            self._buffer.append((time.time_ns(), entry))
            if len(self._buffer) < self._batch:
                return
            batch, self._buffer = self._buffer, []
        self._send(python_frame(batch))

    def stop(self) -> None:
        with self._lock:
            batch, self._buffer = self._buffer, []
        if batch:
            self._send(python_frame(batch))


# The entry's fields left out when empty, from its one definition (the others, level,
# message and timestamp, are always written).
_OPTIONAL_FIELDS = tuple(
    f.name for f in dataclasses.fields(LogEntry) if f.name not in ("level", "message", "timestamp")
)


def python_frame(batch: list[tuple[int, LogEntry]]) -> bytes:
    logs = []
    for stamp, entry in batch:
        item: dict[str, object] = {
            "level": str(entry.level),
            "message": entry.message,
            "timestamp": _time_text(stamp)
            if entry.timestamp is None
            else format_time(entry.timestamp),
        }
        for key in _OPTIONAL_FIELDS:
            value = getattr(entry, key)
            if value:
                item[key] = value
        logs.append(item)
    message = {
        "id": new_message_id(),
        "type": "log_batch",
        "timestamp": _time_text(time.time_ns()),
        "payload": orjson.Fragment(orjson.dumps({"logs": logs}, option=orjson.OPT_SORT_KEYS)),
    }
    return orjson.dumps(message)


def _time_text(nanos: int) -> str:
    seconds, below = divmod(nanos, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, timezone.utc)
    return format_time(stamp.replace(microsecond=below // 1000))


def prepare_python_end_to_end(scale: W7Scale) -> Prepared:
    entries = sample_entries(scale.entries)
    sent: list[int] = []
    forwarder = _PythonForwarder(lambda frame: sent.append(len(frame)), BATCH)

    def run() -> int:
        deque(map(forwarder.log, entries), maxlen=0)
        forwarder.stop()
        return len(entries)

    return Prepared(run, lambda: _expect("python end to end", len(sent) * BATCH, len(entries)))


def prepare_python_buffer_only(scale: W7Scale) -> Prepared:
    entries = sample_entries(scale.entries)
    forwarder = _PythonForwarder(_discard, len(entries) + 1)

    def run() -> int:
        deque(map(forwarder.log, entries), maxlen=0)
        return len(entries)

    def check() -> None:
        _expect("python buffer only", len(forwarder._buffer), len(entries))

    return Prepared(run, check)


def prepare_python_frames(scale: W7Scale) -> Prepared:
    now = time.time_ns()
    stamped = [(now, entry) for entry in sample_entries(scale.entries)]
    batches = [stamped[at : at + BATCH] for at in range(0, len(stamped), BATCH)]
    frames: list[bytes] = []

    def run() -> int:
        frames.extend(map(python_frame, batches))
        return scale.entries

    return Prepared(run, lambda: _expect("python frames", len(frames) * BATCH, scale.entries))


# Every attribute the logging machinery puts on a record; the rest came from `extra`.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", (), None).__dict__
) | {"message", "asctime", "taskName"}
_LEVELS = {
    logging.DEBUG: LogLevel.DEBUG,
    logging.INFO: LogLevel.INFO,
    logging.WARNING: LogLevel.WARN,
    logging.ERROR: LogLevel.ERROR,
    logging.CRITICAL: LogLevel.FATAL,
}


class _PythonHandler(logging.Handler):
    """The baseline handler: the same entry as ``ForwardingHandler`` builds (level mapped,
    ``workflow_id`` lifted, other extras as fields, source file and line), written plainly."""

    def __init__(self, forwarder: _PythonForwarder) -> None:
        super().__init__()
        self._forwarder = forwarder

    def emit(self, record: logging.LogRecord) -> None:
        extras = {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRIBUTES}
        workflow_id = extras.pop("workflow_id", "")
        self._forwarder.log(
            LogEntry(
                None,
                _LEVELS.get(record.levelno, LogLevel.INFO),
                record.getMessage(),
                workflow_id=workflow_id if isinstance(workflow_id, str) else "",
                fields=extras or None,
                source_file=record.pathname,
                source_line=record.lineno,
            )
        )


def prepare_logging_call(scale: W7Scale, handler_kind: str) -> Prepared:
    """``logger.info`` with one ``extra`` through ``handler_kind``: ``forwarding``,
    ``queue`` or ``python``."""
    logger = logging.Logger(f"turnout.bench.w7.{handler_kind}", logging.INFO)
    logger.propagate = False
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    forwarder = LogForwarder(_discard, BATCH, flush_interval=None, capacity=2 * BATCH)
    frames: list[int] = []
    plain = _PythonForwarder(lambda frame: frames.append(len(frame)), BATCH)
    handler: logging.Handler
    if handler_kind == "forwarding":
        handler = ForwardingHandler(forwarder)
    elif handler_kind == "python":
        handler = _PythonHandler(plain)
    else:
        handler = logging.handlers.QueueHandler(records)
    logger.addHandler(handler)
    extra = {"workflow_id": "wf-042"}
    calls = scale.logging_calls

    def run() -> int:
        info = logger.info
        for n in range(calls):
            info("request %d handled", n, extra=extra)
        return calls

    def check() -> None:
        forwarder.stop()
        plain.stop()
        got = {
            "forwarding": forwarder.stats()["sent"],
            "python": len(frames) * BATCH,
            "queue": records.qsize(),
        }[handler_kind]
        _expect(f"logging call ({handler_kind})", got, calls)

    return Prepared(run, check)


def prepare_python_logging_call(scale: W7Scale) -> Prepared:
    return prepare_logging_call(scale, "python")


LOGGING_CALL = "logging call"

CASES: dict[str, dict[str, Callable[[W7Scale], Prepared]]] = {
    "log, end to end": {"rust": prepare_end_to_end, "reference": prepare_python_end_to_end},
    "log, buffer only": {"rust": prepare_buffer_only, "reference": prepare_python_buffer_only},
    "log, buffer only (steady)": {"rust": prepare_buffer_only_steady},
    "frames": {"rust": prepare_frames, "reference": prepare_python_frames},
    "frames (steady)": {"rust": prepare_frames_steady},
    LOGGING_CALL: {
        "rust": functools.partial(prepare_logging_call, handler_kind="forwarding"),
        "reference": prepare_python_logging_call,
        "queuehandler": functools.partial(prepare_logging_call, handler_kind="queue"),
    },
}
"""Case -> implementation (``turnout bench``'s names) -> what prepares one run."""

SELF_TIMED = frozenset({"log, buffer only (steady)", "frames (steady)"})
"""Cases that time only part of each run, which a harness timing whole runs cannot."""


def operations_of(scale: W7Scale, case: str) -> int:
    """Operations in one run of ``case``: log calls, or entries."""
    return scale.logging_calls if case == LOGGING_CALL else scale.entries


def cases(scale: W7Scale) -> CaseTable:
    """:data:`CASES` at ``scale``."""
    return {
        case: {name: functools.partial(prepare, scale) for name, prepare in prepares.items()}
        for case, prepares in CASES.items()
    }


def run(implementation: Implementation, scale: Scale, step: StepReporter) -> list[ResultRow]:
    """``turnout bench``'s W7 rows for one implementation."""
    w7 = QUICK if scale.name == "quick" else FULL
    return run_cases("W7", cases(w7), implementation.name, scale, step)


def run_all(scale: W7Scale, repeats: int = 3) -> list[Figure]:
    """Every case and implementation, best of ``repeats``."""
    return [
        best_of(case, name, prepare, repeats)
        for case, prepares in cases(scale).items()
        for name, prepare in prepares.items()
    ]


def main() -> None:
    scale = QUICK if quick_mode() else FULL
    figures = run_all(scale, repeats=1 if quick_mode() else 3)
    print(f"W7 logs, {scale.name}: {scale.entries:,} entries, {scale.logging_calls:,} log calls")
    print(render(figures, baseline="reference"))
    rate = {(f.case, f.implementation): f for f in figures}
    handler = rate[LOGGING_CALL, "rust"].ns_per_op
    queued = rate[LOGGING_CALL, "queuehandler"].ns_per_op
    print(
        f"targets: log {rate['log, end to end', 'rust'].ops_per_s:,.0f}/s end to end, "
        f"{rate['log, buffer only (steady)', 'rust'].ops_per_s:,.0f}/s buffer only "
        f"(>= {LOG_TARGET_PER_S:,.0f}); frames "
        f"{rate['frames (steady)', 'rust'].ops_per_s:,.0f}/s steady, "
        f"{rate['frames', 'rust'].ops_per_s:,.0f}/s from a backlog "
        f"(>= {FRAMES_TARGET_PER_S:,.0f}); logging call {handler:.0f} ns via ForwardingHandler, "
        f"{queued:.0f} ns via QueueHandler ({handler / queued:.2f}x)"
    )


if __name__ == "__main__":
    main()
