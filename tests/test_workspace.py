"""turnout.workspace wire types, pubsub and handlers (coder's wspubsub)."""

from __future__ import annotations

import threading
from uuid import UUID

import orjson
import pytest

import turnout
from turnout.bus import Bus
from turnout.workspace import (
    ALL_WORKSPACE_EVENT_CHANNEL,
    EMPTY_WORKSPACE_BUILD_UPDATE,
    EMPTY_WORKSPACE_EVENT,
    NIL_UUID,
    BusPubsub,
    Cancel,
    MalformedMessageError,
    MemoryPubsub,
    ProvisionerJobStatus,
    Pubsub,
    PubsubClosedError,
    WorkspaceBuildUpdate,
    WorkspaceEvent,
    WorkspaceEventKind,
    WorkspaceMessageError,
    WorkspaceTransition,
    handle_workspace_build_update,
    handle_workspace_event,
    publish_workspace_build_update,
    workspace_event_channel,
)

WS = UUID("0b9e6a4c-6f6e-4d1e-9a57-3c2f0d1e2a3b")
AGENT = UUID("5d4c3b2a-1f0e-4d9c-8b7a-6a5b4c3d2e1f")
BUILD = UUID("9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a")
OWNER = UUID("C0FFEE00-0000-4000-8000-00000000BEEF")


def update(**changes: object) -> WorkspaceBuildUpdate:
    fields: dict[str, object] = {
        "workspace_id": WS,
        "workspace_name": "alice-dev",
        "build_id": BUILD,
        "transition": WorkspaceTransition.START,
        "job_status": ProvisionerJobStatus.SUCCEEDED,
        "build_number": 3,
    }
    fields.update(changes)
    return WorkspaceBuildUpdate(**fields)  # type: ignore[arg-type]


# --- WorkspaceEvent -------------------------------------------------------------------------


def test_event_kinds_are_coders() -> None:
    assert [k.value for k in WorkspaceEventKind] == [
        "state_change",
        "stats_update",
        "mtd_update",
        "app_health",
        "agt_lifecycle_update",
        "agt_connection_update",
        "agt_first_logs",
        "agt_logs_overflow",
        "agt_timeout",
        "agt_app_status_update",
    ]
    assert WorkspaceEventKind("mtd_update") is WorkspaceEventKind.METADATA_UPDATE
    assert str(WorkspaceEventKind.STATE_CHANGE) == "state_change"


def test_event_golden_json_omits_agent_id_when_none() -> None:
    event = WorkspaceEvent(WorkspaceEventKind.STATE_CHANGE, WS)
    assert event.to_json() == (
        b'{"kind":"state_change","workspace_id":"0b9e6a4c-6f6e-4d1e-9a57-3c2f0d1e2a3b"}'
    )


def test_event_golden_json_with_agent_id() -> None:
    event = WorkspaceEvent(WorkspaceEventKind.AGENT_LIFECYCLE_UPDATE, WS, AGENT)
    assert event.to_json() == (
        b'{"kind":"agt_lifecycle_update",'
        b'"workspace_id":"0b9e6a4c-6f6e-4d1e-9a57-3c2f0d1e2a3b",'
        b'"agent_id":"5d4c3b2a-1f0e-4d9c-8b7a-6a5b4c3d2e1f"}'
    )


def test_event_round_trip_and_lowercase_uuids() -> None:
    go = (
        b'{"kind":"agt_first_logs","workspace_id":"0B9E6A4C-6F6E-4D1E-9A57-3C2F0D1E2A3B",'
        b'"agent_id":"5d4c3b2a-1f0e-4d9c-8b7a-6a5b4c3d2e1f","ignored":[1,2]}'
    )
    event = WorkspaceEvent.from_json(go)
    assert event == WorkspaceEvent(WorkspaceEventKind.AGENT_FIRST_LOGS, WS, AGENT)
    assert event.kind is WorkspaceEventKind.AGENT_FIRST_LOGS
    assert b"0b9e6a4c-6f6e-4d1e-9a57-3c2f0d1e2a3b" in event.to_json()
    assert WorkspaceEvent.from_json(event.to_json()) == event


def test_event_reads_go_uuid_forms() -> None:
    for text in (
        "0b9e6a4c6f6e4d1e9a573c2f0d1e2a3b",
        "{0b9e6a4c-6f6e-4d1e-9a57-3c2f0d1e2a3b}",
        "urn:uuid:0b9e6a4c-6f6e-4d1e-9a57-3c2f0d1e2a3b",
    ):
        data = orjson.dumps({"kind": "state_change", "workspace_id": text})
        assert WorkspaceEvent.from_json(data).workspace_id == WS


