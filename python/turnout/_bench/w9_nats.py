"""W9, NATS end to end: events through a local nats-server to handlers in another process.

A nats-server on loopback (started here, JetStream off) carries jb-mesh envelopes on
``events.tool.installed``. Every run is three processes: the server, a publisher (a raw TCP
client writing pre-built ``PUB`` frames) and one implementation's receiver; each
implementation runs in its own process, and rounds are interleaved (round 1 of every
implementation and case, then round 2...), so a machine whose load moves moves every
implementation alike. Implementations:

- ``rust``: a :func:`turnout.nats.connect` bus; handlers are ``bus.subscribe`` handlers;
- ``nats-py``: plain nats-py, one NATS subscription per handler, each callback decoding the
  envelope with ``orjson.loads`` and calling the handler with the dict;
- ``faststream``: FastStream's NATS broker (when installed), one subscriber per handler,
  the body decoded by FastStream.

Cases (the figure is deliveries per second from the first delivery to the last, polled
every millisecond; sync handlers are a C counter, ``next`` of an ``itertools.count``, so
what is timed is the delivery):

- ``1``, ``10``, ``100`` sync handlers and ``1``, ``10``, ``100`` async handlers (the least
  an ``async def`` can do), on overlapping patterns that all match the subject (turnout
  serves them from one NATS subscription; the others hold one per handler). The publisher
  writes as fast as the socket takes them.
- ``P50 latency at 5k msgs/s``: the publisher paces 5,000 messages a second, each carrying
  its send time (``time.monotonic_ns``, one clock for every process); one sync handler
  reads it from the event. The figure is the median and the 95th percentile.

A run that stops making progress for ``stall_s`` seconds ends there and reports what it
delivered (``completed`` < 1), with the slow-consumer reports: the baselines may be cut
off by the server; turnout must deliver everything, or it is a
:class:`~turnout._bench.workloads.WorkloadError`.

``python -m turnout._bench.w9_nats`` prints the figures with the targets;
``TURNOUT_BENCH_QUICK=1`` selects the small scale. ``python -m turnout._bench.w9_nats
receive-path sync|async HANDLERS MESSAGES [RUN [paced]]`` times the bus's side alone, in
one process, handed runs of RUN messages (200 unless given), each once the handlers
caught up with the last if ``paced`` (:func:`receive_path`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from turnout._bench.implementations import Implementation
from turnout._bench.rates import quick_mode
from turnout._bench.report import ResultRow, format_rate
from turnout._bench.timing import Measurement
from turnout._bench.workloads import Scale, StepReporter, WorkloadError
from turnout.events import Event
from turnout.testing.nats_server import NatsServer

__all__ = [
    "CASES",
    "FULL",
    "QUICK",
    "Case",
    "W9Scale",
    "available",
    "main",
    "measure",
    "receive_path",
    "run",
    "run_once",
]

SUBJECT = "events.tool.installed"
# Patterns matching SUBJECT, narrowest first; handler n subscribes PATTERNS[n % 10].
PATTERNS = (
    "events.tool.installed",
    "events.tool.*",
    "events.*.installed",
    "*.tool.installed",
    "events.*.*",
    "*.*.installed",
    "events.tool.>",
    "events.>",
    "*.>",
    ">",
)
LATENCY = "P50 latency at 5k msgs/s, 1 sync handler"
LATENCY_RATE = 5_000


@dataclass(frozen=True)
class Case:
    name: str
    handlers: int
    kind: str  # "sync", "async" or "latency"


CASES = (
    Case("1 sync handler", 1, "sync"),
    Case("10 sync handlers", 10, "sync"),
    Case("100 sync handlers", 100, "sync"),
    Case("1 async handler", 1, "async"),
    Case("10 async handlers", 10, "async"),
    Case("100 async handlers", 100, "async"),
    Case(LATENCY, 1, "latency"),
)
IMPLEMENTATIONS = ("rust", "nats-py", "faststream")


@dataclass(frozen=True)
class W9Scale:
    name: str
    messages: dict[int, int]
    """Messages published per run, by handler count (throughput cases)."""
    latency_messages: int
    rounds: int
    stall_s: float
    """A run with no delivery for this long ends there."""
    max_s: float
    """A run ends after this long in any case (a slow baseline reports what it did)."""


QUICK = W9Scale(
    "quick", {1: 20_000, 10: 5_000, 100: 1_000}, 1_000, rounds=1, stall_s=3.0, max_s=5.0
)
FULL = W9Scale(
    "full", {1: 200_000, 10: 40_000, 100: 10_000}, 10_000, rounds=2, stall_s=5.0, max_s=15.0
)


def _messages(case: Case, scale: W9Scale) -> int:
    return scale.latency_messages if case.kind == "latency" else scale.messages[case.handlers]


# -- the publisher process ---------------------------------------------------------------


def _frame(payload: bytes) -> bytes:
    return b"PUB %s %d\r\n%s\r\n" % (SUBJECT.encode(), len(payload), payload)


def _envelope(n: int, sent_ns: int = 0) -> bytes:
    data: dict[str, Any] = {"tool": f"tool-{n}", "version": "v1.0.0"}
    if sent_ns:
        data["sent_ns"] = sent_ns
    return Event("tool.installed", "bench", None, data).to_json()


class _RawPublisher:
    """A NATS client of a few lines: CONNECT, then frames, then PING until PONG."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._file = self._sock.makefile("rb")
        self._file.readline()  # INFO
        self._sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        self.await_pong()

    def await_pong(self) -> None:
        while True:
            line = self._file.readline()
            if not line:
                raise WorkloadError("W9: the server closed the publisher's connection")
            if line.startswith(b"PONG"):
                return
            if line.startswith(b"-ERR"):
                raise WorkloadError(f"W9: the server refused the publisher: {line!r}")

    def send(self, frames: bytes) -> None:
        self._sock.sendall(frames)

    def close(self) -> None:
        self._sock.close()


