"""The on-disk record format of :class:`turnout.FileHistory`: encoding and scanning, no I/O.

A journal is a text file: one header line, then one line per stored event::

    turnout-history 1
    1c291ca3 1714564800000000000 events.tool.started {"type":"tool.started",...}

Each record line is ``<crc32 of the rest, 8 hex digits> <store time, ns since the epoch>
<subject> <event JSON>`` and ends with ``\\n``. Lines make the file readable with ordinary
tools and let a reader resynchronise after damage: a line whose checksum does not match is
skipped and counted, and the next line is read as usual. A last line without its ``\\n`` is
a record torn by a crash mid-write; it is never taken as a record. Subjects contain no space
(subject rules) and the JSON is written without raw newlines, so the four fields split
unambiguously.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

__all__ = ["HEADER", "JournalRecord", "JournalScan", "encode_record", "header_state", "scan"]

HEADER = b"turnout-history 1\n"


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One intact record and where its line starts in the buffer it was read from."""

    offset: int
    store_ns: int
    subject: str
    payload: bytes


@dataclass(slots=True)
class JournalScan:
    """What :func:`scan` found: the intact records in order, how many lines were damaged,
    and ``end``, the offset just past the last complete line (anything after it is a torn
    tail)."""

    records: list[JournalRecord] = field(default_factory=list)
    corrupt: int = 0
    end: int = 0

    def torn(self, size: int) -> bool:
        """Whether a buffer of ``size`` bytes ends in a torn, incomplete line."""
        return self.end < size


def encode_record(store_ns: int, subject: str, payload: bytes) -> bytes:
    """The journal line for one event. Newlines in ``payload`` can only be JSON whitespace
    (inside strings they are escaped), so they become spaces and the line stays one line."""
    if b"\n" in payload:
        payload = payload.replace(b"\n", b" ")
    body = b"%d %s %s" % (store_ns, subject.encode(), payload)
    return b"%08x %s\n" % (zlib.crc32(body), body)


def header_state(buf: bytes) -> str:
    """``"ok"`` when ``buf`` starts with the header, ``"fresh"`` when it is empty or a
    header torn while the file was being created, ``"foreign"`` otherwise."""
    if buf.startswith(HEADER):
        return "ok"
    if HEADER.startswith(buf):
        return "fresh"
    return "foreign"


def scan(buf: bytes, start: int = len(HEADER)) -> JournalScan:
    """Reads the record lines of ``buf`` from ``start``; damaged lines are counted and
    skipped, a torn last line is left out."""
    result = JournalScan(end=start)
    pos = start
    while True:
        newline = buf.find(b"\n", pos)
        if newline < 0:
            break
        record = _decode_line(buf[pos:newline], pos)
        if record is None:
            result.corrupt += 1
        else:
            result.records.append(record)
        pos = result.end = newline + 1
    return result


def _decode_line(line: bytes, offset: int) -> JournalRecord | None:
    if len(line) < 10 or line[8:9] != b" ":
        return None
    body = line[9:]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        store_ns, subject, payload = body.split(b" ", 2)
        return JournalRecord(offset, int(store_ns), subject.decode(), payload)
    except ValueError:  # also UnicodeDecodeError, and a body with fewer than three fields
        return None
