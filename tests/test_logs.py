"""Log entries, the batching LogForwarder (on the Rust LogBatcher) and the logging handler.

Every wait on another thread is bounded (an Event or a join with a timeout), and nothing
asserts on how long something took."""

from __future__ import annotations

import gc
import itertools
import logging
import random
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from turnout._core import LogBatcher
from turnout._go_json import dumps_map, go_escape
from turnout._wire import ZERO_TIME, parse_time
from turnout.logs import ForwardingHandler, LogEntry, LogForwarder, LogLevel, Overflow
from turnout.logs import _split_extras as split_extras
from turnout.protocol import (
    MESSAGE_ID_PATTERN,
    LogBatchPayload,
    MessageType,
    ProtocolError,
    WSMessage,
)

WAIT = 30.0  # seconds: only ever an upper bound on a wait that normally ends at once
STAMP = parse_time("2024-05-01T12:00:00.123456789Z")


def entry(n: int | str, **fields: Any) -> LogEntry:
    return LogEntry(None, LogLevel.INFO, str(n), **fields)


def entries_of(frames: list[bytes]) -> list[LogEntry]:
    """Every entry in the frames, in order (checking each frame is a log_batch message)."""
    found: list[LogEntry] = []
    for frame in frames:
        message = WSMessage.parse(frame)
        assert message.type is MessageType.LOG_BATCH
        assert MESSAGE_ID_PATTERN.fullmatch(message.id)
        found.extend(message.payload_as(LogBatchPayload).logs)
    return found


def messages_of(frames: list[bytes]) -> list[str]:
    return [e.message for e in entries_of(frames)]


def run_at_once(work: Callable[[int], None], count: int) -> None:
    """Runs ``work(0)`` .. ``work(count - 1)`` on threads released together; the joins are
    bounded, and a thread still running fails the test."""
    start = threading.Barrier(count)

    def begin(t: int) -> None:
        start.wait(WAIT)
        work(t)

    threads = [threading.Thread(target=begin, args=(t,)) for t in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)


def assert_all_in_order(messages: list[str], threads: int, per_thread: int) -> None:
    """Messages ``"<thread>:<n>"``: every one there once, each thread's in its order."""
    seen = [tuple(map(int, m.split(":"))) for m in messages]
    assert len(seen) == len(set(seen)) == threads * per_thread
    for t in range(threads):
        assert [n for who, n in seen if who == t] == list(range(per_thread))


@pytest.fixture
def forwarders() -> Iterator[Callable[..., LogForwarder]]:
    """Makes forwarders and stops them all at the end of the test."""
    made: list[LogForwarder] = []

    def make(*args: Any, **kwargs: Any) -> LogForwarder:
        forwarder = LogForwarder(*args, **kwargs)
        made.append(forwarder)
        return forwarder

    yield make
    for forwarder in made:
        forwarder.stop()


# --- LogEntry ---------------------------------------------------------------------------------


def test_entry_json_has_go_struct_order_and_omits_empty_fields() -> None:
    full = LogEntry(
        STAMP,
        LogLevel.ERROR,
        "disk <full>",
        trace_id="t1",
        span_id="s1",
        workflow_id="wf-1",
        action_id="a1",
        correlation_id="c1",
        fields={"z": 1.0, "a": [0.5, None]},
        source_file="main.py",
        source_line=42,
    )
    assert full.to_json() == (
        b'{"timestamp":"2024-05-01T12:00:00.123456789Z","level":"error",'
        b'"message":"disk \\u003cfull\\u003e","trace_id":"t1","span_id":"s1",'
        b'"workflow_id":"wf-1","action_id":"a1","correlation_id":"c1",'
        b'"fields":{"a":[0.5,null],"z":1},"source_file":"main.py","source_line":42}'
    )
    assert LogEntry(STAMP, "info", "").to_json() == (
        b'{"timestamp":"2024-05-01T12:00:00.123456789Z","level":"info","message":""}'
    )
    # Unset: Go's zero time, as the struct would marshal.
    assert LogEntry(level="debug", message="x", fields={}).to_json() == (
        b'{"timestamp":"0001-01-01T00:00:00Z","level":"debug","message":"x"}'
    )


