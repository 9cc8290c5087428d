"""turnout.execution (Lacquer's events): the event's wire form and the
listeners."""

from __future__ import annotations

import asyncio
import copy
import io
import pickle
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import turnout
from turnout._wire import ZERO_TIME, PreciseDatetime
from turnout.bus import Bus, Message
from turnout.execution import (
    BusListener,
    ExecutionEvent,
    ExecutionEventType,
    Listener,
    MalformedMessageError,
    NoopListener,
    ProgressListener,
    describe,
    execution_subject,
)

pytestmark = pytest.mark.timeout(120)

T = ExecutionEventType
STAMP = datetime(2025, 6, 1, 9, 30, 0, 250_000, tzinfo=timezone.utc)


def event(kind: ExecutionEventType | str, **fields: object) -> ExecutionEvent:
    return ExecutionEvent(kind, timestamp=STAMP, run_id="run-1", **fields)  # type: ignore[arg-type]


# --- the wire form -----------------------------------------------------------------------------


def test_event_types_are_lacquers() -> None:
    assert [t.value for t in ExecutionEventType] == [
        "workflow_started",
        "workflow_completed",
        "workflow_failed",
        "step_started",
        "step_progress",
        "step_completed",
        "step_failed",
        "step_skipped",
        "step_retrying",
        "step_action_started",
        "step_action_completed",
        "step_action_failed",
    ]


def test_golden_json_minimal_keeps_the_three_fixed_fields() -> None:
    assert event(T.WORKFLOW_STARTED).to_json() == (
        b'{"type":"workflow_started","timestamp":"2025-06-01T09:30:00.25Z","run_id":"run-1"}'
    )
    empty_run = ExecutionEvent(T.WORKFLOW_STARTED, timestamp=STAMP)
    assert orjson.loads(empty_run.to_json())["run_id"] == ""


def test_golden_json_omits_every_empty_field() -> None:
    zeroes = event(
        T.STEP_STARTED,
        step_id="",
        step_index=0,
        duration=timedelta(0),
        attempt=0,
        metadata={},
        diagnostics=[],
    )
    assert list(orjson.loads(zeroes.to_json())) == ["type", "timestamp", "run_id"]


def test_golden_json_full() -> None:
    full = event(
        T.STEP_ACTION_FAILED,
        step_id="build",
        action_id="compile",
        step_index=2,
        duration=timedelta(seconds=1, microseconds=500),
        error="exit status 1",
        attempt=3,
        text="compiling",
        metadata={"zeta": 1, "alpha": {"y": True, "b": None}, "when": STAMP},
        diagnostics=["main.go:3: undefined: x"],
    )
    assert full.to_json() == (
        b'{"type":"step_action_failed","timestamp":"2025-06-01T09:30:00.25Z","run_id":"run-1",'
        b'"step_id":"build","action_id":"compile","step_index":2,"duration":1000500000,'
        b'"error":"exit status 1","attempt":3,"text":"compiling",'
        b'"metadata":{"alpha":{"b":null,"y":true},"when":"2025-06-01T09:30:00.25Z","zeta":1},'
        b'"diagnostics":["main.go:3: undefined: x"]}'
    )


GO_JSON = [
    # As Lacquer's Go writes them: nanosecond timestamps and durations, sorted map keys.
    b'{"type":"step_completed","timestamp":"2025-06-01T09:30:00.123456789Z","run_id":"r-9",'
    b'"step_id":"test","step_index":4,"duration":1234567891,"attempt":1,'
    b'"metadata":{"cached":false,"exit_code":0,"outputs":{"a":"1","b":[1,2]}}}',
    b'{"type":"workflow_failed","timestamp":"2025-06-01T11:30:00+02:00","run_id":"r-9",'
    b'"duration":-1500,"error":"step test failed","diagnostics":["a","b"]}',
    b'{"type":"step_progress","timestamp":"0001-01-01T00:00:00Z","run_id":"","text":"50%"}',
    b'{"type":"a_future_type","timestamp":"2025-06-01T09:30:00.1Z","run_id":"x"}',
]


@pytest.mark.parametrize("data", GO_JSON)
def test_go_json_round_trips_byte_for_byte(data: bytes) -> None:
    decoded = ExecutionEvent.from_json(data)
    assert decoded.to_json() == data
    assert ExecutionEvent.from_json(decoded.to_json()) == decoded