def _publish(port: int, count: int, paced: bool) -> None:
    """The publisher process: ready once connected (and the frames built), then on "go"
    writes ``count`` messages, flat out or paced at LATENCY_RATE with send times."""
    publisher = _RawPublisher(port)
    frames = b"" if paced else b"".join(_frame(_envelope(n)) for n in range(count))
    print("ready", flush=True)
    sys.stdin.readline()
    if paced:
        interval = 1_000_000_000 // LATENCY_RATE
        start = time.monotonic_ns()
        for n in range(count):
            due = start + n * interval
            now = time.monotonic_ns()
            if due > now:
                time.sleep((due - now) / 1e9)
            publisher.send(_frame(_envelope(n, time.monotonic_ns())))
    else:
        publisher.send(frames)
    publisher.send(b"PING\r\n")
    publisher.await_pong()
    publisher.close()


# -- the receiver process ----------------------------------------------------------------


class _Tally:
    """Counts deliveries: sync handlers are ``next`` of one ``itertools.count`` (C code);
    an async one is the least an ``async def`` can do; the latency handler keeps each
    message's age."""

    def __init__(self) -> None:
        self._calls = itertools.count()
        self.awaited = 0
        self.latencies: list[int] = []

    def sync_handler(self) -> Callable[[Any], object]:
        return functools.partial(next, self._calls)  # next(counter, event): the event unused

    def async_handler(self) -> Callable[[Any], Any]:
        async def handler(event: Any) -> None:
            self.awaited += 1

        return handler

    def latency_handler(self, sent_ns: Callable[[Any], int]) -> Callable[[Any], object]:
        latencies = self.latencies
        clock = time.monotonic_ns

        def handler(message: Any) -> None:
            latencies.append(clock() - sent_ns(message))

        return handler

    @property
    def count(self) -> int:
        """Deliveries so far (read by the polling, not by the handlers)."""
        return int(repr(self._calls)[len("count(") : -1]) + self.awaited + len(self.latencies)