def test_event_keeps_an_unknown_kind_as_a_string() -> None:
    event = WorkspaceEvent.from_json(
        b'{"kind":"future_kind","workspace_id":"%s"}' % str(WS).encode()
    )
    assert event.kind == "future_kind"
    assert not isinstance(event.kind, WorkspaceEventKind)
    assert event.to_json().startswith(b'{"kind":"future_kind"')


def test_validate_order_and_messages() -> None:
    # Every rule broken at once: the workspace id is reported first.
    with pytest.raises(ValueError, match=r"^workspaceID must be set$"):
        WorkspaceEvent("", NIL_UUID).validate()
    with pytest.raises(ValueError, match=r"^workspaceID must be set$"):
        WorkspaceEvent(WorkspaceEventKind.AGENT_LIFECYCLE_UPDATE, NIL_UUID).validate()
    with pytest.raises(ValueError, match=r"^kind must be set$"):
        WorkspaceEvent("", WS).validate()
    with pytest.raises(ValueError, match=r"^agentID must be set for Agent events$"):
        WorkspaceEvent(WorkspaceEventKind.AGENT_LIFECYCLE_UPDATE, WS).validate()
    # Only the lifecycle kind needs an agent id.
    WorkspaceEvent(WorkspaceEventKind.AGENT_TIMEOUT, WS).validate()
    WorkspaceEvent(WorkspaceEventKind.AGENT_CONNECTION_UPDATE, WS).validate()
    WorkspaceEvent(WorkspaceEventKind.AGENT_LIFECYCLE_UPDATE, WS, AGENT).validate()


def test_event_from_json_fills_zero_values_like_go_then_validates() -> None:
    partial = WorkspaceEvent.from_json(b'{"kind":null}', validate=False)
    assert partial == WorkspaceEvent("", NIL_UUID)
    with pytest.raises(ValueError, match="workspaceID must be set"):
        WorkspaceEvent.from_json(b"{}")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[1,2]",
        b'"state_change"',
        b'{"kind":5,"workspace_id":"0b9e6a4c-6f6e-4d1e-9a57-3c2f0d1e2a3b"}',
        b'{"kind":"state_change","workspace_id":"not-a-uuid"}',
        b'{"kind":"state_change","workspace_id":12}',
        b'{"kind":"state_change","workspace_id":"0b9e6a4c-6f6e-4d1e-9a57-3c2f0d1e2a3b",'
        b'"agent_id":"0b9e-6a4c6f6e4d1e9a573c2f0d1e2a3b"}',
    ],
)
def test_event_malformed_input_is_a_typed_error(data: bytes) -> None:
    with pytest.raises(MalformedMessageError):
        WorkspaceEvent.from_json(data)
    assert issubclass(MalformedMessageError, ValueError)


def test_event_constructor_checks_types() -> None:
    with pytest.raises(TypeError):
        WorkspaceEvent("state_change", str(WS))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        WorkspaceEvent(3, WS)  # type: ignore[arg-type]


def test_channels() -> None:
    assert ALL_WORKSPACE_EVENT_CHANNEL == "workspace_updates:all"
    expected = "workspace_owner:c0ffee00-0000-4000-8000-00000000beef"
    assert workspace_event_channel(OWNER) == expected
    assert workspace_event_channel(str(OWNER).upper()) == expected
    # Both are single literal subject tokens, so they work as bus subjects.
    assert turnout.is_valid_literal(expected)
    assert turnout.tokens(ALL_WORKSPACE_EVENT_CHANNEL) == [ALL_WORKSPACE_EVENT_CHANNEL]


# --- WorkspaceBuildUpdate ---------------------------------------------------------------------


GOLDEN_UPDATE = (
    b'{"workspace_id":"0b9e6a4c-6f6e-4d1e-9a57-3c2f0d1e2a3b","workspace_name":"alice-dev",'
    b'"build_id":"9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a","transition":"start",'
    b'"job_status":"succeeded","build_number":3}'
)


def test_build_update_golden_json_and_round_trip() -> None:
    assert update().to_json() == GOLDEN_UPDATE
    decoded = WorkspaceBuildUpdate.from_json(GOLDEN_UPDATE)
    assert decoded == update()
    assert decoded.transition is WorkspaceTransition.START
    assert decoded.job_status is ProvisionerJobStatus.SUCCEEDED
    # Strings and enum members are interchangeable.
    assert update(transition="start", job_status="succeeded") == update()
    assert update(transition="start").to_json() == GOLDEN_UPDATE
    # Go's encoder escapes <, > and & in strings; so does turnout, for identical bytes.
    html = update(workspace_name="a<b>&c")
    assert b'"workspace_name":"a\\u003cb\\u003e\\u0026c"' in html.to_json()
    assert WorkspaceBuildUpdate.from_json(html.to_json()) == html


