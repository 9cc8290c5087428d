"""The coordination wire format (turnout.protocol) and the two ends' state machines
(turnout.coordination), driven without sockets: frames go from one end to the other by hand.

The golden JSON below is written from the Go struct definitions of the when-v3 coordinator
(json tags, omitempty, the map round trip of SetPayload that sorts payload keys)."""

from __future__ import annotations

import gc
import math
import re
import threading
from collections.abc import Hashable
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnout._go_json import go_float_text
from turnout._wire import ZERO_TIME, parse_time
from turnout.coordination import (
    ClientState,
    CommandRefused,
    CoordinatorConfig,
    CoordinatorProtocol,
    HubProtocol,
    MalformedFrame,
    MessageReceived,
    MessageRefused,
    Output,
    Registered,
    RequestOutcome,
    RequestSettled,
    ServiceDisconnected,
    ServiceMessage,
    ServiceRegistered,
    negotiate_protocol_version,
    parse_protocol_version,
)
from turnout.logs import LogEntry, LogLevel
from turnout.phases import Phase, PhaseManager
from turnout.protocol import (
    HUB_TO_SERVICE,
    MESSAGE_ID_PATTERN,
    SERVICE_TO_HUB,
    CancelPayload,
    CheckpointPayload,
    ErrorPayload,
    LogBatchPayload,
    MessageType,
    PausePayload,
    PhaseChangedPayload,
    ProgressPayload,
    ProtocolError,
    RegisteredPayload,
    RegisterPayload,
    ResumePayload,
    StatusPayload,
    StatusResponsePayload,
    WorkflowCreatedPayload,
    WSMessage,
    new_message_id,
)
from turnout.testing import strategies as ts

STAMP = parse_time("2024-05-01T12:00:00.123456789Z")
STAMP_TEXT = "2024-05-01T12:00:00.123456789Z"
ID = "msg-abcdefghijkl-1"


def frame(kind: MessageType, payload: Any, workflow_id: str = "") -> bytes:
    return WSMessage(ID, kind, workflow_id, STAMP, payload.to_payload()).to_json()


def golden(kind: str, payload: str, workflow_id: str = "") -> bytes:
    wf = f'"workflow_id":"{workflow_id}",' if workflow_id else ""
    return (
        f'{{"id":"{ID}","type":"{kind}",{wf}"timestamp":"{STAMP_TEXT}","payload":{payload}}}'
    ).encode()


