"""``history_since`` filters by time in the Rust ring: checked against the Python model it
replaced (every matching event, its timestamp compared in Python), over events whose time
the ring reads itself (stamped by a bus, decoded from JSON, with offsets and nanoseconds)
mixed with events whose timestamp was given to the constructor (aware, naive, none)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from turnout import Bus, Event, MemoryHistory
from turnout._core import HistoryRing
from turnout._wire import ZERO_TIME
from turnout.history import _instant_ns

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
SUBJECTS = ("events.a", "events.b.c", "events.b.d")
FILTERS = ("events.>", "events.a", "events.b.*", "events.x")


def model(
    store: MemoryHistory, filter: str, since: datetime, limit: int, newest: bool
) -> list[Event]:
    """The Python filter ``history_since`` used before."""
    if limit <= 0:
        return []
    since_ns = _instant_ns(since)
    chosen = [
        event
        for event in store.history(filter, 1 << 40)
        if _instant_ns(event.timestamp or ZERO_TIME) >= since_ns
    ]
    return chosen[-limit:] if newest else chosen[:limit]


@st.composite
def events(draw: st.DrawFn) -> Event:
    offset_ns = draw(st.integers(-3, 3)) * 1_000_000_000 + draw(st.sampled_from([0, 1, 999, 1000]))
    how = draw(st.sampled_from(["decoded", "aware", "other zone", "naive", "none"]))
    at = T0 + timedelta(microseconds=offset_ns // 1000)
    if how == "decoded":
        zone = draw(st.sampled_from([0, 2, -5]))
        local = T0.astimezone(timezone(timedelta(hours=zone)))
        nanos = offset_ns % 1_000_000_000
        moved = local + timedelta(seconds=offset_ns // 1_000_000_000)
        sign, hours = ("+" if zone >= 0 else "-"), abs(zone)
        stamp = f"{moved:%Y-%m-%dT%H:%M:%S}.{nanos:09d}{sign}{hours:02d}:00"
        raw = f'{{"type":"k","node":"n","timestamp":"{stamp}","data":null}}'
        return Event.from_json(raw.encode())
    if how == "aware":
        return Event("k", "n", at)
    if how == "other zone":
        return Event("k", "n", at.astimezone(timezone(timedelta(hours=-7))))
    if how == "naive":
        return Event("k", "n", at.replace(tzinfo=None))
    return Event("k", "n", None)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(SUBJECTS), events()), max_size=30),
    st.sampled_from(FILTERS),
    st.integers(-4, 4),
    st.sampled_from([0, 1, 999, 1000]),
    st.integers(0, 12),
    st.booleans(),
)
def test_history_since_agrees_with_the_python_model(
    records: list[tuple[str, Event]],
    filter: str,
    since_seconds: int,
    since_nanos: int,
    limit: int,
    newest: bool,
) -> None:
    store = MemoryHistory(max_age=None, max_msgs=0)
    for subject, event in records:
        store.append(subject, event)
    since = T0 + timedelta(seconds=since_seconds, microseconds=since_nanos // 1000)
    got = store.history_since(filter, since, limit, newest=newest)
    assert [id(e) for e in got] == [id(e) for e in model(store, filter, since, limit, newest)]


def test_events_a_bus_stamped_are_filtered_by_their_stamp() -> None:
    with Bus(history=MemoryHistory(max_age=None, max_msgs=0)) as bus:
        for i in range(5):
            bus.emit(Event("tick", data={"i": i}))
        stamped = bus.history("events.>", 10)
        third = stamped[2].timestamp
        assert third is not None
        found = bus.history_since("events.tick", third, 2)
        assert [e.data for e in found] == [{"i": 2}, {"i": 3}]
        assert bus.history_since("events.tick", third, 2, newest=True) == stamped[3:]


def test_the_ring_reads_the_time_of_stamped_and_decoded_events_itself() -> None:
    ring = HistoryRing(0, 0, None)
    with Bus(history=MemoryHistory(max_age=None, max_msgs=0)) as bus:
        bus.emit(Event("tick"))
        (stamped,) = bus.history("events.>", 1)
    decoded = Event.from_json(Event("tock", "n", T0).to_json())
    given_time = Event("tack", "n", T0)
    for event in (stamped, decoded, given_time):
        ring.append(f"events.{event.type}", event)
    asked: list[Event] = []

    def event_ns(event: Event) -> int:
        asked.append(event)
        return _instant_ns(event.timestamp or ZERO_TIME)

    since_ns = _instant_ns(T0)
    assert ring.select_since("events.>", since_ns, 10, False, event_ns) == [
        stamped,
        decoded,
        given_time,
    ]
    assert asked == [given_time]  # only the one whose timestamp was given
    assert ring.select_since("events.>", since_ns + 1, 10, False, event_ns) == [stamped]