def test_build_update_values() -> None:
    assert [t.value for t in WorkspaceTransition] == ["start", "stop", "delete"]
    assert [s.value for s in ProvisionerJobStatus] == [
        "pending",
        "running",
        "succeeded",
        "canceling",
        "canceled",
        "failed",
    ]


def test_build_update_validate() -> None:
    update().validate()
    update(build_number=2**31 - 1).validate()
    update(build_number=-(2**31)).validate()
    with pytest.raises(ValueError, match="transition"):
        update(transition="restart").validate()
    with pytest.raises(ValueError, match="job_status"):
        update(job_status="done").validate()
    with pytest.raises(ValueError, match="build_number"):
        update(build_number=2**31).validate()
    with pytest.raises(ValueError, match="build_number"):
        update(build_number=True).validate()
    with pytest.raises(ValueError, match="workspace_id"):
        update(workspace_id=str(WS)).validate()
    with pytest.raises(ValueError, match="workspace_name"):
        update(workspace_name=None).validate()


def _without(key: str) -> bytes:
    doc = orjson.loads(GOLDEN_UPDATE)
    del doc[key]
    return orjson.dumps(doc)


def _with(key: str, value: object) -> bytes:
    doc = orjson.loads(GOLDEN_UPDATE)
    doc[key] = value
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    "data",
    [
        b"{",
        b"null",
        b"[]",
        b'"x"',
        b"\xff\xfe",
        *(
            _without(key)
            for key in (
                "workspace_id",
                "workspace_name",
                "build_id",
                "transition",
                "job_status",
                "build_number",
            )
        ),
        _with("workspace_name", None),
        _with("workspace_name", 7),
        _with("workspace_id", "nope"),
        _with("build_id", ["x"]),
        _with("transition", "restart"),
        _with("transition", 1),
        _with("job_status", "done"),
        _with("build_number", "3"),
        _with("build_number", 3.0),
        _with("build_number", True),
        _with("build_number", 2**31),
    ],
)
def test_build_update_bad_input_is_a_typed_error(data: bytes) -> None:
    with pytest.raises(MalformedMessageError):
        WorkspaceBuildUpdate.from_json(data)


def test_build_update_from_json_rejects_non_bytes() -> None:
    with pytest.raises(MalformedMessageError):
        WorkspaceBuildUpdate.from_json(12)  # type: ignore[arg-type]


# --- MemoryPubsub -----------------------------------------------------------------------------


def test_memory_pubsub_delivers_in_subscription_order() -> None:
    ps = MemoryPubsub()
    got: list[tuple[str, bytes]] = []
    ps.subscribe("a", lambda m: got.append(("first", m)))
    ps.subscribe_with_err("a", lambda m, err: got.append(("second", m)) if err is None else None)
    ps.subscribe("b", lambda m: got.append(("other", m)))
    ps.publish("a", b"1")
    ps.publish("a", bytearray(b"2"))  # type: ignore[arg-type]
    assert got == [("first", b"1"), ("second", b"1"), ("first", b"2"), ("second", b"2")]
    assert all(type(message) is bytes for _, message in got)


def test_memory_pubsub_listener_cancels_itself_inside_its_callback() -> None:
    ps = MemoryPubsub()
    got: list[bytes] = []
    cancels: list[Cancel] = []

    def once(message: bytes) -> None:
        got.append(message)
        cancels[0]()

    cancels.append(ps.subscribe("a", once))
    ps.publish("a", b"1")
    ps.publish("a", b"2")
    assert got == [b"1"]
    cancels[0]()  # idempotent


def test_memory_pubsub_listener_subscribes_and_publishes_inside_its_callback() -> None:
    ps = MemoryPubsub()
    got: list[tuple[str, bytes]] = []

    def late(message: bytes) -> None:
        got.append(("late", message))

    def spawner(message: bytes) -> None:
        got.append(("spawner", message))
        if message == b"1":
            ps.subscribe("a", late)  # hears the next message, not this one
            ps.publish("b", b"nested")  # a re-entrant publish must not deadlock

    ps.subscribe("a", spawner)
    ps.subscribe("b", lambda m: got.append(("b", m)))
    ps.publish("a", b"1")
    ps.publish("a", b"2")
    assert got == [
        ("spawner", b"1"),
        ("b", b"nested"),
        ("spawner", b"2"),
        ("late", b"2"),
    ]