# --- Go's float64 spelling --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (50.0, "50"),
        (0.0, "0"),
        (-0.0, "-0"),
        (0.1, "0.1"),
        (-2.5, "-2.5"),
        (123456.789, "123456.789"),
        (1e-6, "0.000001"),
        (2.5e-5, "0.000025"),
        (1e-7, "1e-7"),
        (1.23456789e-7, "1.23456789e-7"),
        (1e-10, "1e-10"),
        (5e-324, "5e-324"),
        (1e16, "10000000000000000"),
        (1e20, "100000000000000000000"),
        (float(2**60), "1152921504606847000"),
        (1e21, "1e+21"),
        (1.5e300, "1.5e+300"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
    ],
)
def test_floats_are_spelled_as_go_writes_float64(value: float, text: str) -> None:
    assert go_float_text(value) == text


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused_as_in_go(value: float) -> None:
    with pytest.raises(ValueError):
        go_float_text(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_spelling_reads_back_exactly_in_the_right_form(value: float) -> None:
    text = go_float_text(value)
    assert float(text) == value
    magnitude = abs(value)
    if magnitude == 0 or 1e-6 <= magnitude < 1e21:
        assert re.fullmatch(r"-?\d+(\.\d*[1-9])?", text), text
    else:
        assert re.fullmatch(r"-?\d(\.\d*[1-9])?e(-[1-9]|-\d\d+|\+\d\d+)", text), text


# --- message ids and types --------------------------------------------------------------------


def test_message_ids_have_the_go_shape_and_count_up() -> None:
    first, second = new_message_id(), new_message_id()
    assert MESSAGE_ID_PATTERN.fullmatch(first)
    assert MESSAGE_ID_PATTERN.fullmatch(second)
    prefix, number = first.rsplit("-", 1)
    assert second == f"{prefix}-{int(number) + 1}"
    assert len(prefix) == len("msg-") + 12


def test_message_ids_are_unique_across_threads() -> None:
    ids: list[str] = []

    def take() -> None:
        ids.extend(new_message_id() for _ in range(2_000))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(ids) == len(set(ids)) == 8_000


def test_there_are_sixteen_message_types_split_by_direction() -> None:
    assert len(MessageType) == 16
    assert len(SERVICE_TO_HUB) == 10 and len(HUB_TO_SERVICE) == 6
    assert frozenset(MessageType) == SERVICE_TO_HUB | HUB_TO_SERVICE
    assert {t.value for t in HUB_TO_SERVICE} == {
        "registered",
        "pause",
        "resume",
        "cancel",
        "status",
        "ping",
    }
    assert MessageType("log_batch") is MessageType.LOG_BATCH
    assert str(MessageType.PHASE_CHANGED) == "phase_changed"


# --- the envelope -----------------------------------------------------------------------------


def test_envelope_keys_in_go_order_and_empty_ones_left_out() -> None:
    bare = WSMessage(ID, MessageType.PING, timestamp=STAMP)
    assert bare.to_json() == f'{{"id":"{ID}","type":"ping","timestamp":"{STAMP_TEXT}"}}'.encode()
    empty_payload = WSMessage(ID, MessageType.PING, "", STAMP, {})
    assert empty_payload.to_json() == bare.to_json()
    full = WSMessage(ID, "status", "wf-1", STAMP, {"workflow_id": "wf-1"})
    assert full.to_json() == golden("status", '{"workflow_id":"wf-1"}', "wf-1")
    assert full.type is MessageType.STATUS


def test_envelope_writes_timestamps_as_go_does() -> None:
    offset = parse_time("2024-05-01T14:00:00.5+02:00")
    message = WSMessage(ID, MessageType.PONG, timestamp=offset)
    assert b'"timestamp":"2024-05-01T14:00:00.5+02:00"' in message.to_json()
    naive_zero = WSMessage(ID, MessageType.PONG, timestamp=ZERO_TIME)
    assert b'"timestamp":"0001-01-01T00:00:00Z"' in naive_zero.to_json()


def test_strings_are_escaped_html_safe_as_go_does() -> None:
    message = WSMessage(ID, MessageType.ERROR, "a<b>&c", STAMP, {"error": "x\u2028y\u2029z\n"})
    assert (
        message.to_json()
        == (
            f'{{"id":"{ID}","type":"error","workflow_id":"a\\u003cb\\u003e\\u0026c",'
            f'"timestamp":"{STAMP_TEXT}","payload":{{"error":"x\\u2028y\\u2029z\\n"}}}}'
        ).encode()
    )
    assert WSMessage.parse(message.to_json()) == message


def test_new_messages_get_fresh_ids_and_the_current_time() -> None:
    before = datetime.now(timezone.utc)
    message = WSMessage.new(MessageType.PING, "wf-1")
    after = datetime.now(timezone.utc)
    assert MESSAGE_ID_PATTERN.fullmatch(message.id)
    assert message.workflow_id == "wf-1" and message.payload is None
    assert before - timedelta(seconds=1) <= message.timestamp <= after + timedelta(seconds=1)
    assert message.timestamp.utcoffset() == timedelta(0)


def test_with_payload_takes_the_payloads_workflow_id_unless_told() -> None:
    message = WSMessage.with_payload(MessageType.PAUSE, PausePayload("wf-7", "why"))
    assert message.workflow_id == "wf-7"
    assert message.payload == {"workflow_id": "wf-7", "reason": "why"}
    other = WSMessage.with_payload(MessageType.PAUSE, PausePayload("wf-7"), "", id="req-1")
    assert other.workflow_id == "" and other.id == "req-1"


# --- golden payloads, every type --------------------------------------------------------------

GOLDEN_PAYLOADS: list[tuple[MessageType, Any, str]] = [
    (
        MessageType.REGISTER,
        RegisterPayload(
            service_name="containerservice",
            service_id="cs-1",
            instance_id="i-1",
            capabilities=("run", "stop"),
            version="1.2.3",
            protocol_version="1.0",
            schema_version=7,
        ),
        '{"capabilities":["run","stop"],"instance_id":"i-1","protocol_version":"1.0",'
        '"schema_version":7,"service_id":"cs-1","service_name":"containerservice",'
        '"version":"1.2.3"}',
    ),
    (MessageType.REGISTER, RegisterPayload("svc"), '{"capabilities":null,"service_name":"svc"}'),
    (
        MessageType.REGISTERED,
        RegisteredPayload("cs-1", "i-1", "registered", "1.0", "1.1"),
        '{"hub_protocol_version":"1.1","instance_id":"i-1","message":"registered",'
        '"protocol_version":"1.0","service_id":"cs-1"}',
    ),
    (MessageType.REGISTERED, RegisteredPayload(), '{"service_id":""}'),
    (
        MessageType.PHASE_CHANGED,
        PhaseChangedPayload("wf-1", Phase.EXECUTION, Phase.PAUSING, "cp-1", "maintenance"),
        '{"checkpoint_id":"cp-1","from":"execution","reason":"maintenance","to":"pausing",'
        '"workflow_id":"wf-1"}',
    ),
    (
        MessageType.PHASE_CHANGED,
        PhaseChangedPayload("wf-1", "", Phase.PRE_FLIGHT),
        '{"from":"","to":"pre-flight","workflow_id":"wf-1"}',
    ),
    (
        MessageType.CHECKPOINT,
        CheckpointPayload(
            "wf-1",
            "cp-1",
            "before step 3",
            {"step": 3, "ratio": 0.5, "done": 1.0, "nested": {"b": [1.5, 2.0], "a": None}},
        ),
        '{"checkpoint_id":"cp-1","reason":"before step 3","state":{"done":1,'
        '"nested":{"a":null,"b":[1.5,2]},"ratio":0.5,"step":3},"workflow_id":"wf-1"}',
    ),
    (
        MessageType.CHECKPOINT,
        CheckpointPayload("wf-1"),
        '{"checkpoint_id":"","reason":"","workflow_id":"wf-1"}',
    ),
    (
        MessageType.ERROR,
        ErrorPayload("wf-1", "disk <full> & more", True, "act-1"),
        '{"action_id":"act-1","error":"disk \\u003cfull\\u003e \\u0026 more",'
        '"recoverable":true,"workflow_id":"wf-1"}',
    ),
    (MessageType.ERROR, ErrorPayload(), '{"error":"","recoverable":false,"workflow_id":""}'),
    (
        MessageType.PROGRESS,
        ProgressPayload("wf-1", "act-1", 50.0, "build", "halfway", 5, 10),
        '{"action_id":"act-1","current_item":5,"message":"halfway","percent":50,'
        '"stage":"build","total_items":10,"workflow_id":"wf-1"}',
    ),
    (
        MessageType.PROGRESS,
        ProgressPayload("wf-1", percent=12.5),
        '{"percent":12.5,"workflow_id":"wf-1"}',
    ),
    (MessageType.PROGRESS, ProgressPayload("wf-1"), '{"percent":0,"workflow_id":"wf-1"}'),
    (
        MessageType.PAUSE,
        PausePayload("wf-1", "maintenance"),
        '{"reason":"maintenance","workflow_id":"wf-1"}',
    ),
    (MessageType.PAUSE, PausePayload("wf-1"), '{"workflow_id":"wf-1"}'),
    (
        MessageType.RESUME,
        ResumePayload("wf-1", "cp-1"),
        '{"from_checkpoint":"cp-1","workflow_id":"wf-1"}',
    ),
    (MessageType.RESUME, ResumePayload("wf-1"), '{"workflow_id":"wf-1"}'),
    (
        MessageType.CANCEL,
        CancelPayload("wf-1", "user asked", True),
        '{"force":true,"reason":"user asked","workflow_id":"wf-1"}',
    ),
    (MessageType.CANCEL, CancelPayload("wf-1"), '{"workflow_id":"wf-1"}'),
    (MessageType.STATUS, StatusPayload("wf-1"), '{"workflow_id":"wf-1"}'),
    (
        MessageType.STATUS_RESPONSE,
        StatusResponsePayload("wf-1", Phase.EXECUTION, 0.75, "deploy"),
        '{"current_action":"deploy","phase":"execution","progress":0.75,"workflow_id":"wf-1"}',
    ),
    (
        MessageType.STATUS_RESPONSE,
        StatusResponsePayload("wf-9", message="workflow not found"),
        '{"message":"workflow not found","phase":"","progress":0,"workflow_id":"wf-9"}',
    ),
    (
        MessageType.WORKFLOW_CREATED,
        WorkflowCreatedPayload("wf-2", "wf-1", "wf-0", "act-1", "container"),
        '{"action_id":"act-1","action_type":"container","parent_workflow_id":"wf-1",'
        '"root_workflow_id":"wf-0","workflow_id":"wf-2"}',
    ),
    (MessageType.WORKFLOW_CREATED, WorkflowCreatedPayload("wf-2"), '{"workflow_id":"wf-2"}'),
    (
        MessageType.LOG_BATCH,
        LogBatchPayload(
            (
                LogEntry(STAMP, "info", "started", workflow_id="wf-1", fields={"attempt": 2}),
                LogEntry(
                    STAMP,
                    LogLevel.ERROR,
                    "failed",
                    trace_id="t1",
                    source_file="main.py",
                    source_line=42,
                ),
            )
        ),
        '{"logs":[{"fields":{"attempt":2},"level":"info","message":"started",'
        f'"timestamp":"{STAMP_TEXT}","workflow_id":"wf-1"}},'
        '{"level":"error","message":"failed","source_file":"main.py","source_line":42,'
        f'"timestamp":"{STAMP_TEXT}","trace_id":"t1"}}]}}',
    ),
    (MessageType.LOG_BATCH, LogBatchPayload(), '{"logs":null}'),
    (
        MessageType.LOG,
        LogEntry(STAMP, LogLevel.WARN, "slow", action_id="a1", correlation_id="c1", span_id="s1"),
        '{"action_id":"a1","correlation_id":"c1","level":"warn","message":"slow",'
        f'"span_id":"s1","timestamp":"{STAMP_TEXT}"}}',
    ),
]


@pytest.mark.parametrize(
    ("kind", "payload", "expected"),
    GOLDEN_PAYLOADS,
    ids=[f"{kind.value}-{i}" for i, (kind, _, _) in enumerate(GOLDEN_PAYLOADS)],
)
def test_payload_json_is_byte_exact_and_round_trips(
    kind: MessageType, payload: Any, expected: str
) -> None:
    written = frame(kind, payload)
    assert written == golden(kind.value, expected)
    parsed = WSMessage.parse(written)
    assert parsed.type is kind and parsed.id == ID and parsed.timestamp == STAMP
    assert parsed.payload_as(type(payload)) == payload
    assert parsed.to_json() == written


def test_every_payload_type_has_a_golden() -> None:
    covered = {type(p).__name__ for _, p, _ in GOLDEN_PAYLOADS}
    assert covered >= {
        "RegisterPayload",
        "RegisteredPayload",
        "PhaseChangedPayload",
        "CheckpointPayload",
        "ErrorPayload",
        "ProgressPayload",
        "PausePayload",
        "ResumePayload",
        "CancelPayload",
        "StatusPayload",
        "StatusResponsePayload",
        "WorkflowCreatedPayload",
        "LogBatchPayload",
        "LogEntry",
    }


_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)  # no lone surrogates