# What opening an implementation gives: its close coroutine function and its counters.
_Opened = tuple[Callable[[], Any], Callable[[], dict[str, float]]]


def _event_sent(event: Any) -> int:
    return int(event.data["sent_ns"])


def _dict_sent(doc: Any) -> int:
    return int(doc["data"]["sent_ns"])


async def _open_turnout(url: str, case: Case, tally: _Tally) -> _Opened:
    from turnout.nats import connect

    bus = await connect(url, node="w9")
    for n in range(case.handlers):
        handler: Callable[[Any], object]
        if case.kind == "latency":
            handler = tally.latency_handler(_event_sent)
        elif case.kind == "async":
            handler = tally.async_handler()
        else:
            handler = tally.sync_handler()
        # Large mailboxes: the figure is throughput, not how a full one waits.
        bus.subscribe(PATTERNS[n % len(PATTERNS)], handler, maxsize=1 << 20)
    await bus.flush()

    def problems() -> dict[str, float]:
        stats = bus.stats()
        transport = stats["transport"]
        return {
            "slow_consumer_errors": float(transport["slow_consumers"]),
            "disconnects": float(transport["disconnects"]),
            "dropped": float(stats["dropped"]),
            "handler_errors": float(stats["handler_errors"]),
            "nats_subscriptions": float(transport["nats_subscriptions"]),
        }

    return bus.aclose, problems