def test_entry_json_round_trips_and_refuses_garbage() -> None:
    original = LogEntry(STAMP, LogLevel.WARN, "m", workflow_id="wf", fields={"k": "v"})
    assert LogEntry.from_json(original.to_json()) == original
    assert LogEntry.from_json(b'{"level":"trace"}') == LogEntry(ZERO_TIME, "trace", "")
    for bad in (b"nope", b"[]", b'{"source_line":"3"}', b'{"timestamp":"soon"}'):
        with pytest.raises(ProtocolError):
            LogEntry.from_json(bad)


def test_python_and_rust_write_the_same_payload() -> None:
    cases = [
        LogEntry(STAMP, "info", "plain"),
        LogEntry(STAMP, LogLevel.FATAL, 'a<b>&c\u2028\n"q"', workflow_id="wf", source_line=-3),
        LogEntry(
            parse_time("2024-05-01T14:00:00.5+02:00"),
            "warn",
            "with everything",
            "t",
            "s",
            "w",
            "a",
            "c",
            {"b": [1, "two", None, True], "a": {"nested": "yes"}},
            "f.py",
            7,
        ),
    ]
    for case in cases:
        python = go_escape(dumps_map(case.to_payload()))
        assert python == LogBatcher.payload_json(case)


def test_levels_are_the_five_go_levels() -> None:
    assert [level.value for level in LogLevel] == ["debug", "info", "warn", "error", "fatal"]
    assert str(LogLevel.WARN) == "warn"


# --- LogForwarder: when it flushes ------------------------------------------------------------


def test_flushes_full_batches_on_the_logging_thread(
    forwarders: Callable[..., LogForwarder],
) -> None:
    frames: list[bytes] = []
    threads: list[str] = []

    def sink(frame: bytes) -> None:
        frames.append(frame)
        threads.append(threading.current_thread().name)

    forwarder = forwarders(sink, buffer_size=10, flush_interval=None)
    for n in range(25):
        forwarder.log(entry(n))
    assert [len(entries_of([f])) for f in frames] == [10, 10]
    assert set(threads) == {threading.current_thread().name}
    assert forwarder.stats() == {
        "accepted": 25,
        "sent": 20,
        "dropped": 0,
        "pending": 5,
        "repaired": 0,
        "frames": 2,
        "send_errors": 0,
    }
    forwarder.flush()
    assert messages_of(frames) == [str(n) for n in range(25)]
    assert forwarder.stats()["pending"] == 0
    forwarder.flush()  # nothing waiting: no empty frame
    assert len(frames) == 3


def test_flushes_on_the_interval(forwarders: Callable[..., LogForwarder]) -> None:
    arrived = threading.Event()
    frames: list[bytes] = []

    def sink(frame: bytes) -> None:
        frames.append(frame)
        arrived.set()

    forwarder = forwarders(sink, buffer_size=100, flush_interval=0.02)
    forwarder.log(entry("tick"))
    assert arrived.wait(WAIT)
    assert messages_of(frames) == ["tick"]


def test_flushes_on_stop_and_stop_twice_is_harmless() -> None:
    frames: list[bytes] = []
    forwarder = LogForwarder(frames.append, buffer_size=100, flush_interval=60.0)
    for n in range(3):
        forwarder.log(entry(n))
    assert frames == []
    forwarder.stop()
    assert messages_of(frames) == ["0", "1", "2"]
    forwarder.stop()
    assert len(frames) == 1 and forwarder.stopped
    # Still delivered after stop, at once: no timer is left to do it.
    forwarder.log(entry("late"))
    assert messages_of(frames[1:]) == ["late"]
    assert forwarder.stats()["pending"] == 0


def test_is_a_context_manager_that_stops() -> None:
    frames: list[bytes] = []
    with LogForwarder(frames.append, flush_interval=None) as forwarder:
        forwarder.log(entry("inside"))
    assert forwarder.stopped and messages_of(frames) == ["inside"]