# What each type's payload reads as (ping and pong carry none).
PAYLOAD_CLASSES: dict[MessageType, type[Any]] = {
    MessageType.REGISTER: RegisterPayload,
    MessageType.WORKFLOW_CREATED: WorkflowCreatedPayload,
    MessageType.PHASE_CHANGED: PhaseChangedPayload,
    MessageType.CHECKPOINT: CheckpointPayload,
    MessageType.ERROR: ErrorPayload,
    MessageType.STATUS_RESPONSE: StatusResponsePayload,
    MessageType.PROGRESS: ProgressPayload,
    MessageType.LOG: LogEntry,
    MessageType.LOG_BATCH: LogBatchPayload,
    MessageType.REGISTERED: RegisteredPayload,
    MessageType.PAUSE: PausePayload,
    MessageType.RESUME: ResumePayload,
    MessageType.CANCEL: CancelPayload,
    MessageType.STATUS: StatusPayload,
}


@given(ts.ws_messages())
def test_every_message_type_round_trips_through_json(message: WSMessage) -> None:
    written = message.to_json()
    parsed = WSMessage.parse(written)
    assert parsed.to_json() == written
    assert (parsed.id, parsed.type, parsed.workflow_id) == (
        message.id,
        message.type,
        message.workflow_id,
    )
    payload_class = PAYLOAD_CLASSES.get(MessageType(message.type))
    if payload_class is not None:
        payload = parsed.payload_as(payload_class)
        again = WSMessage.with_payload(message.type, payload, message.workflow_id, id=message.id)
        # Written again (numbers compared as Go spells them: 2.7e16 and its int are one).
        rewritten = WSMessage(
            again.id, again.type, again.workflow_id, parsed.timestamp, again.payload
        )
        assert rewritten.to_json() == written


@given(
    workflow_id=_text,
    action_id=_text,
    percent=st.floats(allow_nan=False, allow_infinity=False),
    stage=_text,
    current=st.integers(-(2**53), 2**53),
    total=st.integers(0, 2**31),
)
def test_progress_round_trips_through_json(
    workflow_id: str, action_id: str, percent: float, stage: str, current: int, total: int
) -> None:
    payload = ProgressPayload(workflow_id, action_id, percent, stage, "m<&>", current, total)
    message = WSMessage.with_payload(MessageType.PROGRESS, payload)
    parsed = WSMessage.parse(message.to_json())
    assert parsed == WSMessage.parse(parsed.to_json())
    assert parsed.payload_as(ProgressPayload) == payload
    assert parsed.workflow_id == workflow_id


# --- reading what Go sends --------------------------------------------------------------------


def test_missing_timestamp_is_the_zero_time_and_nanoseconds_are_kept() -> None:
    assert WSMessage.parse(b'{"id":"a","type":"ping"}').timestamp == ZERO_TIME
    go = b'{"id":"a","type":"pong","timestamp":"2024-05-01T12:00:00.000000001-07:00"}'
    parsed = WSMessage.parse(go)
    assert parsed.to_json() == go


def test_unknown_types_are_read_but_flagged() -> None:
    parsed = WSMessage.parse('{"id":"a","type":"heartbeat","payload":{"x":1}}')
    assert parsed.type == "heartbeat" and not parsed.known_type
    assert WSMessage.parse('{"id":"a","type":"ping"}').known_type


def test_unknown_keys_are_ignored_and_nulls_are_empty() -> None:
    parsed = WSMessage.parse(
        '{"id":"a","type":"pause","workflow_id":null,"payload":null,"extra":[1,2]}'
    )
    assert parsed.workflow_id == "" and parsed.payload is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[1,2]",
        b'"text"',
        b"null",
        b'{"type":"ping"}',
        b'{"id":"","type":"ping"}',
        b'{"id":7,"type":"ping"}',
        b'{"id":"a"}',
        b'{"id":"a","type":""}',
        b'{"id":"a","type":3}',
        b'{"id":"a","type":"ping","workflow_id":5}',
        b'{"id":"a","type":"ping","timestamp":"yesterday"}',
        b'{"id":"a","type":"ping","timestamp":12}',
        b'{"id":"a","type":"ping","payload":[1]}',
        b'{"id":"a","type":"ping","payload":"x"}',
        b'{"id":"a","type":"ping"',
        b"\xff\xfe",
    ],
)
def test_malformed_messages_raise_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        WSMessage.parse(data)


