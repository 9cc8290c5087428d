"""Go-compatible wire values: RFC 3339 timestamps with nanoseconds, and durations.

Go's ``time.Time`` marshals as RFC 3339 with 0 to 9 fractional digits (trailing zeros
trimmed) and ``Z`` or a ``+hh:mm`` offset; the zero time (year 1) stands for "unset".
Writing and reading are Rust's (``format_time``, ``parse_time``: what Go's decoder accepts,
a comma before the fraction, more than nine digits, offsets up to 24 hours, given in UTC
when Python cannot hold them).
Python's ``datetime`` stops at microseconds, so a timestamp read with more digits comes
back as :class:`PreciseDatetime`, a ``datetime`` that remembers the extra nanoseconds and
writes them again when echoed. A ``time.Duration`` is an integer count of nanoseconds.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from turnout._core import _set_precise_datetime, format_time, parse_time

__all__ = [
    "ZERO_TIME",
    "PreciseDatetime",
    "duration_from_ns",
    "duration_to_ns",
    "format_time",
    "is_zero_time",
    "parse_time",
    "with_nanoseconds",
]

#: Go's zero ``time.Time``: what a missing timestamp means.
ZERO_TIME = datetime(1, 1, 1, tzinfo=timezone.utc)


class PreciseDatetime(datetime):
    """A ``datetime`` carrying the nanoseconds below its microsecond (0-999)."""

    nanosecond: int

    def __new__(cls, *args: Any, nanosecond: int = 0, **kwargs: Any) -> PreciseDatetime:
        if not 0 <= nanosecond <= 999:
            raise ValueError(f"nanosecond must be in 0..999, not {nanosecond}")
        self = super().__new__(cls, *args, **kwargs)
        self.nanosecond = nanosecond
        return self

    def __reduce_ex__(self, protocol: Any) -> Any:
        # datetime pickles through __reduce_ex__, which would drop the nanoseconds.
        base = self.replace(tzinfo=None)
        return (
            _rebuild_precise,
            (datetime(*base.timetuple()[:6], base.microsecond), self.tzinfo, self.nanosecond),
        )

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, nanosecond={self.nanosecond})"

    def replace(self, *args: Any, nanosecond: int | None = None, **kwargs: Any) -> PreciseDatetime:
        """``datetime.replace`` keeping the nanoseconds (or setting them): the C
        implementation makes the copy without calling ``__new__``, which would leave it
        without them."""
        kept = self.nanosecond if nanosecond is None else nanosecond
        return _precise(datetime.replace(self, *args, **kwargs), kept)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, datetime):
            return super().__eq__(other) and self.nanosecond == getattr(other, "nanosecond", 0)
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        # datetime's C-level __ne__ would ignore the nanoseconds.
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash((super().__hash__(), self.nanosecond))


def _precise(base: datetime, nanosecond: int) -> PreciseDatetime:
    return PreciseDatetime(
        base.year,
        base.month,
        base.day,
        base.hour,
        base.minute,
        base.second,
        base.microsecond,
        base.tzinfo,
        fold=base.fold,
        nanosecond=nanosecond,
    )


def with_nanoseconds(base: datetime, nanosecond: int) -> datetime:
    """``base`` with ``nanosecond`` (0-999) below its microsecond: ``base`` itself when
    that is 0, else a :class:`PreciseDatetime`."""
    return _precise(base, nanosecond) if nanosecond else base


# Rust makes these for times read with nanoseconds (parse_time, Event.timestamp).
_set_precise_datetime(PreciseDatetime)


def _rebuild_precise(base: datetime, tz: Any, nanosecond: int) -> PreciseDatetime:
    return _precise(base.replace(tzinfo=tz), nanosecond)


def is_zero_time(value: datetime | None) -> bool:
    """Whether ``value`` is unset: None or Go's zero time."""
    return value is None or value == ZERO_TIME


def duration_to_ns(value: timedelta) -> int:
    """A ``timedelta`` as Go's ``time.Duration``: integer nanoseconds."""
    return (value.days * 86_400 + value.seconds) * 1_000_000_000 + value.microseconds * 1000


def duration_from_ns(nanos: int) -> timedelta:
    """Go's ``time.Duration`` (integer nanoseconds) as a ``timedelta`` (to the microsecond,
    truncated toward zero as Go's ``Duration.Microseconds`` does)."""
    if isinstance(nanos, bool) or not isinstance(nanos, int):
        raise TypeError(f"duration must be integer nanoseconds, not {type(nanos).__name__}")
    micros = abs(nanos) // 1000
    return timedelta(microseconds=micros if nanos >= 0 else -micros)
