"""History stores: jb-mesh query semantics, retention bounds, and FileHistory durability."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from turnout import InvalidSubjectError
from turnout._wire import PreciseDatetime
from turnout.events import Event
from turnout.history import (
    FileHistory,
    History,
    HistoryFormatError,
    HistoryLockedError,
    MemoryHistory,
    _journal,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
SECOND = 1_000_000_000


class Clock:
    """A settable clock (ns since the epoch) for retention by age."""

    def __init__(self) -> None:
        self.now = 1_700_000_000 * SECOND

    def __call__(self) -> int:
        return self.now


def event(kind: str, i: int, at: datetime | None = None) -> Event:
    return Event(kind, "n1", at or T0 + timedelta(seconds=i), {"i": i})


def fill(store: History, count: int, kinds: tuple[str, ...] = ("tool.started",)) -> None:
    for i in range(count):
        kind = kinds[i % len(kinds)]
        store.append("events." + kind, event(kind, i))


def numbers(found: list[Event]) -> list[int]:
    return [e.data["i"] for e in found if e.data is not None]


StoreFactory = Callable[..., History]


@pytest.fixture(params=["memory", "file"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    made: list[History] = []

    def make(**options: object) -> History:
        store: History
        if request.param == "memory":
            store = MemoryHistory(**options)  # type: ignore[arg-type]
        else:
            store = FileHistory(tmp_path / f"h{len(made)}.journal", **options)  # type: ignore[arg-type]
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def test_oldest_first_from_the_oldest(make_store: StoreFactory) -> None:
    store = make_store()
    fill(store, 10)
    assert numbers(store.history("events.>", 3)) == [0, 1, 2]
    assert numbers(store.history("events.>")) == list(range(10))
    assert numbers(store.history("events.>", 100)) == list(range(10))


def test_newest_still_oldest_first(make_store: StoreFactory) -> None:
    store = make_store()
    fill(store, 10)
    assert numbers(store.history("events.>", 3, newest=True)) == [7, 8, 9]
    assert numbers(store.history("events.>", 50, newest=True)) == list(range(10))


def test_filter_by_subject_pattern(make_store: StoreFactory) -> None:
    store = make_store()
    fill(store, 12, ("tool.started", "node.joined", "tool.crashed", "user.a.b"))
    assert numbers(store.history("events.tool.*")) == [0, 2, 4, 6, 8, 10]
    assert numbers(store.history("events.node.*")) == [1, 5, 9]
    assert numbers(store.history("events.tool.crashed", 2, newest=True)) == [6, 10]
    assert numbers(store.history("events.user.>")) == [3, 7, 11]
    assert numbers(store.history("events.user.*")) == []
    assert store.history("orders.>") == []


def test_limit_zero_or_negative_is_empty(make_store: StoreFactory) -> None:
    store = make_store()
    fill(store, 3)
    assert store.history("events.>", 0) == []
    assert store.history("events.>", -5, newest=True) == []
    assert store.history_since("events.>", T0, 0) == []


def test_invalid_filter_raises(make_store: StoreFactory) -> None:
    store = make_store()
    with pytest.raises(InvalidSubjectError):
        store.history("events..x")
    with pytest.raises(InvalidSubjectError):
        store.history_since("events.>.x", T0)


def test_history_since(make_store: StoreFactory) -> None:
    store = make_store()
    fill(store, 10)
    assert numbers(store.history_since("events.>", T0 + timedelta(seconds=6))) == [6, 7, 8, 9]
    since = T0 + timedelta(seconds=2, milliseconds=1)
    assert numbers(store.history_since("events.>", since, 2)) == [3, 4]
    assert numbers(store.history_since("events.>", since, 2, newest=True)) == [8, 9]
    assert store.history_since("events.>", T0 + timedelta(hours=1)) == []
    # Another zone, the same instant; a naive datetime is UTC.
    cet = timezone(timedelta(hours=1))
    assert numbers(
        store.history_since("events.>", (T0 + timedelta(seconds=8)).astimezone(cet))
    ) == [8, 9]
    assert numbers(
        store.history_since("events.>", (T0 + timedelta(seconds=9)).replace(tzinfo=None))
    ) == [9]


def test_history_since_compares_nanoseconds(make_store: StoreFactory) -> None:
    store = make_store()
    base = dict(year=2024, month=5, day=1, hour=12, tzinfo=timezone.utc)
    for i, ns in enumerate((100, 200, 300)):
        at = PreciseDatetime(microsecond=5, nanosecond=ns, **base)
        store.append("events.t", event("t", i, at))
    since = PreciseDatetime(microsecond=5, nanosecond=200, **base)
    assert numbers(store.history_since("events.>", since)) == [1, 2]


def test_unset_timestamps_are_the_zero_time(make_store: StoreFactory) -> None:
    store = make_store()
    store.append("events.t", Event("t", data={"i": 0}))
    assert numbers(store.history("events.t")) == [0]
    assert store.history_since("events.t", T0) == []


def test_max_msgs_keeps_the_newest(make_store: StoreFactory) -> None:
    store = make_store(max_msgs=5)
    fill(store, 12)
    assert numbers(store.history("events.>")) == [7, 8, 9, 10, 11]
    stats = store.stats()
    assert (stats["retained"], stats["appended"], stats["evicted"]) == (5, 12, 7)


def test_max_msgs_zero_is_unlimited(make_store: StoreFactory) -> None:
    store = make_store(max_msgs=0, max_age=None)
    fill(store, 300)
    assert len(store.history("events.>", 1000)) == 300


def test_max_age_counts_from_storing(make_store: StoreFactory) -> None:
    clock = Clock()
    store = make_store(max_age=timedelta(minutes=10), clock=clock)
    for i in range(6):
        store.append("events.t", event("t", i))
        clock.now += 3 * 60 * SECOND  # three minutes between appends
    # Appended at 0, 3, 6, 9, 12, 15 minutes; now is 18: the last three are younger than 10.
    assert numbers(store.history("events.>")) == [3, 4, 5]
    clock.now += 60 * 60 * SECOND
    assert store.history("events.>") == []
    assert store.stats()["expired"] == 6


def test_bad_bounds_rejected(make_store: StoreFactory) -> None:
    with pytest.raises(ValueError):
        make_store(max_msgs=-1)
    with pytest.raises(ValueError):
        make_store(max_age=timedelta(seconds=-1))


# -- FileHistory durability --------------------------------------------------------------


def test_file_history_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "events.journal"
    with FileHistory(path) as store:
        fill(store, 20, ("tool.started", "node.left"))
        before = store.history("events.>", 100)
    with FileHistory(path) as again:
        assert again.history("events.>", 100) == before
        assert numbers(again.history("events.node.*", 3, newest=True)) == [15, 17, 19]
        stats = again.stats()
        assert (stats["retained"], stats["corrupt"], stats["torn"], stats["undecodable"]) == (
            20,
            0,
            0,
            0,
        )
        again.append("events.tool.started", event("tool.started", 20))
    with FileHistory(path) as third:
        assert numbers(third.history("events.>", 100)) == list(range(21))


def test_file_history_reopen_applies_bounds(tmp_path: Path) -> None:
    path = tmp_path / "events.journal"
    clock = Clock()
    with FileHistory(path, clock=clock) as store:
        fill(store, 10)
    with FileHistory(path, max_msgs=4, clock=clock) as store:
        assert numbers(store.history("events.>")) == [6, 7, 8, 9]
    clock.now += 25 * 3600 * SECOND
    with FileHistory(path, clock=clock) as store:  # the default max_age is 24 hours
        assert store.history("events.>") == []


def test_file_history_keeps_the_bytes_it_was_given(tmp_path: Path) -> None:
    path = tmp_path / "events.journal"
    wire = b'{"type":"t","node":"go","timestamp":"2024-05-01T14:00:00.5+02:00","data":{"x":1.5}}'
    with FileHistory(path) as store:
        store.append("events.t", Event.from_json(wire), wire)
        store.append("events.t", Event("t", "py", None, {"y": 1.0}))
    lines = path.read_bytes().splitlines()
    assert lines[0] == _journal.HEADER.rstrip(b"\n")
    assert lines[1].endswith(b" events.t " + wire)
    assert lines[2].endswith(
        b' events.t {"type":"t","node":"py","timestamp":"0001-01-01T00:00:00Z","data":{"y":1}}'
    )


def test_torn_tail_is_cut_off_and_never_fatal(tmp_path: Path) -> None:
    path = tmp_path / "events.journal"
    with FileHistory(path) as store:
        fill(store, 5)
    whole = path.read_bytes()
    last_line_start = whole.rstrip(b"\n").rindex(b"\n") + 1
    path.write_bytes(whole[: last_line_start + 25])  # record 4 torn mid-line by a crash
    with FileHistory(path) as store:
        assert numbers(store.history("events.>")) == [0, 1, 2, 3]
        assert store.stats()["torn"] == 1
        store.append("events.tool.started", event("tool.started", 5))
    with FileHistory(path) as store:
        assert numbers(store.history("events.>")) == [0, 1, 2, 3, 5]
        assert (store.stats()["torn"], store.stats()["corrupt"]) == (0, 0)


def test_corrupted_record_in_the_middle_is_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "events.journal"
    with FileHistory(path) as store:
        fill(store, 6)
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b'"i":2', b'"i":7')  # a flipped byte: checksum fails
    lines[5] = lines[5][:40]  # a record cut short in place
    path.write_bytes(b"\n".join(lines))
    with FileHistory(path) as store:
        assert numbers(store.history("events.>")) == [0, 1, 3, 5]
        assert store.stats()["corrupt"] == 2
        store.append("events.tool.started", event("tool.started", 6))
    with FileHistory(path) as store:
        assert numbers(store.history("events.>")) == [0, 1, 3, 5, 6]


def test_intact_record_that_is_no_event_is_counted_undecodable(tmp_path: Path) -> None:
    path = tmp_path / "events.journal"
    with FileHistory(path) as store:
        fill(store, 2)
    with path.open("ab") as f:
        f.write(_journal.encode_record(1, "events.x", b'{"node":"no type"}'))
        f.write(_journal.encode_record(2, "events.x", b"[1,2,3]"))
    with FileHistory(path) as store:
        assert numbers(store.history("events.>")) == [0, 1]
        assert (store.stats()["undecodable"], store.stats()["corrupt"]) == (2, 0)


def test_foreign_file_is_refused_and_torn_header_is_restarted(tmp_path: Path) -> None:
    foreign = tmp_path / "notes.txt"
    foreign.write_bytes(b"my precious notes\n")
    with pytest.raises(HistoryFormatError):
        FileHistory(foreign)
    assert foreign.read_bytes() == b"my precious notes\n"
    torn = tmp_path / "torn.journal"
    torn.write_bytes(_journal.HEADER[:7])
    with FileHistory(torn) as store:
        fill(store, 1)
    with FileHistory(torn) as store:
        assert numbers(store.history("events.>")) == [0]


def test_one_file_history_per_path(tmp_path: Path) -> None:
    path = tmp_path / "events.journal"
    store = FileHistory(path)
    with pytest.raises(HistoryLockedError):
        FileHistory(path)
    store.close()
    store.close()  # idempotent
    with FileHistory(path):
        pass


def test_closed_file_history_still_answers_but_refuses_appends(tmp_path: Path) -> None:
    store = FileHistory(tmp_path / "events.journal")
    fill(store, 3)
    store.close()
    assert numbers(store.history("events.>")) == [0, 1, 2]
    with pytest.raises(ValueError, match="closed"):
        store.append("events.t", event("t", 9))


def test_compaction_bounds_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.journal"
    big = {"pad": "x" * 200}
    with FileHistory(path, max_msgs=20) as store:
        for i in range(2000):
            store.append("events.t", Event("t", "n", None, {"i": i, **big}))
        stats = store.stats()
        assert stats["compactions"] >= 1
        assert stats["file_bytes"] < 2 * FileHistory.COMPACT_MIN_BYTES + 20 * 400
        assert numbers(store.history("events.>", 5, newest=True)) == [1995, 1996, 1997, 1998, 1999]
    assert path.stat().st_size == stats["file_bytes"]
    assert not Path(str(path) + ".compact").exists()
    with FileHistory(path, max_msgs=20) as store:
        assert numbers(store.history("events.>", 100)) == list(range(1980, 2000))


def test_concurrent_appends_all_kept_in_one_order(tmp_path: Path) -> None:
    path = tmp_path / "events.journal"
    threads, each = 4, 250
    with FileHistory(path, max_msgs=0) as store:

        def work(t: int) -> None:
            for i in range(each):
                store.append(f"events.t{t}", Event(f"t{t}", "n", None, {"i": i}))

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        in_memory = store.history("events.>", 10_000)
    with FileHistory(path, max_msgs=0) as store:
        on_disk = store.history("events.>", 10_000)
    assert on_disk == in_memory
    assert len(on_disk) == threads * each
    for t in range(threads):  # each thread's appends in its own order
        assert numbers(store.history(f"events.t{t}", 10_000)) == list(range(each))


def test_memory_history_concurrent_appends_and_queries() -> None:
    threads, each = 4, 2000
    store = MemoryHistory(max_msgs=0, max_age=None)
    start = threading.Barrier(threads + 1)

    def work(t: int) -> None:
        start.wait()
        for i in range(each):
            store.append(f"events.t{t}", Event(f"t{t}", "n", None, {"i": i}))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    while any(w.is_alive() for w in workers):  # queries racing the appends stay whole
        for t in range(threads):
            found = numbers(store.history(f"events.t{t}", each))
            assert found == list(range(len(found)))
    for w in workers:
        w.join()
    for t in range(threads):
        assert numbers(store.history(f"events.t{t}", each)) == list(range(each))
    assert (store.stats()["retained"], store.stats()["appended"]) == (threads * each,) * 2


WRITER = """
import sys
from turnout.events import Event
from turnout.history import FileHistory