def test_protocol_error_is_a_value_error() -> None:
    assert issubclass(ProtocolError, ValueError)
    with pytest.raises(ProtocolError):
        WSMessage.parse(12345)  # type: ignore[arg-type]


def test_payloads_are_read_as_go_reads_them() -> None:
    # Keys match whatever their case; unknown keys are dropped; null is the zero value.
    folded = {"Workflow_ID": "wf-1", "FROM": "paused", "to": "resuming", "junk": 1, "reason": None}
    assert PhaseChangedPayload.from_payload(folded) == PhaseChangedPayload(
        "wf-1", Phase.PAUSED, Phase.RESUMING
    )
    # A phase Go would carry but turnout does not know stays a string.
    assert PhaseChangedPayload.from_payload({"to": "archived"}).to_phase == "archived"
    # Numbers: an integral float fits an int field (Go's map holds float64s).
    assert ProgressPayload.from_payload({"current_item": 3.0, "percent": 7}).current_item == 3
    assert ProgressPayload.from_payload({"percent": 7}).percent == 7.0


@pytest.mark.parametrize(
    ("cls", "payload"),
    [
        (PausePayload, {"workflow_id": 3}),
        (CancelPayload, {"force": "yes"}),
        (ProgressPayload, {"percent": "50"}),
        (ProgressPayload, {"current_item": 2.5}),
        (ProgressPayload, {"total_items": True}),
        (ProgressPayload, {"total_items": 2**70}),
        (RegisterPayload, {"capabilities": "run"}),
        (RegisterPayload, {"capabilities": ["run", 1]}),
        (CheckpointPayload, {"state": [1]}),
        (LogBatchPayload, {"logs": {"level": "info"}}),
        (LogBatchPayload, {"logs": [{"timestamp": "soon"}]}),
        (PhaseChangedPayload, {"to": 1}),
    ],
)
def test_payloads_of_the_wrong_shape_raise_protocol_error(
    cls: Any, payload: dict[str, Any]
) -> None:
    with pytest.raises(ProtocolError):
        WSMessage(ID, "x", payload=payload).payload_as(cls)


def test_payload_as_needs_a_payload_class() -> None:
    with pytest.raises(TypeError):
        WSMessage(ID, "ping").payload_as(dict)


def test_a_message_type_is_a_string() -> None:
    with pytest.raises(TypeError):
        WSMessage(ID, 5)  # type: ignore[arg-type]


# --- protocol versions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "hub", "agreed"),
    [
        ("1.0", "1.0", "1.0"),
        ("1.2", "1.1", "1.1"),
        ("1.1", "1.2", "1.1"),
        ("", "1.3", "1.0"),
        ("0.9", "1.0", "0.9"),
        ("2.0", "1.5", "1.5"),
        ("1.10", "1.9", "1.9"),
    ],
)
def test_the_lower_version_is_negotiated(service: str, hub: str, agreed: str) -> None:
    assert negotiate_protocol_version(service, hub) == agreed


@pytest.mark.parametrize("text", ["1", "1.0.0", "v1.0", "1.x", " 1.0", "01.0", ""])
def test_malformed_versions_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_protocol_version(text)


