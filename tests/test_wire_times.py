"""Wire times: ``format_time`` (Rust) writes what Go's ``time.Time`` marshals to, and
``parse_time`` reads it back without loss, nanoseconds and offsets included."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnout._wire import PreciseDatetime, format_time, parse_time
from turnout.testing import strategies as ts

# Offsets in whole minutes, as RFC 3339 (and Go) write them.
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


def go_text(value: datetime, nanosecond: int) -> str:
    """An independent spelling of Go's RFC 3339 with nanoseconds, for comparison."""
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    nanos = value.microsecond * 1000 + nanosecond
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    offset = value.utcoffset() or timedelta(0)
    if not offset:
        return text + "Z"
    minutes = abs(int(offset.total_seconds())) // 60
    sign = "-" if offset < timedelta(0) else "+"
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.one_of(st.none(), offsets),
    st.integers(min_value=0, max_value=999),
)
def test_format_matches_go_and_parses_back(naive: datetime, tz: timezone | None, nano: int) -> None:
    value = naive if tz is None else naive.replace(tzinfo=tz)
    if nano:
        value = PreciseDatetime(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
            value.tzinfo,
            nanosecond=nano,
        )
    text = format_time(value)
    assert text == go_text(value, nano)
    back = parse_time(text)
    assert back.utcoffset() == (value.utcoffset() or timedelta(0))
    assert back.replace(tzinfo=None) == value.replace(tzinfo=None)
    assert getattr(back, "nanosecond", 0) == nano


@given(ts.go_times())
def test_every_go_time_reads_and_writes_back_unchanged(text: str) -> None:
    assert format_time(parse_time(text)) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(1, 1, 1, tzinfo=timezone.utc), "0001-01-01T00:00:00Z"),
        (
            datetime(2026, 12, 1, 9, 3, 30, 346610, tzinfo=timezone.utc),
            "2026-12-01T09:03:30.34661Z",
        ),
        (datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05Z"),  # naive: UTC
        (
            datetime(
                1999, 1, 1, 0, 0, 0, 100000, tzinfo=timezone(timedelta(hours=-5, minutes=-30))
            ),
            "1999-01-01T00:00:00.1-05:30",
        ),
    ],
)
def test_golden_times(value: datetime, text: str) -> None:
    assert format_time(value) == text


def test_not_a_datetime_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="must be a datetime, not str"):
        format_time("2026-01-01T00:00:00Z")  # type: ignore[arg-type]


def test_replace_keeps_or_sets_the_nanoseconds() -> None:
    value = PreciseDatetime(2026, 1, 2, 3, 4, 5, 6, timezone.utc, nanosecond=7)
    moved = value.replace(tzinfo=None)
    assert isinstance(moved, PreciseDatetime) and moved.nanosecond == 7
    assert moved.tzinfo is None and moved.microsecond == 6
    assert value.replace(nanosecond=0).nanosecond == 0
    assert format_time(value.replace(second=9)) == "2026-01-02T03:04:09.000006007Z"
