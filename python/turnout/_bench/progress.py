"""A one-line progress display for long runs, written to stderr.

On a terminal the line is rewritten in place (carriage return, then clear to the end of
the line); anywhere else (a pipe, a CI log) each step is a plain line of its own, so logs
stay readable.
"""

from __future__ import annotations

import shutil
import time
from typing import TextIO

_CLEAR_TO_END = "\x1b[K"


class ProgressLine:
    """Shows the current step, prefixed with the time elapsed since the display started."""

    def __init__(self, stream: TextIO, *, in_place: bool | None = None) -> None:
        self._stream = stream
        self._in_place = stream.isatty() if in_place is None else in_place
        self._started = time.perf_counter()
        self._showing = False

    def update(self, text: str) -> None:
        line = f"[{time.perf_counter() - self._started:6.1f}s] {text}"
        if self._in_place:
            # A line wider than the terminal wraps, and "\r" then only returns to the
            # start of its last row: cut it to fit instead.
            width = shutil.get_terminal_size().columns - 1
            self._stream.write("\r" + line[:width] + _CLEAR_TO_END)
            self._showing = True
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def finish(self, text: str) -> None:
        """Replaces the current step with a final line and ends it."""
        if self._in_place and self._showing:
            self._stream.write("\r" + _CLEAR_TO_END)
            self._showing = False
        self._stream.write(text + "\n")
        self._stream.flush()

    def abandon(self) -> None:
        """Ends the line in place so whatever is printed next starts on a fresh one."""
        if self._in_place and self._showing:
            self._stream.write("\n")
            self._showing = False
            self._stream.flush()
