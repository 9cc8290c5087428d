"""Logs never lose an entry uncounted: a sink raising a BaseException, lone surrogates in
the text, cyclic, very deep or odd extras. Each case checks that nothing reaches the
logging module's "--- Logging error ---" report and that the counts add up."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import orjson
import pytest

from turnout.logs import ForwardingHandler, LogEntry, LogForwarder


def entries_of(frames: list[bytes]) -> list[dict[str, Any]]:
    return [e for f in frames for e in orjson.loads(f)["payload"]["logs"]]


@pytest.mark.parametrize("raised", [KeyboardInterrupt, asyncio.CancelledError, SystemExit])
def test_a_sink_raising_a_base_exception_has_its_entries_counted(
    raised: type[BaseException],
) -> None:
    calls = 0

    def sink(frame: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise raised()

    forwarder = LogForwarder(sink, buffer_size=10, flush_interval=None)
    interrupted = 0
    for n in range(100):
        try:
            forwarder.log(LogEntry(message=str(n)))
        except raised:
            interrupted += 1
    forwarder.stop()
    stats = forwarder.stats()
    assert interrupted == 1
    assert isinstance(forwarder.last_send_error, raised)
    assert (stats["accepted"], stats["sent"], stats["dropped"]) == (100, 90, 10)
    assert stats["accepted"] == stats["sent"] + stats["dropped"] + stats["pending"]
    assert stats["send_errors"] == 1


def test_a_base_exception_in_flush_leaves_the_rest_pending() -> None:
    def sink(frame: bytes) -> None:
        raise KeyboardInterrupt

    forwarder = LogForwarder(sink, buffer_size=10, capacity=100, flush_interval=None)
    for n in range(25):
        forwarder._batcher.offer(LogEntry(message=str(n)))  # no size flush: nothing sent
    with pytest.raises(KeyboardInterrupt):
        forwarder.flush()
    stats = forwarder.stats()
    assert (stats["dropped"], stats["pending"]) == (10, 15)
    assert stats["accepted"] == stats["sent"] + stats["dropped"] + stats["pending"]


def odd_records() -> list[tuple[str, str, dict[str, Any]]]:
    cyclic: dict[str, Any] = {"name": "loop"}
    cyclic["self"] = cyclic
    branching: dict[str, Any] = {}
    branching["a"] = branching
    branching["b"] = branching
    deep: Any = "bottom"
    for _ in range(3_000):
        deep = {"d": deep}
    deep_list: Any = 0
    for _ in range(3_000):
        deep_list = [deep_list]
    path = os.fsdecode(b"/data/caf\xe9.txt")  # a lone surrogate, \udce9
    return [
        ("surrogate message", "opened %s", {}),
        ("surrogate extra", "plain", {"path": path}),
        ("surrogate id", "plain", {"workflow_id": path}),
        ("surrogate key", "plain", {"data": {path: 1}}),
        ("cycle", "plain", {"data": cyclic}),
        ("branching cycle", "plain", {"data": branching}),
        ("3,000 deep", "plain", {"data": deep}),
        ("3,000 deep list", "plain", {"data": deep_list}),
        ("key not text", "plain", {"data": {(1, 2): "tuple key", None: 0}}),
        ("huge int", "plain", {"data": 10**40}),
    ]


@pytest.mark.parametrize("case", odd_records(), ids=lambda c: c[0])
def test_the_handler_never_loses_a_record_to_odd_input(
    case: tuple[str, str, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    name, message, extra = case
    frames: list[bytes] = []
    forwarder = LogForwarder(frames.append, buffer_size=10, flush_interval=None)
    logger = logging.getLogger(f"turnout.test.odd.{name}")
    logger.propagate = False
    logger.addHandler(ForwardingHandler(forwarder))
    path = os.fsdecode(b"/data/caf\xe9.txt")
    args = (path,) if "%s" in message else ()
    logger.error(message, *args, extra=extra)
    logger.error("after")
    forwarder.stop()
    assert "Logging error" not in capsys.readouterr().err
    stats = forwarder.stats()
    assert (stats["accepted"], stats["sent"], stats["dropped"]) == (2, 2, 0)
    assert stats["repaired"] == 1
    first, after = entries_of(frames)
    assert after["message"] == "after"
    written = orjson.dumps(first).decode()
    assert "\ufffd" in written or "[cut]" in written or name in ("key not text", "huge int")
    if name == "surrogate message":
        assert first["message"] == "opened /data/caf\ufffd.txt"
    if name == "surrogate id":
        assert first["workflow_id"] == "/data/caf\ufffd.txt"
    if name == "key not text":
        assert first["fields"]["data"] == {"(1, 2)": "tuple key", "None": 0}


def test_a_cycle_is_cut_at_32_levels() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    frames: list[bytes] = []
    forwarder = LogForwarder(frames.append, flush_interval=None)
    forwarder.log(LogEntry(message="m", fields={"c": cyclic}))
    forwarder.stop()
    (entry,) = entries_of(frames)
    value = entry["fields"]
    depth = 1  # the fields map itself
    while isinstance(value, dict):
        value = next(iter(value.values()))
        depth += 1
    assert (value, depth) == ("[cut]", 33)


def test_plain_deep_fields_are_written_whole() -> None:
    deep: Any = "bottom"
    for _ in range(100):
        deep = {"d": deep}
    frames: list[bytes] = []
    forwarder = LogForwarder(frames.append, flush_interval=None)
    forwarder.log(LogEntry(message="m", fields={"deep": deep}))
    forwarder.stop()
    assert "bottom" in frames[0].decode()
    assert forwarder.stats()["repaired"] == 0
