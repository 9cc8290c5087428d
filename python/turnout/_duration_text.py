"""Durations as Go prints them (``time.Duration.String``), for human-readable reports.

Reports ported from Go (coder's autostart results, Lacquer's progress lines) print
durations with ``%v``; writing them the same way keeps a Python run's output comparable,
line for line, with the Go tool's. The wire form of a duration (integer nanoseconds) is in
``turnout._wire``; this module is only about the text.
"""

from __future__ import annotations

__all__ = ["go_duration_text", "round_duration_ns"]

_MICROSECOND = 1_000
_MILLISECOND = 1_000_000
_SECOND = 1_000_000_000


def go_duration_text(nanoseconds: int) -> str:
    """``nanoseconds`` written as Go's ``Duration.String`` does: ``0s``, ``150ns``,
    ``1.5µs``, ``20ms``, ``1.25s``, ``2m0s``, ``1h0m0.5s``, with a ``-`` for negatives."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    size = abs(nanoseconds)
    if size < _MICROSECOND:
        return f"{sign}{size}ns"
    if size < _MILLISECOND:
        return f"{sign}{_decimal(size, _MICROSECOND, 3)}µs"
    if size < _SECOND:
        return f"{sign}{_decimal(size, _MILLISECOND, 6)}ms"
    minutes, rest = divmod(size, 60 * _SECOND)
    text = f"{_decimal(rest, _SECOND, 9)}s"
    if minutes:
        hours, minutes = divmod(minutes, 60)
        text = f"{minutes}m{text}"
        if hours:
            text = f"{hours}h{text}"
    return sign + text


def round_duration_ns(nanoseconds: int, unit: int) -> int:
    """``nanoseconds`` rounded to a multiple of ``unit``, halves away from zero (Go's
    ``Duration.Round``); a ``unit`` of 0 or less leaves the value unchanged."""
    if unit <= 0:
        return nanoseconds
    whole, rest = divmod(abs(nanoseconds), unit)
    if rest * 2 >= unit:
        whole += 1
    rounded = whole * unit
    return -rounded if nanoseconds < 0 else rounded


def _decimal(value: int, unit: int, digits: int) -> str:
    """``value / unit`` with up to ``digits`` fractional digits, trailing zeros (and a bare
    point) dropped."""
    whole, fraction = divmod(value, unit)
    if not fraction:
        return str(whole)
    return f"{whole}.{fraction:0{digits}d}".rstrip("0")