def test_decoded_fields() -> None:
    first = ExecutionEvent.from_json(GO_JSON[0])
    assert first.type is T.STEP_COMPLETED
    assert first.timestamp == PreciseDatetime(
        2025, 6, 1, 9, 30, 0, 123456, tzinfo=timezone.utc, nanosecond=789
    )
    # Nanoseconds below the microsecond are kept, and count in comparisons.
    assert first.duration != timedelta(seconds=1, microseconds=234567)
    assert first.duration - timedelta(seconds=1) == timedelta(microseconds=234567)
    assert first.metadata == {"cached": False, "exit_code": 0, "outputs": {"a": "1", "b": [1, 2]}}
    second = ExecutionEvent.from_json(GO_JSON[1])
    assert second.timestamp.utcoffset() == timedelta(hours=2)
    assert second.duration != timedelta(microseconds=-1)
    assert orjson.loads(second.to_json())["duration"] == -1500
    assert ExecutionEvent.from_json(GO_JSON[3]).type == "a_future_type"


def test_missing_timestamp_is_the_zero_time() -> None:
    decoded = ExecutionEvent.from_json(b'{"type":"step_started","run_id":"r"}')
    assert decoded.timestamp == ZERO_TIME
    assert b'"timestamp":"0001-01-01T00:00:00Z"' in decoded.to_json()


def test_nanosecond_duration_survives_copies_and_pickles() -> None:
    decoded = ExecutionEvent.from_json(GO_JSON[0])
    for clone in (copy.deepcopy(decoded), pickle.loads(pickle.dumps(decoded))):
        assert clone.to_json() == GO_JSON[0]


def test_metadata_and_strings_are_written_as_go_writes_them() -> None:
    go_like = event(
        T.STEP_COMPLETED,
        text="a <b> & c",
        metadata={"ratio": 0.5, "count": 3.0, "tiny": 1e-7, "html": "<&>"},
    )
    assert go_like.to_json() == (
        b'{"type":"step_completed","timestamp":"2025-06-01T09:30:00.25Z","run_id":"run-1",'
        b'"text":"a \\u003cb\\u003e \\u0026 c",'
        b'"metadata":{"count":3,"html":"\\u003c\\u0026\\u003e","ratio":0.5,"tiny":1e-7}}'
    )
    with pytest.raises(TypeError):
        event(T.STEP_COMPLETED, metadata={"bad": object()}).to_json()
    with pytest.raises(ValueError):
        event(T.STEP_COMPLETED, metadata={"nan": float("nan")}).to_json()


def test_default_timestamp_is_now_in_utc() -> None:
    before = datetime.now(timezone.utc)
    stamped = ExecutionEvent(T.WORKFLOW_STARTED, run_id="r")
    assert before <= stamped.timestamp <= datetime.now(timezone.utc)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"[]",
        b'{"run_id":"r"}',
        b'{"type":7}',
        b'{"type":"step_started","step_index":"1"}',
        b'{"type":"step_started","step_index":1.5}',
        b'{"type":"step_started","attempt":1.0}',
        b'{"type":"step_started","attempt":true}',
        b'{"type":"step_started","duration":9223372036854775808}',
        b'{"type":"step_started","timestamp":"yesterday"}',
        b'{"type":"step_started","timestamp":1700000000}',
        b'{"type":"step_started","metadata":[1]}',
        b'{"type":"step_started","diagnostics":"one"}',
        b'{"type":"step_started","diagnostics":[1]}',
        b'{"type":"step_started","run_id":null,"text":{}}',
    ],
)
def test_bad_input_is_a_typed_error(data: bytes) -> None:
    with pytest.raises(MalformedMessageError):
        ExecutionEvent.from_json(data)


def test_null_fields_are_zero_values_as_in_go() -> None:
    decoded = ExecutionEvent.from_json(
        b'{"type":"step_started","run_id":null,"step_index":null,"metadata":null}'
    )
    assert (decoded.run_id, decoded.step_index, decoded.metadata) == ("", 0, None)


# --- listeners ---------------------------------------------------------------------------------


def test_the_listeners_are_listeners() -> None:
    def accepts(listener: Listener) -> Listener:
        return listener

    with Bus() as bus:
        for listener in (NoopListener(), ProgressListener(io.StringIO()), BusListener(bus)):
            assert accepts(listener) is listener