def test_frames_are_log_batch_messages_with_stamped_entries(
    forwarders: Callable[..., LogForwarder],
) -> None:
    frames: list[bytes] = []
    forwarder = forwarders(frames.append, buffer_size=2, flush_interval=None)
    before = datetime.now(timezone.utc)
    forwarder.log(LogEntry(None, "error", "stamped", workflow_id="wf", fields={"n": 1}))
    forwarder.log(LogEntry(STAMP, "debug", "kept", source_file="a.py", source_line=3))
    stamped, kept = entries_of(frames)
    assert stamped.timestamp is not None and stamped.timestamp >= before
    assert (stamped.level, stamped.workflow_id, stamped.fields) == (
        LogLevel.ERROR,
        "wf",
        {"n": 1},
    )
    assert kept == LogEntry(STAMP, LogLevel.DEBUG, "kept", source_file="a.py", source_line=3)
    assert frames[0].startswith(b'{"id":"msg-') and b',"type":"log_batch",' in frames[0]


def test_refuses_entries_rust_cannot_take(forwarders: Callable[..., LogForwarder]) -> None:
    forwarder = forwarders(lambda frame: None, flush_interval=None)
    with pytest.raises(ValueError, match="log level"):
        forwarder.log(LogEntry(None, "verbose", "x"))
    with pytest.raises((TypeError, ValueError)):
        forwarder.log(LogEntry(None, "info", 5))  # type: ignore[arg-type]
    assert forwarder.stats()["accepted"] == 0


def test_rust_reads_subclasses_look_alikes_and_unset_fields_correctly() -> None:
    """An exact LogEntry is read through its slots; anything else through getattr, so a
    subclass's override and a duck-typed object are honoured, and an unset field is the
    AttributeError getattr gives, not a crash."""

    class Shouting(LogEntry):
        @property  # type: ignore[misc]
        def message(self) -> str:  # overrides the dataclass field
            return "LOUD"

        @message.setter
        def message(self, value: str) -> None:
            pass

    plain = LogEntry(STAMP, "info", "quiet", workflow_id="wf")
    assert b'"message":"quiet"' in LogBatcher.payload_json(plain)
    assert b'"message":"LOUD"' in LogBatcher.payload_json(Shouting(STAMP, "info", "quiet"))
    alike = SimpleNamespace(
        timestamp=STAMP,
        level="warn",
        message="duck",
        trace_id=None,
        span_id="",
        workflow_id="wf",
        action_id="",
        correlation_id="",
        fields={"k": 1},
        source_file="",
        source_line=None,
    )
    assert LogBatcher.payload_json(alike) == (
        b'{"fields":{"k":1},"level":"warn","message":"duck",'
        b'"timestamp":"2024-05-01T12:00:00.123456789Z","workflow_id":"wf"}'
    )
    unset = LogEntry(STAMP, "info", "x")
    del unset.span_id
    with pytest.raises(AttributeError, match="span_id"):
        LogBatcher.payload_json(unset)
    with pytest.raises(TypeError, match="workflow_id must be str, not int"):
        LogBatcher.payload_json(LogEntry(STAMP, "info", "x", workflow_id=7))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="level must be str"):
        LogBatcher.payload_json(LogEntry(STAMP, 3, "x"))  # type: ignore[arg-type]

    class Odd(datetime):
        nanosecond = 5_000  # a PreciseDatetime look-alike out of its 0..999 range

    odd = Odd(2024, 5, 1, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match=r"nanosecond must be in 0\.\.999"):
        LogBatcher.payload_json(LogEntry(odd, "info", "x"))


def test_json_escaping_of_every_kind_of_character_matches_python() -> None:
    """The Rust byte-table escaper against the Python writer, on every code point class
    that is escaped or shares a UTF-8 lead byte with one that is."""
    tricky = "".join(
        [chr(c) for c in range(0x80)] + ["\u2027\u2028\u2029\u202a\u20ac\u00e9\U0001f600", "\ufffd"]
    )
    for message in (tricky, tricky[::-1], "\u2028", "\u2029end", "e\u20ac"):
        case = LogEntry(STAMP, "info", message, fields={"m": message})
        assert LogBatcher.payload_json(case) == go_escape(dumps_map(case.to_payload()))