def test_config_checks_its_values_and_backs_off() -> None:
    config = CoordinatorConfig("ws://hub/v1/coordination", "svc", capabilities=["a"])  # type: ignore[arg-type]
    assert config.capabilities == ("a",)
    assert [config.reconnect_delay(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        30.0,
    ]
    for bad in (
        {"service_name": ""},
        {"protocol_version": "one"},
        {"reconnect_initial_delay": 0},
        {"reconnect_initial_delay": 60.0},
        {"reconnect_backoff_factor": 0.5},
        {"reconnect_max_attempts": -1},
        {"ping_interval": 0},
    ):
        arguments: dict[str, Any] = {"when_url": "ws://x", "service_name": "svc", **bad}
        with pytest.raises(ValueError):
            CoordinatorConfig(**arguments)


# --- the client end ---------------------------------------------------------------------------


def config(**overrides: Any) -> CoordinatorConfig:
    arguments: dict[str, Any] = {
        "when_url": "ws://hub/v1/coordination",
        "service_name": "containerservice",
        "service_id": "cs-1",
        "instance_id": "i-1",
        "capabilities": ("run",),
        "version": "1.2.3",
        "schema_version": 4,
        **overrides,
    }
    return CoordinatorConfig(**arguments)


def executing(pm: PhaseManager, workflow_id: str) -> None:
    pm.register_workflow(workflow_id)
    for phase in (Phase.PRE_FLIGHT, Phase.PLANNING, Phase.EXECUTION):
        pm.transition_to(workflow_id, phase, "started")


def messages(frames: list[bytes]) -> list[WSMessage]:
    return [WSMessage.parse(f) for f in frames]


def registered_reply(to: WSMessage, service_id: str = "cs-1") -> bytes:
    return WSMessage.with_payload(
        MessageType.REGISTERED,
        RegisteredPayload(service_id, protocol_version="1.0", hub_protocol_version="1.0"),
        "",
        id=to.id,
    ).to_json()


def connect(client: CoordinatorProtocol, service_id: str = "cs-1") -> list[WSMessage]:
    """Connects and registers; returns what went out after ``registered``."""
    client.connection_made()
    (register,) = messages(client.take_outgoing())
    events = client.receive(registered_reply(register, service_id)).events
    assert isinstance(events[0], Registered)
    return messages(client.take_outgoing())


def test_client_sends_headers_and_registers_first() -> None:
    client = CoordinatorProtocol(config(token="s3cret"))
    assert client.handshake_headers() == {
        "X-Service-Name": "containerservice",
        "X-Service-ID": "cs-1",
        "Authorization": "Bearer s3cret",
    }
    assert CoordinatorProtocol(config(service_id="")).handshake_headers() == {
        "X-Service-Name": "containerservice"
    }
    states = [client.state]
    client.send(WSMessage.new(MessageType.PROGRESS, "wf-1"))
    assert client.take_outgoing() == []  # nothing goes out while disconnected
    client.connection_made()
    states.append(client.state)
    assert states == [ClientState.DISCONNECTED, ClientState.REGISTERING]
    (register,) = messages(client.take_outgoing())  # the queued message waits for registration
    assert register.type is MessageType.REGISTER
    assert register.payload_as(RegisterPayload) == RegisterPayload(
        "containerservice", "cs-1", "i-1", ("run",), "1.2.3", "1.0", 4
    )
    events = client.receive(registered_reply(register, "cs-assigned")).events
    assert events[0] == Registered(
        "cs-assigned", RegisteredPayload("cs-assigned", "", "", "1.0", "1.0")
    )
    assert isinstance(events[-1], MessageReceived)
    assert client.state is ClientState.REGISTERED and client.service_id == "cs-assigned"
    (progress,) = messages(client.take_outgoing())
    assert progress.type is MessageType.PROGRESS


def test_client_answers_ping_and_status_with_the_same_ids() -> None:
    pm = PhaseManager()
    executing(pm, "wf-1")
    pm.set_progress("wf-1", 0.5, "deploy")
    client = CoordinatorProtocol(config(), pm)
    connect(client)

    ping = WSMessage("ping-42", MessageType.PING, timestamp=STAMP)
    events = client.receive(ping.to_json()).events
    assert events == [MessageReceived(WSMessage.parse(ping.to_json()))]
    (pong,) = messages(client.take_outgoing())
    assert (pong.id, pong.type) == ("ping-42", MessageType.PONG)

    client.receive(WSMessage.with_payload(MessageType.STATUS, StatusPayload("wf-1"), id="st-1"))
    client.receive(WSMessage.with_payload(MessageType.STATUS, StatusPayload("nope"), id="st-2"))
    known, unknown = messages(client.take_outgoing())
    assert (known.id, known.type, known.workflow_id) == ("st-1", "status_response", "wf-1")
    assert known.payload_as(StatusResponsePayload) == StatusResponsePayload(
        "wf-1", Phase.EXECUTION, 0.5, "deploy"
    )
    assert unknown.id == "st-2"
    assert unknown.payload_as(StatusResponsePayload) == StatusResponsePayload(
        "nope", "", 0.0, "", "workflow not found"
    )
    # Go's hub may name the workflow on the envelope only.
    client.receive(WSMessage("st-3", MessageType.STATUS, "wf-1"))
    (by_envelope,) = messages(client.take_outgoing())
    assert by_envelope.payload_as(StatusResponsePayload).phase is Phase.EXECUTION


def test_commands_drive_the_phase_manager_and_come_back_as_phase_changes() -> None:
    pm = PhaseManager()
    executing(pm, "wf-1")
    client = CoordinatorProtocol(config(), pm)
    connect(client)

    client.receive(WSMessage.with_payload(MessageType.PAUSE, PausePayload("wf-1", "maint")))
    assert pm.get_phase("wf-1") is Phase.PAUSING
    pm.complete_pause("wf-1", "cp-9")
    client.receive(WSMessage.with_payload(MessageType.RESUME, ResumePayload("wf-1", "cp-9")))
    assert pm.get_phase("wf-1") is Phase.RESUMING
    pm.complete_resume("wf-1")
    client.receive(WSMessage.with_payload(MessageType.CANCEL, CancelPayload("wf-1", "bye")))
    assert pm.get_phase("wf-1") is Phase.CANCELLING

    changes = [m.payload_as(PhaseChangedPayload) for m in messages(client.take_outgoing())]
    assert [(c.from_phase, c.to_phase, c.reason) for c in changes] == [
        (Phase.EXECUTION, Phase.PAUSING, "maint"),
        (Phase.PAUSING, Phase.PAUSED, "paused"),
        (Phase.PAUSED, Phase.RESUMING, "resume requested"),
        (Phase.RESUMING, Phase.EXECUTION, "resumed"),
        (Phase.EXECUTION, Phase.CANCELLING, "bye"),
    ]
    assert changes[1].checkpoint_id == "cp-9"
    assert {c.workflow_id for c in changes} == {"wf-1"}


def test_forced_cancel_completes_the_cancellation() -> None:
    pm = PhaseManager()
    executing(pm, "wf-1")
    executing(pm, "wf-2")
    pm.cancel("wf-2", "already winding down")
    client = CoordinatorProtocol(config(), pm)
    connect(client)
    for workflow_id in ("wf-1", "wf-2"):
        cancel = CancelPayload(workflow_id, "now", force=True)
        client.receive(WSMessage.with_payload(MessageType.CANCEL, cancel))
        assert pm.get_phase(workflow_id) is Phase.CANCELLED
    tos = [m.payload_as(PhaseChangedPayload).to_phase for m in messages(client.take_outgoing())]
    assert tos == [Phase.CANCELLING, Phase.CANCELLED, Phase.CANCELLED]


def test_refused_commands_are_answered_with_an_error_of_the_same_id() -> None:
    pm = PhaseManager()
    pm.register_workflow("wf-1")
    client = CoordinatorProtocol(config(), pm)
    connect(client)
    pause = WSMessage.with_payload(MessageType.PAUSE, PausePayload("wf-1"), id="cmd-1")
    events = client.receive(pause).events
    assert isinstance(events[0], CommandRefused)
    assert str(events[0].error) == "workflow wf-1 cannot be paused from phase pending"
    resume = WSMessage.with_payload(MessageType.RESUME, ResumePayload("ghost"), id="cmd-2")
    assert isinstance(client.receive(resume).events[0], CommandRefused)
    first, second = messages(client.take_outgoing())
    assert (first.id, first.type, first.workflow_id) == ("cmd-1", MessageType.ERROR, "wf-1")
    assert first.payload_as(ErrorPayload) == ErrorPayload(
        "wf-1", "workflow wf-1 cannot be paused from phase pending", True
    )
    assert second.id == "cmd-2"
    assert second.payload_as(ErrorPayload).error == "workflow not found: ghost"


def test_malformed_frames_and_payloads_are_reported_not_fatal() -> None:
    client = CoordinatorProtocol(config())
    connect(client)
    (event,) = client.receive(b"{nope").events
    assert isinstance(event, MalformedFrame) and event.connection is None
    bad = WSMessage("cmd-3", MessageType.PAUSE, "wf-1", STAMP, {"workflow_id": 12})
    events = client.receive(bad).events
    assert isinstance(events[0], MalformedFrame) and isinstance(events[1], MessageReceived)
    (error,) = messages(client.take_outgoing())
    assert (error.id, error.type) == ("cmd-3", MessageType.ERROR)
    # Unknown types reach the application's handlers untouched.
    (unknown,) = client.receive(b'{"id":"u","type":"heartbeat"}').events
    assert isinstance(unknown, MessageReceived) and unknown.message.type == "heartbeat"
    assert client.stats()["malformed"] == 2


def test_active_phases_are_resent_after_every_registration() -> None:
    pm = PhaseManager()
    executing(pm, "wf-run")
    pm.register_workflow("wf-new")
    executing(pm, "wf-paused")
    pm.pause("wf-paused", "night")
    pm.complete_pause("wf-paused", "cp-1")
    executing(pm, "wf-done")
    pm.complete("wf-done")
    client = CoordinatorProtocol(config(), pm)
    client.send(WSMessage.new(MessageType.PROGRESS, "wf-run"))  # queued before connecting

    after = connect(client)
    assert after[0].type is MessageType.PROGRESS  # what waited goes before the snapshot
    resent = {m.workflow_id: m.payload_as(PhaseChangedPayload) for m in after[1:]}
    assert set(resent) == {"wf-run", "wf-new", "wf-paused"}  # not the completed one
    assert resent["wf-paused"] == PhaseChangedPayload(
        "wf-paused", Phase.PAUSING, Phase.PAUSED, "cp-1", "paused"
    )
    assert resent["wf-new"].from_phase == "" and resent["wf-new"].to_phase is Phase.PENDING

    client.connection_lost()
    pm.transition_to("wf-new", Phase.PRE_FLIGHT, "go")  # reported while disconnected
    again = connect(client)
    assert again[0].payload_as(PhaseChangedPayload).to_phase is Phase.PRE_FLIGHT
    assert {m.workflow_id for m in again[1:]} == {"wf-run", "wf-new", "wf-paused"}
    assert client.stats()["connections"] == 2


def test_the_queue_is_bounded_and_counts_drops_across_reconnects() -> None:
    client = CoordinatorProtocol(config(), queue_size=5)
    for n in range(8):
        assert client.send(WSMessage(f"m{n}", MessageType.PROGRESS, timestamp=STAMP))
    assert client.stats()["dropped"] == 3
    sent = connect(client)
    assert [m.id for m in sent] == ["m3", "m4", "m5", "m6", "m7"]  # drop_oldest kept the newest

    client.connection_lost()
    for n in range(8, 15):
        client.send(WSMessage(f"m{n}", MessageType.PROGRESS, timestamp=STAMP))
    stats = client.stats()
    assert (stats["dropped"], stats["pending"]) == (5, 5)
    assert [m.id for m in connect(client)] == ["m10", "m11", "m12", "m13", "m14"]

    newest_dropped = CoordinatorProtocol(config(), queue_size=2, overflow="drop_newest")
    results = [newest_dropped.send(WSMessage(f"n{i}", "progress")) for i in range(4)]
    assert results == [True, True, False, False]
    assert [m.id for m in connect(newest_dropped)] == ["n0", "n1"]
    assert newest_dropped.stats()["dropped"] == 2


def test_a_registered_without_a_connection_is_ignored() -> None:
    client = CoordinatorProtocol(config())
    stray = WSMessage("r", MessageType.REGISTERED, payload={"service_id": "x"})
    assert client.receive(stray).events == [MessageReceived(stray)]
    assert client.state is ClientState.DISCONNECTED and client.service_id == "cs-1"


def test_answers_belong_to_their_connection() -> None:
    client = CoordinatorProtocol(config())
    connect(client)
    client.receive(WSMessage("p1", MessageType.PING))
    client.connection_lost()  # the pong was never taken
    assert client.stats()["discarded"] == 1
    client.receive(WSMessage("p2", MessageType.PING))  # a straggler after the loss
    assert client.stats()["discarded"] == 2
    client.connection_made()
    (register,) = messages(client.take_outgoing())
    assert register.type is MessageType.REGISTER


def test_queued_frames_wake_the_writer_from_any_thread() -> None:
    wakes: list[str] = []
    pm = PhaseManager()
    client = CoordinatorProtocol(
        config(), pm, on_outgoing=lambda: wakes.append(threading.current_thread().name)
    )
    connect(client)
    wakes.clear()

    def work(n: int) -> None:
        for i in range(25):
            executing(pm, f"wf-{n}-{i}")

    threads = [threading.Thread(target=work, args=(n,), name=f"t{n}") for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # Each change wakes the writer once, on a thread that changed phases: the one that
    # made the change, or one delivering the callbacks of changes made meanwhile (they
    # are delivered in the order they happened, so not always by their own thread).
    assert len(wakes) == 300
    assert set(wakes) <= {"t0", "t1", "t2", "t3"}
    # 4 threads x 25 workflows x 3 changes = 300 phase changes into a queue of 100.
    stats = client.stats()
    assert stats["queued"] == 300 and stats["dropped"] == 200 and stats["pending"] == 100


def test_a_discarded_client_leaves_the_phase_manager_usable() -> None:
    pm = PhaseManager()
    client = CoordinatorProtocol(config(), pm)
    del client
    gc.collect()
    executing(pm, "wf-1")  # the weakly held callback does nothing
    assert pm.get_phase("wf-1") is Phase.EXECUTION


# --- the hub end ------------------------------------------------------------------------------


class Link:
    """One client connected to a hub in memory: frames are carried by ``pump``."""

    def __init__(
        self,
        hub: HubProtocol,
        client: CoordinatorProtocol,
        connection: Hashable = "conn-1",
    ) -> None:
        self.hub, self.client, self.connection = hub, client, connection
        self.hub_events: list[Any] = []
        self.client_events: list[Any] = []
        hub.connection_opened(connection, client.handshake_headers())
        client.connection_made()
        self.pump()

    def deliver(self, data: bytes) -> None:
        self.client_events.extend(self.client.receive(data).events)

    def pump(self) -> None:
        while frames := self.client.take_outgoing():
            for data in frames:
                out = self.hub.receive(self.connection, data)
                self.hub_events.extend(out.events)
                for reply in out.send:
                    self.deliver(reply)

    def settled(self) -> list[RequestSettled]:
        found = [e for e in self.hub_events if isinstance(e, RequestSettled)]
        self.hub_events = [e for e in self.hub_events if not isinstance(e, RequestSettled)]
        return found


def test_hub_registers_services_with_the_negotiated_version() -> None:
    hub = HubProtocol(protocol_version="1.3")
    link = Link(hub, CoordinatorProtocol(config(protocol_version="1.1")))
    registered = [e for e in link.hub_events if isinstance(e, ServiceRegistered)]
    assert len(registered) == 1
    record = registered[0].service
    assert (record.service_id, record.instance_id, record.service_name) == (
        "cs-1",
        "i-1",
        "containerservice",
    )
    assert (record.protocol_version, record.requested_protocol_version) == ("1.1", "1.1")
    assert record.capabilities == ("run",) and record.schema_version == 4
    assert link.client.state is ClientState.REGISTERED
    answer = next(e for e in link.client_events if isinstance(e, Registered)).payload
    assert answer == RegisteredPayload("cs-1", "i-1", "registered", "1.1", "1.3")
    assert hub.service("cs-1", "i-1") == record


def test_hub_answers_register_with_the_same_id_and_fills_in_service_ids() -> None:
    hub = HubProtocol()
    hub.connection_opened(1, {"x-service-id": "from-header"})
    register = WSMessage.with_payload(MessageType.REGISTER, RegisterPayload("svc"), id="reg-1")
    (reply,) = hub.receive(1, register.to_json()).send
    parsed = WSMessage.parse(reply)
    assert (parsed.id, parsed.type) == ("reg-1", MessageType.REGISTERED)
    assert parsed.payload_as(RegisteredPayload).service_id == "from-header"

    hub.connection_opened(2)
    (reply,) = hub.receive(2, register.to_json()).send
    generated = WSMessage.parse(reply).payload_as(RegisteredPayload).service_id
    assert re.fullmatch(r"svc-[a-z0-9]{8}", generated)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"service_name": ""}, "service_name is required"),
        ({"service_name": "svc", "protocol_version": "v2"}, "protocol version"),
        ({"service_name": 5}, "service_name: expected a string"),
    ],
)
def test_hub_refuses_bad_registrations(payload: dict[str, Any], reason: str) -> None:
    hub = HubProtocol()
    hub.connection_opened("c")
    out = hub.receive("c", WSMessage("r", MessageType.REGISTER, payload=payload).to_json())
    (reply,) = out.send
    error = WSMessage.parse(reply)
    assert (error.id, error.type) == ("r", MessageType.ERROR)
    assert reason in error.payload_as(ErrorPayload).error
    assert hub.services() == []