async def test_noop_listener_drains_a_bounded_queue_so_the_producer_never_blocks() -> None:
    queue: asyncio.Queue[ExecutionEvent | None] = asyncio.Queue(maxsize=100)
    listener = NoopListener()
    listener.start_listening(queue)
    for n in range(10_000):  # Lacquer's NoopListener hangs here after 100
        await queue.put(event(T.STEP_PROGRESS, attempt=n))
    await queue.put(None)
    await queue.join()
    await listener.wait()
    assert listener.handled == 10_000
    assert not listener.listening


async def test_noop_listener_drains_an_async_iterable() -> None:
    async def events() -> AsyncIterator[ExecutionEvent]:
        for _ in range(10_000):
            yield event(T.STEP_PROGRESS)

    listener = NoopListener()
    listener.start_listening(events())
    await listener.wait()
    assert listener.handled == 10_000


async def test_stop_listening_leaves_the_rest_in_the_queue() -> None:
    queue: asyncio.Queue[ExecutionEvent | None] = asyncio.Queue()
    listener = NoopListener()
    listener.start_listening(queue)
    await queue.put(event(T.WORKFLOW_STARTED))
    while listener.handled < 1:
        await asyncio.sleep(0)
    listener.stop_listening()
    listener.stop_listening()
    await listener.wait()
    await queue.put(event(T.WORKFLOW_COMPLETED))
    await asyncio.sleep(0)
    assert queue.qsize() == 1
    # It can listen again afterwards.
    listener.start_listening(queue)
    await queue.put(None)
    await listener.wait()
    assert listener.handled == 2


async def test_listening_twice_at_once_is_refused() -> None:
    queue: asyncio.Queue[ExecutionEvent | None] = asyncio.Queue()
    listener = NoopListener()
    listener.start_listening(queue)
    with pytest.raises(RuntimeError, match="already listening"):
        listener.start_listening(queue)
    listener.stop_listening()
    await listener.wait()


def test_listening_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        NoopListener().start_listening(asyncio.Queue())


async def test_wait_raises_what_the_source_raised() -> None:
    async def broken() -> AsyncIterator[ExecutionEvent]:
        yield event(T.WORKFLOW_STARTED)
        raise ConnectionResetError("producer died")

    listener = NoopListener()
    listener.start_listening(broken())
    with pytest.raises(ConnectionResetError):
        await listener.wait()
    assert listener.handled == 1


async def feed(listener: Listener, events: list[ExecutionEvent]) -> None:
    async def source() -> AsyncIterator[ExecutionEvent]:
        for item in events:
            yield item

    listener.start_listening(source())
    assert isinstance(listener, (NoopListener, ProgressListener, BusListener))
    await listener.wait()


RUN = [
    event(T.WORKFLOW_STARTED),
    event(T.STEP_STARTED, step_id="checkout"),
    event(T.STEP_PROGRESS, step_id="checkout", text="cloning 40%"),
    event(T.STEP_PROGRESS, step_id="checkout", text="cloning 90%"),
    event(
        T.STEP_COMPLETED, step_id="checkout", duration=timedelta(seconds=2, microseconds=345_678)
    ),
    event(T.STEP_STARTED, step_id="build", step_index=1),
    event(T.STEP_ACTION_STARTED, step_id="build", step_index=1, action_id="compile"),
    event(
        T.STEP_ACTION_FAILED,
        step_id="build",
        step_index=1,
        action_id="compile",
        error="exit status 2",
        diagnostics=["main.go:3: undefined: x"],
    ),
    event(T.STEP_RETRYING, step_id="build", step_index=1, attempt=2, error="exit status 2"),
    event(T.STEP_ACTION_COMPLETED, step_id="build", step_index=1, action_id="compile"),
    event(T.STEP_COMPLETED, step_id="build", step_index=1, duration=timedelta(milliseconds=750)),
    event(T.STEP_SKIPPED, step_id="deploy", step_index=2, text="branch is not main"),
    event(T.STEP_FAILED, step_id="notify", step_index=3, error="no webhook"),
    event(T.WORKFLOW_FAILED, error="step notify failed"),
    event(T.WORKFLOW_COMPLETED, duration=timedelta(minutes=1, seconds=5)),
]