def test_fields_in_rust_frames_are_written_as_go_writes_them() -> None:
    """Go's float spelling and HTML-safe escapes inside ``fields`` too; values JSON cannot
    carry are written with ``str`` (NaN as null) rather than failing the log call."""
    case = LogEntry(
        STAMP,
        "info",
        "m",
        fields={"ratio": 1.0, "tiny": 1e-7, "html": "<b>&</b>", "nested": {"x": [2.5, "\u2028"]}},
    )
    payload = LogBatcher.payload_json(case)
    assert payload == go_escape(dumps_map(case.to_payload()))
    assert b'"ratio":1,' in payload and b'"tiny":1e-7' in payload
    assert b'"html":"\\u003cb\\u003e\\u0026\\u003c/b\\u003e"' in payload

    # Go's float spelling over every magnitude, and times inside fields.
    rng = random.Random(7)
    floats = [0.1, 1 / 3, 1e-6, 9.99e-7, 1e20, 1e21, 5e-324, 1.7976931348623157e308, 2.0**53]
    floats += [rng.uniform(-1, 1) * 10.0 ** rng.randint(-320, 300) for _ in range(300)]
    spread = LogEntry(STAMP, "info", "m", fields={"f": floats, "when": {"at": STAMP}})
    assert LogBatcher.payload_json(spread) == go_escape(dumps_map(spread.to_payload()))

    class Opaque:
        def __str__(self) -> str:
            return "opaque <thing>"

    odd = LogEntry(STAMP, "info", "m", fields={"o": Opaque(), "nan": float("nan")})
    fields = orjson.loads(LogBatcher.payload_json(odd))["fields"]
    assert fields == {"o": "opaque <thing>", "nan": None}


def test_checks_its_arguments() -> None:
    for arguments in (
        {"flush_interval": 0},
        {"buffer_size": 0},
        {"buffer_size": 10, "capacity": 5},
        {"overflow": "block"},
    ):
        with pytest.raises(ValueError):
            LogForwarder(lambda frame: None, **arguments)


# --- LogForwarder: threads, slow and failing sinks --------------------------------------------


def test_eight_threads_logging_at_once_lose_nothing(
    forwarders: Callable[..., LogForwarder],
) -> None:
    frames: list[bytes] = []
    sending = threading.Lock()
    overlaps: list[int] = []

    def sink(frame: bytes) -> None:
        if not sending.acquire(blocking=False):
            overlaps.append(1)  # send must never run on two threads at once
            return
        try:
            frames.append(frame)
        finally:
            sending.release()

    forwarder = forwarders(sink, buffer_size=100, flush_interval=0.005, capacity=100_000)
    per_thread = 5_000

    def work(t: int) -> None:
        for n in range(per_thread):
            forwarder.log(entry(f"{t}:{n}"))

    run_at_once(work, 8)
    forwarder.stop()

    assert overlaps == []
    assert_all_in_order(messages_of(frames), 8, per_thread)
    stats = forwarder.stats()
    assert (stats["accepted"], stats["sent"], stats["dropped"], stats["pending"]) == (
        40_000,
        40_000,
        0,
        0,
    )


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest"])
def test_a_stalled_sink_triggers_the_policy_and_the_counter(overflow: Overflow) -> None:
    frames: list[bytes] = []
    stalled, release = threading.Event(), threading.Event()

    def sink(frame: bytes) -> None:
        frames.append(frame)
        if len(frames) == 1:
            stalled.set()
            release.wait(WAIT)

    forwarder = LogForwarder(
        sink, buffer_size=10, flush_interval=None, capacity=50, overflow=overflow
    )

    def fill_one_batch() -> None:
        for n in range(10):
            forwarder.log(entry(n))

    first = threading.Thread(target=fill_one_batch)
    first.start()
    try:
        assert stalled.wait(WAIT)
        for n in range(10, 210):  # never blocks: the stalled thread holds the sending turn
            forwarder.log(entry(n))
        stats = forwarder.stats()
        assert (stats["accepted"], stats["dropped"], stats["pending"]) == (210, 150, 50)
    finally:
        release.set()
        first.join(WAIT)
    forwarder.stop()

    kept = list(range(160, 210)) if overflow == "drop_oldest" else list(range(10, 60))
    assert messages_of(frames) == [str(n) for n in [*range(10), *kept]]
    stats = forwarder.stats()
    assert (stats["accepted"], stats["sent"], stats["dropped"], stats["pending"]) == (
        210,
        60,
        150,
        0,
    )