def test_hub_answers_malformed_and_unexpected_frames_with_errors() -> None:
    hub = HubProtocol()
    hub.connection_opened("c")
    out = hub.receive("c", b"\x00garbage")
    assert isinstance(out.events[0], MalformedFrame) and out.events[0].connection == "c"
    (reply,) = out.send
    error = WSMessage.parse(reply)
    assert error.type is MessageType.ERROR
    assert error.payload_as(ErrorPayload).error.startswith("malformed message:")

    before = hub.receive("c", WSMessage("p", MessageType.PROGRESS, "wf").to_json())
    assert isinstance(before.events[0], MessageRefused)
    assert "register first" in before.events[0].reason

    register = WSMessage.with_payload(MessageType.REGISTER, RegisterPayload("svc", "s1"))
    hub.receive("c", register.to_json())
    for data, reason in (
        (b'{"id":"u","type":"heartbeat"}', "unknown message type heartbeat"),
        (WSMessage("h", MessageType.PAUSE, "wf").to_json(), "pause is sent by the hub"),
    ):
        out = hub.receive("c", data)
        assert isinstance(out.events[0], MessageRefused) and out.events[0].reason == reason
        assert WSMessage.parse(out.send[0]).payload_as(ErrorPayload).error == reason
    # The connection still works.
    ok = hub.receive("c", WSMessage.new(MessageType.PONG).to_json())
    assert ok.send == [] and isinstance(ok.events[0], ServiceMessage)
    assert hub.stats()["malformed"] == 1 and hub.stats()["refused"] == 3


