"""JSON bytes as Go's ``encoding/json`` writes them, for the coordination wire.

orjson already agrees with Go on most of it (no spaces, ``\\n``-style short escapes, other
control characters as ``\\u00XX``); three things differ and are fixed here:

- **Floats.** Go writes a ``float64`` with the fewest digits that read back exactly, in
  positional form when ``1e-6 <= |x| < 1e21`` (``50``, not ``50.0``; ``1e20`` in full) and
  in exponent form otherwise, with a two-digit exponent trimmed to one when negative
  (``1e-7``, ``1.5e+21``, ``5e-324``). NaN and infinities are an error, as in Go.
- **HTML-safe strings.** Go escapes ``<``, ``>``, ``&``, U+2028 and U+2029 inside strings.
  Those characters can only occur inside strings in JSON text, so replacing them in the
  finished bytes is exact.
- **Maps.** A Go map is written with its keys sorted (byte order of UTF-8, which is the
  code-point order Python sorts ``str`` by).

``datetime`` values are written as Go writes a ``time.Time`` (:func:`turnout._wire.format_time`).
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from turnout._wire import format_time

__all__ = ["dumps_map", "go_escape", "go_float_text", "log_field_text"]

# Integers up to 2**53 are exact floats whose shortest spelling is the integer itself.
_EXACT_INTEGERS = float(2**53)

_HTML_ESCAPES = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)


def go_float_text(value: float) -> str:
    """``value`` spelled as Go's ``encoding/json`` spells a ``float64``."""
    if not math.isfinite(value):
        raise ValueError(f"json: unsupported value: {value!r}")
    magnitude = abs(value)
    if magnitude < _EXACT_INTEGERS and value == int(value):
        # Fast path for the common integral case; keeps the sign of -0.0 as Go does.
        return "-0" if value == 0 and math.copysign(1.0, value) < 0 else str(int(value))
    # repr() is the shortest round-tripping spelling, as Go's strconv 'g'/-1 digits are.
    shortest = Decimal(repr(value))
    if 1e-6 <= magnitude < 1e21:
        return format(shortest.normalize(), "f")
    sign, digits, exponent = shortest.normalize().as_tuple()
    assert isinstance(exponent, int)  # finite, checked above
    text = "".join(map(str, digits))
    mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
    power = exponent + len(text) - 1
    # strconv writes at least two exponent digits; encoding/json trims "e-07" to "e-7".
    spelled = f"e-{-power}" if -10 < power < 0 else f"e{'-' if power < 0 else '+'}{abs(power):02d}"
    return ("-" if sign else "") + mantissa + spelled


def go_escape(data: bytes) -> bytes:
    """``data`` (JSON text) with Go's HTML-safe escapes applied inside its strings."""
    for raw, escaped in _HTML_ESCAPES:
        if raw in data:
            data = data.replace(raw, escaped)
    return data


def dumps_map(value: Any) -> bytes:
    """``value`` (a JSON-ready tree: dicts, lists, str, int, float, bool, None, datetime) as
    Go writes a ``map[string]interface{}``: keys sorted, floats and times in Go's form. Not
    yet HTML-escaped (see :func:`go_escape`), so it can be embedded in a larger document
    that is escaped once. ``ValueError`` on NaN or an infinity, ``TypeError`` on a value JSON
    cannot carry (orjson's ``JSONEncodeError`` is one)."""
    return orjson.dumps(
        _floats_spelled(value),
        default=_other_value,
        option=orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME,
    )


def log_field_text(value: object) -> str:
    """orjson's ``default`` for structured log fields (the Rust log frames): a ``datetime``
    as Go writes a ``time.Time``, anything else JSON cannot carry as its ``str``, so that
    logging never fails on what a caller put in ``extra``."""
    if isinstance(value, datetime):
        return format_time(value)
    return str(value)


def _other_value(value: object) -> str:
    if isinstance(value, datetime):
        return format_time(value)
    raise TypeError(f"json: unsupported type: {type(value).__name__}")


def _floats_spelled(value: Any) -> Any:
    """``value`` with every float swapped for a fragment of Go's spelling; the very same
    object when there is no float in it, so float-free trees are not copied."""
    if isinstance(value, float):
        return orjson.Fragment(go_float_text(value))
    if isinstance(value, dict):
        changed: dict[Any, Any] | None = None
        for key, item in value.items():
            spelled = _floats_spelled(item)
            if spelled is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = spelled
        return value if changed is None else changed
    if isinstance(value, (list, tuple)):
        items = [_floats_spelled(item) for item in value]
        if any(new is not old for new, old in zip(items, value, strict=True)):
            return items
        return value
    return value