PLAIN_TEXT = """\
run run-1: workflow started
[1] checkout: started
[1] checkout: cloning 40%
[1] checkout: cloning 90%
[1] checkout: completed in 2.346s
[2] build: started
[2] build/compile: action started
[2] build/compile: action failed: exit status 2
    main.go:3: undefined: x
[2] build: retrying (attempt 2): exit status 2
[2] build/compile: action completed
[2] build: completed in 750ms
[3] deploy: skipped: branch is not main
[4] notify: failed: no webhook
run run-1: workflow failed: step notify failed
run run-1: workflow completed in 1m5s
"""


async def test_progress_listener_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    listener = ProgressListener(out)
    await feed(listener, RUN)
    assert out.getvalue() == PLAIN_TEXT
    assert "\x1b" not in out.getvalue()
    assert listener.errors == 0


async def test_progress_listener_rewrites_progress_in_place_on_a_terminal() -> None:
    out = io.StringIO()
    await feed(ProgressListener(out, live=True), [*RUN[1:5], RUN[2]])
    assert out.getvalue() == (
        "[1] checkout: started\n"
        "\r\x1b[2K[1] checkout: cloning 40%"
        "\r\x1b[2K[1] checkout: cloning 90%"
        "\r\x1b[2K[1] checkout: completed in 2.346s\n"
        "\r\x1b[2K[1] checkout: cloning 40%"
        "\n"  # the open progress line is ended when listening ends
    )


def test_describe_unknown_types_and_exact_short_durations() -> None:
    assert describe(event("custom_type", step_id="s")) == "[1] s: custom_type"
    fast = event(T.STEP_COMPLETED, step_id="s", duration=timedelta(microseconds=1500))
    assert describe(fast) == "[1] s: completed in 1.5ms"


class BrokenStream(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("terminal gone")


async def test_a_failing_handler_is_counted_and_listening_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = ProgressListener(BrokenStream())
    await feed(listener, RUN[:3])
    assert (listener.handled, listener.errors) == (3, 3)
    assert "terminal gone" in caplog.text


async def test_bus_listener_publishes_each_event() -> None:
    with Bus(node="n1") as bus:
        seen: list[Message] = []
        bus.subscribe("execution.>", seen.append, raw=True)
        listener = BusListener(bus)
        await feed(listener, RUN)
        assert listener.published == len(RUN)
        assert [m.subject for m in seen[:2]] == [
            "execution.run-1.workflow_started",
            "execution.run-1.step_started",
        ]
        assert [ExecutionEvent.from_json(m.data) for m in seen] == RUN
        assert [m.data for m in seen] == [e.to_json() for e in RUN]


async def test_bus_listener_subjects_are_always_literal() -> None:
    with Bus() as bus:
        seen: list[Message] = []
        bus.subscribe("ops.>", seen.append, raw=True)
        listener = BusListener(bus, prefix="ops.runs")
        odd = ExecutionEvent(T.STEP_FAILED, run_id="a.b c*>\t", step_id="s")
        await feed(listener, [odd, ExecutionEvent(T.STEP_FAILED, run_id=">")])
        assert [m.subject for m in seen] == [
            "ops.runs.a_b_c*>_.step_failed",
            "ops.runs._.step_failed",
        ]
        assert ExecutionEvent.from_json(seen[0].data).run_id == "a.b c*>\t"
    with pytest.raises(turnout.InvalidSubjectError):
        BusListener(bus, prefix="ops.*")


async def test_bus_listener_counts_a_failed_publish_and_goes_on() -> None:
    with Bus() as bus:
        seen: list[Message] = []
        bus.subscribe("execution.>", seen.append, raw=True)
        listener = BusListener(bus)
        too_long = ExecutionEvent(T.STEP_STARTED, run_id="x" * (turnout.MAX_SUBJECT_LENGTH + 1))
        await feed(listener, [too_long, event(T.STEP_STARTED)])
        assert (listener.errors, listener.published, len(seen)) == (1, 1, 1)


@given(run_id=st.text(max_size=40), kind=st.text(max_size=20))
def test_execution_subject_is_a_valid_literal_of_three_tokens_after_the_prefix(
    run_id: str, kind: str
) -> None:
    subject = execution_subject(ExecutionEvent(kind, run_id=run_id), prefix="execution")
    assert turnout.is_valid_literal(subject)
    assert len(turnout.tokens(subject)) == 3