def test_memory_pubsub_listener_cancelled_mid_publish_hears_nothing_more() -> None:
    ps = MemoryPubsub()
    got: list[str] = []
    cancel_second: list[object] = []

    def first(message: bytes) -> None:
        got.append("first")
        cancel = cancel_second[0]
        assert callable(cancel)
        cancel()

    ps.subscribe("a", first)
    cancel_second.append(ps.subscribe("a", lambda m: got.append("second")))
    ps.publish("a", b"x")
    assert got == ["first"]


def test_memory_pubsub_listener_error_is_counted_and_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ps = MemoryPubsub()
    got: list[bytes] = []

    def broken(message: bytes) -> None:
        raise RuntimeError("listener bug")

    ps.subscribe("a", broken)
    ps.subscribe("a", got.append)
    ps.publish("a", b"x")
    assert got == [b"x"]
    assert ps.listener_errors == 1
    assert "listener bug" in caplog.text


def test_memory_pubsub_close() -> None:
    ps = MemoryPubsub()
    got: list[bytes] = []
    cancel = ps.subscribe("a", got.append)
    ps.close()
    ps.close()
    cancel()
    with pytest.raises(PubsubClosedError):
        ps.publish("a", b"x")
    with pytest.raises(PubsubClosedError):
        ps.subscribe("a", got.append)
    assert got == []


