"""The event envelope: Go-compatible JSON both ways, constructors, typed errors."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout import events
from turnout._wire import PreciseDatetime
from turnout.events import Event, EventDecodeError, EventEncodeError
from turnout.testing import strategies as ts

ZERO = '"timestamp":"0001-01-01T00:00:00Z"'


def golden(kind: str, node: str, data: str) -> bytes:
    return f'{{"type":"{kind}","node":"{node}",{ZERO},"data":{data}}}'.encode()


# What jb-mesh's Go constructors marshal to (they leave the timestamp unset).
CONSTRUCTORS = [
    (
        events.tool_installed("n1", "whisper", "v1.0.0"),
        golden("tool.installed", "n1", '{"tool":"whisper","version":"v1.0.0"}'),
    ),
    (
        events.tool_configured("n1", "whisper", {"threads": 4, "model": "base"}),
        golden("tool.configured", "n1", '{"config":{"model":"base","threads":4},"tool":"whisper"}'),
    ),
    (
        events.tool_configured("n1", "whisper", None),
        golden("tool.configured", "n1", '{"config":null,"tool":"whisper"}'),
    ),
    (events.tool_started("n1", "embed"), golden("tool.started", "n1", '{"tool":"embed"}')),
    (
        events.tool_stopped("n1", "whisper", "user"),
        golden("tool.stopped", "n1", '{"reason":"user","tool":"whisper"}'),
    ),
    (
        events.tool_crashed("n1", "whisper", RuntimeError("OOM killed"), 2),
        golden("tool.crashed", "n1", '{"error":"OOM killed","restart_count":2,"tool":"whisper"}'),
    ),
    (events.tool_removed("n1", "calc"), golden("tool.removed", "n1", '{"tool":"calc"}')),
    (
        events.node_joined("n1", {"vram_gb": 24, "gpu": True}),
        golden("node.joined", "n1", '{"capabilities":{"gpu":true,"vram_gb":24}}'),
    ),
    (events.node_joined("n1", None), golden("node.joined", "n1", '{"capabilities":null}')),
    (events.node_left("n1", "shutdown"), golden("node.left", "n1", '{"reason":"shutdown"}')),
    (
        events.node_health("n1", "online", {"gpu_util": 0.45}),
        golden("node.health", "n1", '{"resources":{"gpu_util":0.45},"status":"online"}'),
    ),
    (
        events.node_health("n1", "online", None),
        golden("node.health", "n1", '{"resources":null,"status":"online"}'),
    ),
    (
        events.user_event(
            "n1", "training.complete", {"model": "my-fine-tune", "epochs": 100, "loss": 0.023}
        ),
        golden(
            "user.training.complete",
            "n1",
            '{"epochs":100,"loss":0.023,"model":"my-fine-tune"}',
        ),
    ),
    (events.user_event("n1", "custom.topic", None), golden("user.custom.topic", "n1", "null")),
]


@pytest.mark.parametrize(("event", "expected"), CONSTRUCTORS)
def test_constructors_marshal_as_go_does(event: Event, expected: bytes) -> None:
    assert event.to_json() == expected
    assert Event.from_json(expected) == event


def test_constructor_types_and_subjects() -> None:
    assert events.tool_installed("n", "t", "v").type == events.TOOL_INSTALLED == "tool.installed"
    assert events.tool_configured("n", "t", None).type == events.TOOL_CONFIGURED
    assert events.tool_started("n", "t").type == events.TOOL_STARTED
    assert events.tool_stopped("n", "t", "r").type == events.TOOL_STOPPED
    assert events.tool_crashed("n", "t", "boom", 1).type == events.TOOL_CRASHED
    assert events.tool_removed("n", "t").type == events.TOOL_REMOVED
    assert events.node_joined("n", None).type == events.NODE_JOINED == "node.joined"
    assert events.node_left("n", "r").type == events.NODE_LEFT
    assert events.node_health("n", "ok", None).type == events.NODE_HEALTH
    assert events.user_event("n", "a.b", {}).type == "user.a.b"
    assert events.tool_crashed("n", "t", ValueError("bad"), 3).data == {
        "tool": "t",
        "error": "bad",
        "restart_count": 3,
    }
    assert events.tool_started("n", "t").subject == "events.tool.started"
    for event, _ in CONSTRUCTORS:
        assert event.node == "n1"
        assert event.timestamp is None


@pytest.mark.parametrize(
    ("timestamp", "text"),
    [
        (datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc), "2024-05-01T12:00:00Z"),
        (datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=timezone.utc), "2024-05-01T12:00:00.5Z"),
        (
            datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc),
            "2024-05-01T12:00:00.123456Z",
        ),
        (
            PreciseDatetime(2024, 5, 1, 12, 0, 0, 123456, timezone.utc, nanosecond=789),
            "2024-05-01T12:00:00.123456789Z",
        ),
        (
            datetime(2024, 5, 1, 14, 0, 0, 1000, tzinfo=timezone(timedelta(hours=2))),
            "2024-05-01T14:00:00.001+02:00",
        ),
        (
            datetime(2024, 5, 1, 6, 30, 0, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
            "2024-05-01T06:30:00-05:30",
        ),
        (None, "0001-01-01T00:00:00Z"),
    ],
)
def test_timestamps_written_as_go_writes_them(timestamp: datetime | None, text: str) -> None:
    event = Event("tool.started", "n", timestamp, None)
    encoded = event.to_json()
    assert (
        encoded == f'{{"type":"tool.started","node":"n","timestamp":"{text}","data":null}}'.encode()
    )
    assert Event.from_json(encoded) == event


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00.123Z",
        "2024-05-01T12:00:00.123456Z",
        "2024-05-01T12:00:00.123456789Z",
        "2024-05-01T12:00:00.000000001Z",
        "2024-05-01T12:00:00.1+02:00",
        "2024-05-01T12:00:00.987654321-07:00",
        "2024-05-01T12:00:00+00:30",
    ],
)
def test_timestamps_from_go_echo_back_unchanged(text: str) -> None:
    wire = f'{{"type":"node.left","node":"go","timestamp":"{text}","data":{{"reason":"x"}}}}'
    event = Event.from_json(wire)
    assert event.timestamp is not None
    assert event.timestamp.tzinfo is not None
    assert event.to_json() == wire.encode()


def test_nanoseconds_are_kept() -> None:
    event = Event.from_json('{"type":"a","timestamp":"2024-05-01T12:00:00.123456789Z"}')
    assert isinstance(event.timestamp, PreciseDatetime)
    assert event.timestamp.microsecond == 123456
    assert event.timestamp.nanosecond == 789


def test_missing_and_null_fields_take_go_zero_values() -> None:
    assert Event.from_json(b'{"type":"tool.started"}') == Event("tool.started")
    assert Event.from_json(
        b'{"type":"tool.started","node":null,"timestamp":null,"data":null}'
    ) == Event("tool.started")
    zero = Event.from_json(b'{"type":"t","timestamp":"0001-01-01T00:00:00Z"}')
    assert zero.timestamp is None
    assert zero.to_json() == golden("t", "", "null")


def test_keys_match_case_insensitively_last_wins_unknown_ignored() -> None:
    event = Event.from_json(
        b'{"Type":"tool.started","NODE":"a","extra":[1,2],"node":"b","Data":{"k":1}}'
    )
    assert event == Event("tool.started", "b", None, {"k": 1})
    assert Event.from_json(b'{"type":"a","Type":"b"}').type == "b"


def test_str_input_and_whitespace() -> None:
    text = ' { "type" : "x.y" ,\n "node" : "n" } '
    assert Event.from_json(text) == Event("x.y", "n")
    assert Event.from_json(bytearray(text.encode())) == Event("x.y", "n")


def test_data_keys_sorted_as_go_sorts_them_at_every_depth() -> None:
    data = {"b": {"z": 1, "a": 2}, "a": [{"y": 1, "x": 2}], "é": 1, "\U00010000": 2, "\uffff": 3}
    encoded = Event("t", "n", None, data).to_json()
    inner = encoded[encoded.index(b'"data":') + 7 : -1]
    assert inner == (
        '{"a":[{"x":2,"y":1}],"b":{"a":2,"z":1},"é":1,"\uffff":3,"\U00010000":2}'.encode()
    )


def test_html_characters_and_line_separators_escaped_as_go_does() -> None:
    event = Event("t", "<n&>", None, {"s": "a<b>&c\u2028\u2029", "<k>": "\x01\n\t\b\f"})
    assert event.to_json() == (
        b'{"type":"t","node":"\\u003cn\\u0026\\u003e","timestamp":"0001-01-01T00:00:00Z",'
        b'"data":{"\\u003ck\\u003e":"\\u0001\\n\\t\\b\\f",'
        b'"s":"a\\u003cb\\u003e\\u0026c\\u2028\\u2029"}}'
    )
    assert Event.from_json(event.to_json()) == event


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.5, "0.5"),
        (-2.0, "-2"),
        (0.023, "0.023"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e300, "1.5e+300"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1.5e-10, "1.5e-10"),
        (123456789.125, "123456789.125"),
        (-0.0, "-0"),
        (5e-324, "5e-324"),
    ],
)
def test_floats_written_in_go_form(value: float, text: str) -> None:
    encoded = Event("t", "n", None, {"v": value, "l": [value]}).to_json()
    assert encoded.endswith(f'"data":{{"l":[{text}],"v":{text}}}}}'.encode())
    decoded = Event.from_json(encoded).data
    assert decoded is not None
    assert decoded["v"] == value


def test_datetimes_inside_data_written_as_go_times() -> None:
    stamp = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=timezone.utc)
    assert b'"data":{"at":"2024-05-01T12:00:00.25Z"}' in Event("t", data={"at": stamp}).to_json()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b'{"type":"a",}',
        b"not json",
        b'{"type":"a"} trailing',
        b"\xff\xfe",
    ],
)
def test_malformed_json_raises_typed_error(raw: bytes) -> None:
    with pytest.raises(EventDecodeError, match="malformed"):
        Event.from_json(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[]", "expected an object, not array"),
        (b'"tool.started"', "expected an object, not string"),
        (b"null", "expected an object, not null"),
        (b"{}", "has no type"),
        (b'{"type":null}', "has no type"),
        (b'{"type":""}', "has no type"),
        (b'{"type":7}', "type: expected a string, not number"),
        (b'{"type":"a","node":true}', "node: expected a string, not boolean"),
        (b'{"type":"a","timestamp":1714564800}', "timestamp: expected a string, not number"),
        (b'{"type":"a","timestamp":"yesterday"}', "bad event timestamp"),
        (b'{"type":"a","timestamp":"2024-13-01T00:00:00Z"}', "bad event timestamp"),
        (b'{"type":"a","data":[1]}', "data: expected an object, not array"),
        (b'{"type":"a","data":"x"}', "data: expected an object, not string"),
    ],
)
def test_wrong_types_and_missing_type_raise_typed_error(raw: bytes, message: str) -> None:
    with pytest.raises(EventDecodeError, match=message):
        Event.from_json(raw)


def test_decode_error_is_a_value_error() -> None:
    assert issubclass(EventDecodeError, ValueError)
    assert issubclass(EventEncodeError, ValueError)
    with pytest.raises(TypeError):
        Event.from_json(12)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "event",
    [
        Event("t", data={"v": math.nan}),
        Event("t", data={"v": [math.inf]}),
        Event("t", data={1: "non-string key"}),  # type: ignore[dict-item]
        Event("t", data={"v": object()}),
        Event("t", timestamp="2024-05-01"),  # type: ignore[arg-type]
        Event("t", data=[1, 2]),  # type: ignore[arg-type]
        Event(7),  # type: ignore[arg-type]
    ],
)
def test_unencodable_events_raise_typed_error(event: Event) -> None:
    with pytest.raises(EventEncodeError):
        event.to_json()


# Any type and node text (the envelope carries them as they are): UTF-8-able text.
text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=8)


@settings(max_examples=100, deadline=None)
@given(ts.events(), st.one_of(st.none(), st.tuples(text.filter(bool), text)))
def test_round_trip(event: Event, renamed: tuple[str, str] | None) -> None:
    if renamed is not None:
        event = Event(renamed[0], renamed[1], event.timestamp, event.data)
    encoded = event.to_json()
    decoded = Event.from_json(encoded)
    assert (decoded.type, decoded.node, decoded.timestamp) == (
        event.type,
        event.node,
        event.timestamp,
    )
    assert as_go_reads_it(decoded.data) == as_go_reads_it(event.data)
    assert decoded.to_json() == encoded


@given(ts.go_times())
def test_any_go_timestamp_echoes_back_unchanged(stamp: str) -> None:
    wire = f'{{"type":"node.left","node":"go","timestamp":"{stamp}","data":null}}'
    assert Event.from_json(wire).to_json() == wire.encode()


def as_go_reads_it(value: Any) -> Any:
    """Go decodes every JSON number as a float64: so must the comparison (a float such as
    4.084010310008269e+16 is written in full and read back by Python as an int)."""
    if isinstance(value, dict):
        return {key: as_go_reads_it(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_go_reads_it(item) for item in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("2024-05-01T12:00:00,5Z", "2024-05-01T12:00:00.5Z"),
        ("2024-05-01T12:00:00.1234567891Z", "2024-05-01T12:00:00.123456789Z"),
        ("2024-05-01T2:00:00Z", "2024-05-01T02:00:00Z"),
        ("2024-05-01T12:00:00+24:00", "2024-05-01T12:00:00+24:00"),
        ("0000-01-01T00:00:00Z", "0000-01-01T00:00:00Z"),
    ],
)
def test_timestamps_go_accepts_are_read_and_written_back(text: str, written: str) -> None:
    event = Event.from_json(f'{{"type":"a","timestamp":"{text}"}}')
    assert event.to_json() == golden("a", "", "null").replace(
        ZERO.encode(), f'"timestamp":"{written}"'.encode()
    )


def test_times_python_cannot_hold() -> None:
    day = Event.from_json(b'{"type":"a","timestamp":"2024-05-01T12:00:00+24:00"}')
    assert day.timestamp == datetime(2024, 4, 30, 12, 0, tzinfo=timezone.utc)
    year_zero = Event.from_json(b'{"type":"a","timestamp":"0000-01-01T00:00:00Z"}')
    with pytest.raises(ValueError, match="outside the years"):
        _ = year_zero.timestamp
    assert "0000-01-01T00:00:00Z" in repr(year_zero)


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01t12:00:00Z",
        "2024-05-01 12:00:00Z",
        "2024-05-01T12:00:00z",
        "2024-05-01T12:00:60Z",
    ],
)
def test_timestamps_go_refuses_are_refused(text: str) -> None:
    with pytest.raises(EventDecodeError, match="bad event timestamp"):
        Event.from_json(f'{{"type":"a","timestamp":"{text}"}}')


def test_negative_zero_is_kept_as_go_keeps_it() -> None:
    wire = b'{"type":"a","node":"","timestamp":"0001-01-01T00:00:00Z","data":{"v":-0,"w":[-0.0]}}'
    event = Event.from_json(wire)
    assert event.data is not None
    assert math.copysign(1.0, event.data["v"]) < 0
    assert event.to_json() == wire.replace(b"-0.0", b"-0")


def test_numbers_read_as_go_reads_them_into_an_interface() -> None:
    event = Event.from_json(b'{"type":"a","data":{"i":3,"f":3.0,"big":18446744073709551616}}')
    assert event.data == {"i": 3, "f": 3.0, "big": 1.8446744073709552e19}
    assert isinstance(event.data["i"], int) and isinstance(event.data["f"], float)


def test_null_leaves_a_field_and_a_second_data_object_adds_to_the_first() -> None:
    event = Event.from_json(b'{"type":"a","type":null,"data":{"x":1},"data":{"y":2}}')
    assert event == Event("a", "", None, {"x": 1, "y": 2})
    assert Event.from_json(b'{"type":"a","data":{"x":1},"data":null}').data is None


def test_events_are_immutable_and_replace_makes_copies() -> None:
    event = Event("a", "n", None, {"k": 1})
    with pytest.raises(AttributeError):
        event.node = "m"  # type: ignore[misc]
    moved = event.replace(node="m", timestamp=datetime(2024, 1, 1, tzinfo=timezone.utc))
    assert (event.node, moved.node, moved.type, moved.data) == ("n", "m", "a", {"k": 1})
    assert event.timestamp is None
    with pytest.raises(TypeError, match="no field"):
        event.replace(kind="b")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        hash(event)


def test_pickle_and_repr() -> None:
    import pickle

    event = Event.from_json(b'{"type":"a","node":"n","timestamp":"2024-05-01T12:00:00.000000001Z"}')
    assert pickle.loads(pickle.dumps(event)) == event
    assert repr(Event("a", "n")) == "Event(type='a', node='n', timestamp=None, data=None)"


def test_decoded_and_stamped_times_compare_by_instant() -> None:
    a = Event.from_json(b'{"type":"a","timestamp":"2024-05-01T14:00:00+02:00"}')
    b = Event.from_json(b'{"type":"a","timestamp":"2024-05-01T12:00:00Z"}')
    assert a == b
    assert a == Event("a", "", datetime(2024, 5, 1, 12, tzinfo=timezone.utc))
    assert a != Event("a", "", datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=timezone.utc))