async def _open_nats_py(url: str, case: Case, tally: _Tally) -> _Opened:
    import nats
    import orjson
    from nats.errors import SlowConsumerError

    counts = {"slow": 0, "disconnects": 0}

    async def error_cb(exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            counts["slow"] += 1

    async def disconnected_cb() -> None:
        counts["disconnects"] += 1

    client = await nats.connect(
        url, error_cb=error_cb, disconnected_cb=disconnected_cb, max_reconnect_attempts=-1
    )
    loads = orjson.loads
    for n in range(case.handlers):
        if case.kind == "async":
            handler = tally.async_handler()

            async def callback(msg: Any, handler: Any = handler) -> None:
                await handler(loads(msg.data))
        else:
            sync = (
                tally.latency_handler(_dict_sent)
                if case.kind == "latency"
                else tally.sync_handler()
            )

            async def callback(msg: Any, handler: Any = sync) -> None:
                handler(loads(msg.data))

        await client.subscribe(PATTERNS[n % len(PATTERNS)], cb=callback)
    await client.flush()

    def problems() -> dict[str, float]:
        return {
            "slow_consumer_errors": float(counts["slow"]),
            "disconnects": float(counts["disconnects"]),
        }

    return client.close, problems


async def _open_faststream(url: str, case: Case, tally: _Tally) -> _Opened:
    from faststream.nats import NatsBroker

    broker = NatsBroker(url, logger=None)  # no log line per message
    for n in range(case.handlers):
        # FastStream reads a subscriber's parameters as the message's fields: the handler
        # is closed over, not a parameter.
        if case.kind == "async":
            subscriber = _async_subscriber(tally.async_handler())
        elif case.kind == "latency":
            subscriber = _sync_subscriber(tally.latency_handler(_dict_sent))
        else:
            subscriber = _sync_subscriber(tally.sync_handler())
        broker.subscriber(PATTERNS[n % len(PATTERNS)])(subscriber)
    await broker.start()
    connection = getattr(broker, "_connection", None)
    if connection is not None:  # the server has the subscriptions before "ready"
        await connection.flush()

    def problems() -> dict[str, float]:
        return {}

    return broker.stop, problems


def _sync_subscriber(handler: Callable[[Any], object]) -> Callable[[Any], Any]:
    async def subscriber(body: dict[str, Any]) -> None:
        handler(body)

    return subscriber


def _async_subscriber(handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
    async def subscriber(body: dict[str, Any]) -> None:
        await handler(body)

    return subscriber


_OPENERS = {"rust": _open_turnout, "nats-py": _open_nats_py, "faststream": _open_faststream}


def _await_go() -> tuple[int, int]:
    sys.stdin.readline()
    return time.perf_counter_ns(), time.process_time_ns()


async def _receive(
    name: str, case: Case, url: str, count: int, stall_s: float, max_s: float
) -> None:
    """The receiver process: ready once subscribed; on "go", counts deliveries until
    ``count`` came, none for ``stall_s`` or ``max_s`` passed; prints the result as JSON."""
    tally = _Tally()
    close, problems = await _OPENERS[name](url, case, tally)
    expected = count * case.handlers
    print("ready", flush=True)
    # Timed from "go" (the publisher starts writing then) to the last delivery; CPU time
    # too, since on a loaded machine it moves less than the wall clock. Both are read on
    # the thread that reads "go": a transport's own I/O thread may deliver before this
    # loop runs again.
    first, cpu_first = await asyncio.to_thread(_await_go)
    last, cpu_last = first, cpu_first
    stall_ns = stall_s * 1e9
    seen = 0
    while seen < expected:
        await asyncio.sleep(0.001)  # the time of a delivery is known to 1 ms
        now, current = time.perf_counter_ns(), tally.count
        if current != seen:
            seen, last, cpu_last = current, now, time.process_time_ns()
        elif now - last > stall_ns:
            break
        if now - first > max_s * 1e9:
            break
    result = {
        "delivered": seen,
        "expected": expected,
        "elapsed_ns": max(last - first, 1),
        "cpu_ns_per_message": (cpu_last - cpu_first) / max(seen, 1) * case.handlers,
        "latencies_ns": tally.latencies,
        **problems(),
    }
    print(json.dumps(result), flush=True)
    # The figures are out: a baseline that cannot close cleanly while behind (FastStream
    # drains what it has not handled) does not spoil them.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(close(), 10)


# -- the parent ------------------------------------------------------------------------


def _child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "turnout._bench.w9_nats", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )


def _await_ready(process: subprocess.Popen[str], what: str) -> None:
    assert process.stdout is not None
    for line in process.stdout:  # what a library logs before is skipped
        if line.strip() == "ready":
            return
    process.kill()
    raise WorkloadError(f"W9: the {what} process did not start (exit {process.wait()})")


def run_once(server: NatsServer, name: str, case: Case, scale: W9Scale) -> dict[str, Any]:
    """One run: a receiver process and a publisher process; the receiver's result."""
    count = _messages(case, scale)
    receiver = _child(
        "receive", name, case.name, server.url, str(count), str(scale.stall_s), str(scale.max_s)
    )
    publisher = _child("publish", str(server.port), str(count), str(case.kind == "latency"))
    try:
        _await_ready(receiver, f"{name} receiver")
        _await_ready(publisher, "publisher")
        for process in (receiver, publisher):
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        out, _ = receiver.communicate(timeout=600)
        publisher.wait(timeout=60)
    finally:
        for process in (receiver, publisher):
            if process.poll() is None:
                process.kill()
                process.wait()
    if receiver.returncode != 0:
        raise WorkloadError(f"W9 {case.name}: the {name} receiver failed")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def available() -> tuple[str, ...]:
    """The implementations that can run here (FastStream is optional)."""
    return tuple(
        name
        for name in IMPLEMENTATIONS
        if name != "faststream" or importlib.util.find_spec("faststream") is not None
    )


def _better(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    if old is None:
        return True
    if new["latencies_ns"]:
        return _percentile(new["latencies_ns"], 0.5) < _percentile(old["latencies_ns"], 0.5)
    return bool(new["delivered"] * old["elapsed_ns"] > old["delivered"] * new["elapsed_ns"])


def _percentile(samples: list[int], p: float) -> float:
    ordered = sorted(samples)
    return float(ordered[int((len(ordered) - 1) * p)]) if ordered else 0.0


def measure(
    scale: W9Scale, names: tuple[str, ...], step: StepReporter | None = None
) -> dict[tuple[str, str], tuple[Measurement, dict[str, float]]]:
    """Every case for every implementation, rounds interleaved; the best round of each."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="turnout-w9-") as store:
        server = NatsServer(Path(store), jetstream=False)
        try:
            server.start()
        except (RuntimeError, TimeoutError) as exc:  # no binary, or it would not start
            raise WorkloadError(f"W9 needs a nats-server: {exc}") from exc
        try:
            for number in range(scale.rounds):
                for case in CASES:
                    for name in names:
                        if step is not None:
                            step(f"round {number + 1}: {case.name}, {name}")
                        result = run_once(server, name, case, scale)
                        if name == "rust" and result["delivered"] != result["expected"]:
                            raise WorkloadError(
                                f"W9 {case.name}: turnout delivered {result['delivered']} "
                                f"of {result['expected']}"
                            )
                        if _better(result, best.get((name, case.name))):
                            best[(name, case.name)] = result
        finally:
            server.kill()
    figures = {}
    for key, result in best.items():
        latencies = tuple(float(x) for x in result["latencies_ns"])
        measurement = Measurement(
            ops=max(result["delivered"], 1),
            elapsed_ns=result["elapsed_ns"],
            repeats=scale.rounds,
            latencies_ns=latencies,
        )
        extra = {
            "completed": result["delivered"] / result["expected"],
            "expected": float(result["expected"]),
            **{
                k: float(v)
                for k, v in result.items()
                if k not in ("delivered", "expected", "elapsed_ns", "latencies_ns")
            },
        }
        if latencies:
            extra["p50_us"] = _percentile(result["latencies_ns"], 0.5) / 1000
        figures[key] = (measurement, extra)
    return figures


# The catalog runs W9 once per implementation; the first call measures every
# implementation interleaved, the others take their rows from it.
_MEASURED: dict[str, dict[tuple[str, str], tuple[Measurement, dict[str, float]]]] = {}


def run(implementation: Implementation, scale: Scale, step: StepReporter) -> list[ResultRow]:
    """The catalog's entry point: every case for ``implementation``."""
    chosen = QUICK if scale.name == "quick" else FULL
    if chosen.name not in _MEASURED:
        _MEASURED[chosen.name] = measure(chosen, available(), step)
    figures = _MEASURED[chosen.name]
    return [
        ResultRow.from_measurement("W9", case.name, implementation.name, *figures[key])
        for case in CASES
        if (key := (implementation.name, case.name)) in figures
    ]


def main() -> None:
    scale = QUICK if quick_mode() else FULL
    names = available()
    print(
        f"W9 NATS end to end, {scale.name} scale, best of {scale.rounds} interleaved rounds; "
        f"publisher and each implementation in their own processes"
    )
    figures = measure(scale, names)
    header = "".join(f"{name:>12}" for name in names)
    print(f"  {'deliveries/s (latency: P50 µs)':<34}{header}   turnout vs nats-py")
    for case in CASES:
        cells = []
        for name in names:
            measurement, extra = figures[(name, case.name)]
            if case.kind == "latency":
                p50 = extra.get("p50_us")
                cells.append("-".rjust(12) if p50 is None else f"{p50:>10.0f}µs")
            else:
                done = extra["completed"]
                mark = "" if done >= 1 else f" {done:.0%}"
                rate = format_rate(measurement.ops_per_s) if done else "none"
                cells.append(f"{rate + mark:>12}")
        ours, ours_extra = figures[("rust", case.name)]
        theirs, their_extra = figures[("nats-py", case.name)]
        if case.kind == "latency":
            ratio = f"{(theirs.percentile(0.5) or 0) / (ours.percentile(0.5) or 1):.2f}x"
        else:
            cpu = their_extra["cpu_ns_per_message"] / ours_extra["cpu_ns_per_message"]
            ratio = f"{ours.ops_per_s / theirs.ops_per_s:.2f}x (CPU {cpu:.2f}x)"
        print(f"  {case.name:<34}{''.join(cells)}   {ratio}")
    for handlers in (1, 10, 100):
        plural = "s" if handlers > 1 else ""
        sync, sync_extra = figures[("rust", f"{handlers} sync handler{plural}")]
        async_, async_extra = figures[("rust", f"{handlers} async handler{plural}")]
        cpu = sync_extra["cpu_ns_per_message"] / async_extra["cpu_ns_per_message"]
        print(
            f"  turnout async/sync at {handlers}: {async_.ops_per_s / sync.ops_per_s:.2f}x"
            f" (CPU {cpu:.2f}x)"
        )
    print(
        "targets: 1 sync handler >= 2x nats-py; latency P50 <= nats-py's; "
        "async >= 0.7x sync at 1, 10, 100 handlers"
    )


# -- the receive path in one process ------------------------------------------------------


def receive_path(
    kind: str, handlers: int, messages: int, run: int = 200, paced: bool = False
) -> dict[str, float]:
    """The bus's side of W9 without sockets: runs of ``run`` envelopes handed to
    ``Bus._receive_run`` (what the NATS transport calls once per read) from a thread
    running its own event loop, as the transport's I/O thread does; the handlers (sync or
    async, as in W9) on this thread's loop. ``paced``: each run is handed once the
    handlers have handled the one before (a receiver that keeps up, as over a socket:
    every run finds every handler waiting). CPU time of each thread per message, in µs;
    under ``valgrind --tool=callgrind`` the instruction count of two message counts gives
    the instructions per message."""
    from turnout.bus import Bus

    payloads = [_envelope(n) for n in range(run)]
    frames = [(1, SUBJECT, payload) for payload in payloads]
    tally = _Tally()

    async def receiver() -> dict[str, float]:
        bus = Bus(node="w9")
        for n in range(handlers):
            handler = tally.async_handler() if kind == "async" else tally.sync_handler()
            bus.subscribe(PATTERNS[n % len(PATTERNS)], handler, maxsize=1 << 20)
        io_cpu = [0.0]
        handler_loop = asyncio.get_running_loop()

        def caught_up(target: int) -> None:
            """Waits until the handlers handled ``target`` deliveries: checked on their
            loop after what is scheduled there."""
            done = threading.Event()

            def check() -> None:
                if tally.count >= target:
                    done.set()
                else:
                    handler_loop.call_soon(check)

            handler_loop.call_soon_threadsafe(check)
            done.wait()

        async def feed() -> None:
            start = time.thread_time()
            for number in range(messages // run):
                bus._receive_run(list(frames))
                if paced:
                    caught_up((number + 1) * run * handlers)
                await asyncio.sleep(0)
            io_cpu[0] = time.thread_time() - start

        io = threading.Thread(target=asyncio.run, args=(feed(),))
        wall, cpu = time.perf_counter(), time.thread_time()
        io.start()
        expected = messages // run * run * handlers
        if paced:  # the feeder ends once the handlers handled its last run
            await asyncio.to_thread(io.join)
        while tally.count < expected:
            await asyncio.sleep(0.001)
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        await asyncio.to_thread(io.join)  # a paced feeder may still wait on this loop
        await bus.aclose()
        per = 1e6 / (messages // run * run)
        return {"wall_us": wall * per, "io_cpu_us": io_cpu[0] * per, "handler_cpu_us": cpu * per}

    return asyncio.run(receiver())


def _child_main(argv: list[str]) -> None:
    role = argv[0]
    if role == "publish":
        _publish(int(argv[1]), int(argv[2]), argv[3] == "True")
    elif role == "receive-path":
        run = int(argv[4]) if len(argv) > 4 else 200
        paced = len(argv) > 5 and argv[5] == "paced"
        figures = receive_path(argv[1], int(argv[2]), int(argv[3]), run, paced)
        print(" ".join(f"{name} {value:.2f}" for name, value in figures.items()))
    elif role == "receive":
        case = next(c for c in CASES if c.name == argv[2])
        asyncio.run(_receive(argv[1], case, argv[3], int(argv[4]), float(argv[5]), float(argv[6])))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        _child_main(sys.argv[1:])
    else:
        main()