def test_memory_pubsub_is_thread_safe() -> None:
    ps = MemoryPubsub()
    threads_n, messages_n = 8, 300
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def count(message: bytes) -> None:
        with lock:
            counts[message.decode()] = counts.get(message.decode(), 0) + 1

    steady = ps.subscribe("steady", count)

    def churn_and_publish(n: int) -> None:
        for i in range(messages_n):
            cancel = ps.subscribe("steady", lambda m: None)
            ps.publish("steady", f"t{n}".encode())
            if i % 2:
                cancel()

    threads = [threading.Thread(target=churn_and_publish, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    steady()
    assert counts == {f"t{n}": messages_n for n in range(threads_n)}


# --- handlers ---------------------------------------------------------------------------------


def test_handle_workspace_event_good_message() -> None:
    seen: list[tuple[WorkspaceEvent, WorkspaceMessageError | None]] = []
    listener = handle_workspace_event(lambda payload, err: seen.append((payload, err)))
    event = WorkspaceEvent(WorkspaceEventKind.STATS_UPDATE, WS)
    listener(event.to_json(), None)
    assert seen == [(event, None)]


def test_handle_workspace_event_pubsub_error() -> None:
    seen: list[tuple[WorkspaceEvent, WorkspaceMessageError | None]] = []
    listener = handle_workspace_event(lambda payload, err: seen.append((payload, err)))
    cause = RuntimeError("dropped messages")
    listener(b"", cause)
    [(payload, err)] = seen
    assert payload == EMPTY_WORKSPACE_EVENT == WorkspaceEvent("", NIL_UUID)
    assert isinstance(err, WorkspaceMessageError)
    assert str(err) == "workspace event pubsub: dropped messages"
    assert err.__cause__ is cause


@pytest.mark.parametrize(
    "message",
    [b"{nope", b"[]", b'{"kind":1}', b'{"kind":"state_change","workspace_id":"zz"}'],
)
def test_handle_workspace_event_unmarshal_error(message: bytes) -> None:
    seen: list[tuple[WorkspaceEvent, WorkspaceMessageError | None]] = []
    listener = handle_workspace_event(lambda payload, err: seen.append((payload, err)))
    listener(message, None)
    [(payload, err)] = seen
    assert payload == EMPTY_WORKSPACE_EVENT
    assert str(err) == "unmarshal workspace event"
    assert isinstance(err, WorkspaceMessageError)
    assert isinstance(err.__cause__, MalformedMessageError)


def test_handle_workspace_event_validation_error_carries_the_partial_payload() -> None:
    seen: list[tuple[WorkspaceEvent, WorkspaceMessageError | None]] = []
    listener = handle_workspace_event(lambda payload, err: seen.append((payload, err)))
    partial = WorkspaceEvent(WorkspaceEventKind.AGENT_LIFECYCLE_UPDATE, WS)
    listener(partial.to_json(), None)
    [(payload, err)] = seen
    assert payload == partial
    assert isinstance(err, WorkspaceMessageError)
    assert str(err) == "validate workspace event"
    assert str(err.__cause__) == "agentID must be set for Agent events"


def test_handle_workspace_build_update() -> None:
    seen: list[tuple[WorkspaceBuildUpdate, WorkspaceMessageError | None]] = []
    listener = handle_workspace_build_update(lambda payload, err: seen.append((payload, err)))
    listener(GOLDEN_UPDATE, None)
    listener(b"", OSError("connection lost"))
    listener(_with("job_status", "exploded"), None)
    listener(b"garbage", None)
    assert seen[0] == (update(), None)
    assert seen[1][0] == EMPTY_WORKSPACE_BUILD_UPDATE
    assert str(seen[1][1]) == "workspace build update pubsub: connection lost"
    for payload, err in seen[2:]:
        assert payload == EMPTY_WORKSPACE_BUILD_UPDATE
        assert str(err).startswith("unmarshal workspace build update: ")
        assert isinstance(err.__cause__ if err else None, MalformedMessageError)


def test_publish_workspace_build_update_on_the_all_channel() -> None:
    ps = MemoryPubsub()
    seen: list[tuple[WorkspaceBuildUpdate, WorkspaceMessageError | None]] = []
    raw: list[bytes] = []
    ps.subscribe_with_err(
        ALL_WORKSPACE_EVENT_CHANNEL,
        handle_workspace_build_update(lambda payload, err: seen.append((payload, err))),
    )
    ps.subscribe(ALL_WORKSPACE_EVENT_CHANNEL, raw.append)
    publish_workspace_build_update(ps, update())
    assert seen == [(update(), None)]
    assert raw == [GOLDEN_UPDATE]
    with pytest.raises(ValueError, match="job_status"):
        publish_workspace_build_update(ps, update(job_status="bogus"))
    assert len(raw) == 1


# --- BusPubsub --------------------------------------------------------------------------------


def test_bus_pubsub_carries_workspace_events_over_a_bus() -> None:
    with Bus(node="n1") as bus:
        ps: Pubsub = BusPubsub(bus)
        seen: list[tuple[WorkspaceEvent, WorkspaceMessageError | None]] = []
        channel = workspace_event_channel(OWNER)
        cancel = ps.subscribe_with_err(
            channel, handle_workspace_event(lambda payload, err: seen.append((payload, err)))
        )
        others: list[bytes] = []
        ps.subscribe(workspace_event_channel(WS), others.append)
        event = WorkspaceEvent(WorkspaceEventKind.STATE_CHANGE, WS)
        ps.publish(channel, event.to_json())
        ps.publish(channel, b"{bad")
        cancel()
        cancel()
        ps.publish(channel, event.to_json())
        assert seen[0] == (event, None)
        assert str(seen[1][1]) == "unmarshal workspace event"
        assert len(seen) == 2
        assert others == []
        ps.close()


def test_bus_pubsub_build_updates_and_the_raw_bytes() -> None:
    with Bus(node="n1") as bus:
        ps = BusPubsub(bus)
        seen: list[WorkspaceBuildUpdate] = []
        raw: list[bytes] = []
        ps.subscribe_with_err(
            ALL_WORKSPACE_EVENT_CHANNEL,
            handle_workspace_build_update(lambda payload, err: seen.append(payload)),
        )
        # A plain bus subscriber sees the same bytes on the same literal subject.
        bus.subscribe(ALL_WORKSPACE_EVENT_CHANNEL, lambda m: raw.append(m.data), raw=True)
        publish_workspace_build_update(ps, update())
        assert seen == [update()]
        assert raw == [GOLDEN_UPDATE]


@pytest.mark.parametrize("channel", ["", "a b", "workspace_owner.*", "a.>", "a..b", ">"])
def test_bus_pubsub_refuses_channels_that_are_not_literal_subjects(channel: str) -> None:
    with Bus() as bus:
        ps = BusPubsub(bus)
        with pytest.raises(turnout.InvalidSubjectError):
            ps.subscribe(channel, lambda m: None)
        with pytest.raises(turnout.InvalidSubjectError):
            ps.publish(channel, b"x")


def test_bus_pubsub_close_ends_its_subscriptions_not_the_bus() -> None:
    with Bus() as bus:
        ps = BusPubsub(bus)
        got: list[bytes] = []
        ps.subscribe("chan", got.append)
        ps.close()
        bus.publish("chan", b"after close")
        assert got == []
        assert not bus.closed
        with pytest.raises(PubsubClosedError):
            ps.publish("chan", b"x")
        with pytest.raises(PubsubClosedError):
            ps.subscribe("chan", got.append)