def test_a_failing_send_loses_its_frame_counted(
    forwarders: Callable[..., LogForwarder],
) -> None:
    frames: list[bytes] = []
    failure = ConnectionError("hub gone")

    def sink(frame: bytes) -> None:
        if not frames and not forwarder.stats()["send_errors"]:
            raise failure
        frames.append(frame)

    forwarder = forwarders(sink, buffer_size=5, flush_interval=None)
    for n in range(12):
        forwarder.log(entry(n))
    forwarder.stop()
    assert messages_of(frames) == [str(n) for n in range(5, 12)]
    stats = forwarder.stats()
    assert (stats["accepted"], stats["sent"], stats["dropped"], stats["send_errors"]) == (
        12,
        7,
        5,
        1,
    )
    assert forwarder.last_send_error is failure


def test_a_failing_partial_frame_is_counted_exactly() -> None:
    def sink(frame: bytes) -> None:
        raise OSError("closed")

    forwarder = LogForwarder(sink, buffer_size=10, flush_interval=None)
    for n in range(3):
        forwarder.log(entry(n))
    forwarder.stop()
    stats = forwarder.stats()
    assert (stats["sent"], stats["dropped"], stats["send_errors"]) == (0, 3, 1)


def _finishes(action: Callable[[], None]) -> bool:
    """Runs ``action`` on a daemon thread; whether it returned (a deadlock would not)."""
    thread = threading.Thread(target=action, daemon=True)
    thread.start()
    thread.join(WAIT)
    return not thread.is_alive()


def test_send_may_log_flush_and_stop_through_its_own_forwarder() -> None:
    frames: list[bytes] = []

    def sink(frame: bytes) -> None:
        frames.append(frame)
        if len(frames) <= 2:
            forwarder.log(entry(f"from sink {len(frames)}"))
            forwarder.flush()
        if len(frames) == 3:
            forwarder.stop()

    forwarder = LogForwarder(sink, buffer_size=2, flush_interval=0.01)

    def run() -> None:
        for n in range(6):
            forwarder.log(entry(n))
        forwarder.stop()

    assert _finishes(run)
    assert sorted(messages_of(frames)) == sorted(
        [*map(str, range(6)), "from sink 1", "from sink 2"]
    )
    assert forwarder.stats()["pending"] == 0


def test_an_abandoned_forwarder_is_collected_and_its_timer_ends() -> None:
    def timer_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "turnout-log-flusher"]

    before = set(timer_threads())
    forwarder = LogForwarder(lambda frame: None, flush_interval=0.01)
    (timer,) = set(timer_threads()) - before
    assert timer.daemon
    ref = weakref.ref(forwarder)
    del forwarder
    gc.collect()
    assert ref() is None
    timer.join(WAIT)
    assert not timer.is_alive()


# --- ForwardingHandler ------------------------------------------------------------------------


class Collector:
    """A log target that keeps what it is given."""

    def __init__(self) -> None:
        self.entries: list[LogEntry] = []

    def log(self, entry: LogEntry) -> None:
        self.entries.append(entry)