def test_hub_tracks_workflow_phases_from_services() -> None:
    pm = PhaseManager()
    executing(pm, "wf-1")
    hub = HubProtocol()
    link = Link(hub, CoordinatorProtocol(config(), pm))
    record = hub.workflow("wf-1")
    assert record is not None
    assert (record.phase, record.previous_phase, record.service) == (
        Phase.EXECUTION,
        Phase.PLANNING,
        ("cs-1", "i-1"),
    )
    client = link.client
    client.send(
        WSMessage.with_payload(
            MessageType.WORKFLOW_CREATED, WorkflowCreatedPayload("wf-2", "wf-1", "wf-1")
        )
    )
    client.send(
        WSMessage.with_payload(MessageType.PROGRESS, ProgressPayload("wf-1", "act-3", 40.0))
    )
    client.send(
        WSMessage.with_payload(MessageType.CHECKPOINT, CheckpointPayload("wf-1", "cp-2", "r"))
    )
    link.pump()
    child = hub.workflow("wf-2")
    assert child is not None
    assert (child.phase, child.parent_workflow_id, child.root_workflow_id) == (
        Phase.PENDING,
        "wf-1",
        "wf-1",
    )
    parent = hub.workflow("wf-1")
    assert parent is not None
    assert (parent.progress, parent.current_action, parent.checkpoint_id) == (
        40.0,
        "act-3",
        "cp-2",
    )
    republished = [e.message.type for e in link.hub_events if isinstance(e, ServiceMessage)]
    assert MessageType.WORKFLOW_CREATED in republished and MessageType.CHECKPOINT in republished
    assert hub.forget_workflow("wf-2") and hub.workflow("wf-2") is None


def test_hub_requests_are_settled_by_their_answers() -> None:
    pm = PhaseManager()
    executing(pm, "wf-1")
    hub = HubProtocol()
    link = Link(hub, CoordinatorProtocol(config(), pm))

    status = hub.status("wf-1", deadline=100.0)
    assert status.connection == "conn-1" and status.type is MessageType.STATUS
    link.deliver(status.frame)
    link.pump()
    (settled,) = link.settled()
    assert settled.request == status and settled.outcome is RequestOutcome.ANSWERED
    assert settled.response is not None and settled.response.id == status.id
    assert settled.response.payload_as(StatusResponsePayload).phase is Phase.EXECUTION

    pause = hub.pause("wf-1", "maint", deadline=100.0)
    link.deliver(pause.frame)
    link.pump()
    (settled,) = link.settled()
    assert settled.outcome is RequestOutcome.ANSWERED and settled.request.id == pause.id
    assert settled.response is not None
    assert settled.response.payload_as(PhaseChangedPayload).to_phase is Phase.PAUSING

    refused = hub.resume("wf-1", deadline=100.0)  # pausing cannot be resumed yet
    link.deliver(refused.frame)
    link.pump()
    (settled,) = link.settled()
    assert settled.outcome is RequestOutcome.REFUSED
    assert settled.response is not None and settled.response.type is MessageType.ERROR

    ping = hub.ping(("cs-1", "i-1"), deadline=100.0)
    link.deliver(ping.frame)
    link.pump()
    (settled,) = link.settled()
    assert settled.outcome is RequestOutcome.ANSWERED and settled.response is not None
    assert settled.response.type is MessageType.PONG
    assert hub.pending_requests() == [] and hub.next_deadline is None