store = FileHistory(sys.argv[1], max_msgs=0, max_age=None)
i = 0
while True:
    store.append("events.tool.started", Event("tool.started", "w", None, {"i": i}))
    i += 1
    sys.stdout.write(f"{i}\\n")  # i records are on file
    sys.stdout.flush()
"""


def test_killed_writer_loses_no_acknowledged_record(tmp_path: Path) -> None:
    path = tmp_path / "events.journal"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    acknowledged = 0
    for line in writer.stdout:
        acknowledged = int(line)
        if acknowledged >= 300:
            break
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    writer.stdout.close()
    with FileHistory(path, max_msgs=0, max_age=None) as store:
        found = numbers(store.history("events.>", 1_000_000))
        assert len(found) >= acknowledged
        assert found == list(range(len(found)))  # complete records, in order, no gaps
        assert store.stats()["corrupt"] == 0
        store.append("events.tool.started", event("tool.started", len(found)))
    with FileHistory(path, max_msgs=0, max_age=None) as store:
        assert numbers(store.history("events.>", 1_000_000)) == list(range(len(found) + 1))


# -- the journal format itself (no I/O) --------------------------------------------------


def test_journal_record_round_trip() -> None:
    line = _journal.encode_record(123, "events.a.b", b'{"type":"a.b"}')
    crc, rest = line.rstrip(b"\n").split(b" ", 1)
    assert int(crc, 16) == zlib.crc32(rest)
    assert rest == b'123 events.a.b {"type":"a.b"}'
    found = _journal.scan(_journal.HEADER + line + line)
    assert [(r.store_ns, r.subject, r.payload) for r in found.records] == [
        (123, "events.a.b", b'{"type":"a.b"}')
    ] * 2
    assert found.records[1].offset == len(_journal.HEADER) + len(line)
    assert (found.corrupt, found.torn(len(_journal.HEADER) + 2 * len(line))) == (0, False)


def test_journal_keeps_records_on_one_line() -> None:
    line = _journal.encode_record(1, "events.a", b'{\n"type":\n"a"}')
    assert line.count(b"\n") == 1
    (record,) = _journal.scan(_journal.HEADER + line).records
    assert record.payload == b'{ "type": "a"}'


def test_journal_scan_damage() -> None:
    good = _journal.encode_record(1, "events.a", b"{}")
    buf = _journal.HEADER + good + b"garbage\n" + b"\n" + good[:-1] + b"X\n" + good + good[:10]
    found = _journal.scan(buf)
    assert len(found.records) == 2
    assert found.corrupt == 3
    assert found.torn(len(buf))
    assert found.end == len(buf) - 10
    assert _journal.header_state(b"") == "fresh"
    assert _journal.header_state(_journal.HEADER[:5]) == "fresh"
    assert _journal.header_state(_journal.HEADER + good) == "ok"
    assert _journal.header_state(b"{}\n") == "foreign"
