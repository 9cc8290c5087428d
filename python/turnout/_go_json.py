"""JSON bytes as Go's ``encoding/json`` writes them, for the coordination wire.

The writer is Rust's (``turnout._core``), shared with the event envelope and the log
frames: Go writes a ``float64`` with the fewest digits that read back exactly, positional
when ``1e-6 <= |x| < 1e21`` (``50``, not ``50.0``) and with a trimmed exponent otherwise
(``1e-7``, ``1.5e+21``), NaN and infinities being errors; it escapes ``<``, ``>``, ``&``,
U+2028 and U+2029 inside strings; it writes a map with its keys sorted, and a
``time.Time`` in RFC 3339 with nanoseconds.
"""

from __future__ import annotations

from datetime import datetime

from turnout._core import dumps_go as dumps_map
from turnout._core import go_float_text
from turnout._core import go_html_escape as go_escape
from turnout._wire import format_time

__all__ = ["dumps_map", "go_escape", "go_float_text", "log_field_text"]


def log_field_text(value: object) -> str:
    """orjson's ``default`` for structured log fields (the Rust log frames): a ``datetime``
    as Go writes a ``time.Time``, anything else JSON cannot carry as its ``str``, so that
    logging never fails on what a caller put in ``extra``."""
    if isinstance(value, datetime):
        return format_time(value)
    return str(value)