def test_a_go_style_phase_change_with_its_own_id_settles_the_command() -> None:
    hub = HubProtocol()
    hub.connection_opened("go")
    register = WSMessage.with_payload(MessageType.REGISTER, RegisterPayload("gosvc", "g1"))
    hub.receive("go", register.to_json())
    running = PhaseChangedPayload("wf-go", Phase.PLANNING, Phase.EXECUTION)
    hub.receive("go", WSMessage.with_payload(MessageType.PHASE_CHANGED, running).to_json())
    cancel = hub.cancel("wf-go", "stop", deadline=5.0)
    noise = PhaseChangedPayload("wf-other", Phase.PLANNING, Phase.CANCELLING)
    assert not [
        e
        for e in hub.receive(
            "go", WSMessage.with_payload(MessageType.PHASE_CHANGED, noise).to_json()
        ).events
        if isinstance(e, RequestSettled)
    ]
    change = PhaseChangedPayload("wf-go", Phase.EXECUTION, Phase.CANCELLING, reason="stop")
    out = hub.receive("go", WSMessage.with_payload(MessageType.PHASE_CHANGED, change).to_json())
    (settled,) = [e for e in out.events if isinstance(e, RequestSettled)]
    assert settled.request == cancel and settled.outcome is RequestOutcome.ANSWERED

    pause = hub.pause("wf-go", deadline=5.0)
    failed = PhaseChangedPayload("wf-go", Phase.CANCELLING, Phase.FAILED, reason="crash")
    out = hub.receive("go", WSMessage.with_payload(MessageType.PHASE_CHANGED, failed).to_json())
    (settled,) = [e for e in out.events if isinstance(e, RequestSettled)]
    assert settled.request == pause and settled.outcome is RequestOutcome.REFUSED


def test_hub_requests_expire_at_their_deadlines() -> None:
    hub = HubProtocol()
    hub.connection_opened("c")
    hub.receive(
        "c", WSMessage.with_payload(MessageType.REGISTER, RegisterPayload("svc", "s")).to_json()
    )
    late = hub.ping(("s", ""), deadline=20.0)
    early = hub.ping(("s", ""), deadline=10.0)
    assert hub.next_deadline == 10.0
    assert hub.expire(9.99) == []
    (first,) = hub.expire(10.0)
    assert first.request == early and first.outcome is RequestOutcome.EXPIRED
    assert first.response is None
    assert hub.next_deadline == 20.0
    # An answer after expiry settles nothing.
    out = hub.receive("c", WSMessage(early.id, MessageType.PONG).to_json())
    assert not [e for e in out.events if isinstance(e, RequestSettled)]
    (second,) = hub.expire(1e9)
    assert second.request == late
    assert hub.next_deadline is None and hub.stats()["pending"] == 0


def test_hub_settles_requests_of_a_closed_connection() -> None:
    pm = PhaseManager()
    executing(pm, "wf-1")
    hub = HubProtocol()
    link = Link(hub, CoordinatorProtocol(config(), pm))
    status = hub.status("wf-1", deadline=50.0)
    events = hub.connection_closed("conn-1").events
    settled, gone = events
    assert isinstance(settled, RequestSettled) and settled.request == status
    assert settled.outcome is RequestOutcome.DISCONNECTED
    assert isinstance(gone, ServiceDisconnected) and gone.service is not None
    assert gone.service.connection is None
    assert hub.connection_closed("conn-1") == Output()
    with pytest.raises(LookupError, match="service not connected"):
        hub.pause("wf-1", deadline=1.0)
    with pytest.raises(LookupError, match="workflow not found"):
        hub.pause("wf-unknown", deadline=1.0)
    # The workflow is still known, and the service takes it back when it reconnects.
    link.client.connection_lost()
    Link(hub, link.client, connection="conn-2")
    assert hub.pause("wf-1", deadline=1.0).connection == "conn-2"


def test_the_newest_connection_of_a_service_owns_it() -> None:
    hub = HubProtocol()
    for connection in ("old", "new"):
        hub.connection_opened(connection)
        hub.receive(
            connection,
            WSMessage.with_payload(MessageType.REGISTER, RegisterPayload("svc", "s")).to_json(),
        )
    (disconnected,) = hub.connection_closed("old").events
    assert isinstance(disconnected, ServiceDisconnected)
    service = hub.service("s")
    assert service is not None and service.connection == "new"


def test_hub_checks_the_bearer_token() -> None:
    hub = HubProtocol(token="s3cret")

    def refusal(headers: list[tuple[str, str]], query: str = "") -> str | None:
        admission = hub.admit(headers, query)
        return None if admission.refusal is None else admission.refusal.reason

    assert refusal([("Authorization", "Bearer s3cret")]) is None
    assert refusal([("authorization", "bearer s3cret")]) is None  # RFC 7235: any case
    assert refusal([("Authorization", "BEARER  s3cret ")]) is None
    assert refusal([], "token=s3cret") is None  # clients that cannot set headers
    assert refusal([]) == "missing bearer token"
    assert refusal([("Authorization", "Basic s3cret")]) == "missing bearer token"
    assert refusal([("Authorization", "Bearer nope")]) == "invalid token"
    assert refusal([], "token=nope") == "invalid token"
    two = [("Authorization", "Bearer s3cret"), ("Authorization", "Bearer s3cret")]
    assert refusal(two) == "more than one Authorization header"
    assert refusal([("Authorization", "Bearer s3cret")], "token=s3cret") == (
        "credentials in both the Authorization header and the URL"
    )
    assert refusal([], "token=a&token=b") == "more than one token parameter"
    assert hub.admit(two).refusal.status == 400  # type: ignore[union-attr]
    assert HubProtocol().admit([]).refusal is None
    client = CoordinatorProtocol(config(token="s3cret"))
    assert refusal(list(client.handshake_headers().items())) is None
    assert hub.refusals() == {
        "missing_token": 2,
        "invalid_token": 2,
        "duplicate_credentials": 4,
    }


def test_hub_needs_an_opened_connection() -> None:
    with pytest.raises(KeyError):
        HubProtocol().receive("ghost", b"{}")


def test_the_whole_exchange_is_valid_json_on_both_sides() -> None:
    pm = PhaseManager()
    executing(pm, "wf-1")
    hub = HubProtocol()
    seen: list[bytes] = []
    client = CoordinatorProtocol(config(), pm)
    hub.connection_opened("c", client.handshake_headers())
    client.connection_made()
    while frames := client.take_outgoing():
        for data in frames:
            seen.append(data)
            for reply in hub.receive("c", data).send:
                seen.append(reply)
                client.receive(reply)
    assert len(seen) == 3  # register, registered, phase_changed
    for data in seen:
        document = orjson.loads(data)
        assert list(document)[:2] == ["id", "type"]
        assert MESSAGE_ID_PATTERN.fullmatch(document["id"])