@pytest.fixture
def logger(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    log = logging.getLogger(f"turnout.tests.{request.node.name}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log
    log.handlers.clear()


def test_records_become_entries(logger: logging.Logger) -> None:
    target = Collector()
    logger.addHandler(ForwardingHandler(target))
    logger.debug("below the handler's level")
    line = sys._getframe().f_lineno + 1
    logger.info("hello %s", "world")
    (entry,) = target.entries
    assert entry == LogEntry(
        None, LogLevel.INFO, "hello world", source_file=__file__, source_line=line
    )


@pytest.mark.parametrize(
    ("levelno", "level"),
    [
        (logging.DEBUG, LogLevel.DEBUG),
        (logging.INFO, LogLevel.INFO),
        (logging.WARNING, LogLevel.WARN),
        (logging.ERROR, LogLevel.ERROR),
        (logging.CRITICAL, LogLevel.FATAL),
        (5, LogLevel.DEBUG),
        (15, LogLevel.DEBUG),
        (25, LogLevel.INFO),
        (35, LogLevel.WARN),
        (45, LogLevel.ERROR),
        (60, LogLevel.FATAL),
    ],
)
def test_levels_map_to_go_levels(logger: logging.Logger, levelno: int, level: LogLevel) -> None:
    target = Collector()
    logger.setLevel(1)
    logger.addHandler(ForwardingHandler(target, level=logging.NOTSET))
    logger.log(levelno, "x")
    assert target.entries[0].level is level


@pytest.mark.parametrize(
    "name",
    ["trace_id", "span_id", "workflow_id", "action_id", "correlation_id"],
)
@pytest.mark.parametrize("style", ["snake", "Id", "ID"])
def test_ids_in_extra_fill_the_typed_fields(logger: logging.Logger, name: str, style: str) -> None:
    target = Collector()
    logger.addHandler(ForwardingHandler(target))
    camel = name.split("_")[0]
    key = {"snake": name, "Id": camel + "Id", "ID": camel + "ID"}[style]
    logger.info("m", extra={key: "v-1", "other": 3})
    (entry,) = target.entries
    assert getattr(entry, name) == "v-1"
    assert entry.fields == {"other": 3}


def test_extras_that_are_not_typed_ids_go_to_fields(logger: logging.Logger) -> None:
    target = Collector()
    logger.addHandler(ForwardingHandler(target))
    marker = object()
    logger.info(
        "m",
        extra={"traceID": "camel", "trace_id": "snake", "spanId": 42, "user": "ann", "o": marker},
    )
    (entry,) = target.entries
    assert entry.trace_id == "snake" and entry.span_id == ""
    assert entry.fields == {"traceID": "camel", "spanId": 42, "user": "ann", "o": marker}


def test_every_spelling_of_an_id_at_once_resolves_the_same_way(logger: logging.Logger) -> None:
    target = Collector()
    logger.addHandler(ForwardingHandler(target))
    logger.info("m", extra={"spanID": "upper", "spanId": "camel"})
    logger.info("m", extra={"spanID": "upper", "spanId": "camel", "span_id": "snake"})
    two, three = target.entries
    assert (two.span_id, two.fields) == ("camel", {"spanID": "upper"})
    assert (three.span_id, three.fields) == ("snake", {"spanID": "upper", "spanId": "camel"})
    # Whatever order the record's attributes come in.
    attributes = {"traceID": "upper", "traceId": "camel", "trace_id": "snake", "n": 1}
    outcomes = {
        (found[0], tuple(sorted((found[5] or {}).items())))
        for order in itertools.permutations(attributes)
        for found in [split_extras(attributes, dict.fromkeys(order).keys())]
    }
    assert outcomes == {("snake", (("n", 1), ("traceID", "upper"), ("traceId", "camel")))}


def test_exceptions_and_stacks_go_to_fields(logger: logging.Logger) -> None:
    target = Collector()
    logger.addHandler(ForwardingHandler(target))
    try:
        raise ValueError("bad <value>")
    except ValueError:
        logger.exception("failed", extra={"workflowId": "wf-1"})
    logger.warning("where", stack_info=True)
    failed, where = target.entries
    assert failed.level is LogLevel.ERROR and failed.workflow_id == "wf-1"
    assert failed.fields is not None
    assert failed.fields["error"] == "ValueError: bad <value>"
    assert failed.fields["exception"].startswith("Traceback (most recent call last):")
    assert where.fields is not None and "test_exceptions_and_stacks" in where.fields["stack"]


def test_a_failing_target_goes_to_handle_error(logger: logging.Logger) -> None:
    class Broken:
        def log(self, entry: LogEntry) -> None:
            raise RuntimeError("target down")

    failures: list[logging.LogRecord] = []

    class Recording(ForwardingHandler):
        def handleError(self, record: logging.LogRecord) -> None:
            failures.append(record)

    logger.addHandler(Recording(Broken()))
    logger.error("lost?")
    assert [r.getMessage() for r in failures] == ["lost?"]


def test_a_forwarder_target_gets_what_any_other_target_gets(logger: logging.Logger) -> None:
    """A LogForwarder is given the fields directly (no LogEntry per record); the entries in
    its frames are those a plain target receives, timestamps aside."""
    frames: list[bytes] = []
    forwarder = LogForwarder(frames.append, buffer_size=100, flush_interval=None)
    collector = Collector()
    logger.setLevel(1)
    for target in (forwarder, collector):
        logger.addHandler(ForwardingHandler(target, level=logging.NOTSET))
    logger.log(5, "custom level")
    logger.info("ids %s", "lifted", extra={"traceID": "t", "span_id": "s", "n": 1.5})
    try:
        raise KeyError("k")
    except KeyError:
        logger.critical("boom <now>", exc_info=True, extra={"workflowId": "wf", "z": [1, None]})
    forwarder.stop()
    sent = entries_of(frames)
    assert [e.timestamp is not None for e in sent] == [True] * 3
    for entry in sent:
        entry.timestamp = None
    assert sent == collector.entries
    assert [e.level for e in sent] == [LogLevel.DEBUG, LogLevel.INFO, LogLevel.FATAL]


def test_a_forwarder_subclass_still_sees_every_entry(logger: logging.Logger) -> None:
    class Tagging(LogForwarder):
        def log(self, entry: LogEntry) -> None:
            entry.correlation_id = "tagged"
            super().log(entry)

    frames: list[bytes] = []
    forwarder = Tagging(frames.append, flush_interval=None)
    logger.addHandler(ForwardingHandler(forwarder))
    logger.info("x")
    forwarder.stop()
    assert [e.correlation_id for e in entries_of(frames)] == ["tagged"]


def test_threads_logging_through_the_handler_lose_nothing(logger: logging.Logger) -> None:
    frames: list[bytes] = []
    forwarder = LogForwarder(frames.append, buffer_size=50, flush_interval=0.01, capacity=50_000)
    logger.addHandler(ForwardingHandler(forwarder))
    per_thread = 2_000

    def work(t: int) -> None:
        for n in range(per_thread):
            logger.info("%d:%d", t, n, extra={"workflow_id": f"wf-{t}"})

    run_at_once(work, 4)
    forwarder.stop()
    entries = entries_of(frames)
    assert_all_in_order([e.message for e in entries], 4, per_thread)
    assert all(e.workflow_id == f"wf-{e.message.split(':')[0]}" for e in entries)
    assert forwarder.stats()["dropped"] == 0


def test_handler_through_a_forwarder_end_to_end(logger: logging.Logger) -> None:
    frames: list[bytes] = []
    forwarder = LogForwarder(frames.append, buffer_size=2, flush_interval=None)
    logger.addHandler(ForwardingHandler(forwarder, level=logging.DEBUG))
    logger.debug("one", extra={"correlationId": "c-9", "attempt": 2})
    logger.critical("two %d", 2, extra={"actionID": "act"})
    forwarder.stop()
    one, two = entries_of(frames)
    assert (one.level, one.message, one.correlation_id, one.fields) == (
        LogLevel.DEBUG,
        "one",
        "c-9",
        {"attempt": 2},
    )
    assert (two.level, two.message, two.action_id) == (LogLevel.FATAL, "two 2", "act")
    assert two.source_file == __file__ and two.source_line > 0
    payload = orjson.loads(frames[0])["payload"]["logs"][0]
    assert list(payload) == sorted(payload)
