"""W9, NATS end to end: events through a local nats-server to handlers.

A nats-server on loopback (started here, JetStream off) carries jb-mesh envelopes on
``events.tool.installed``. The publisher is the same for both implementations: a raw TCP
client in a thread writing pre-built ``PUB`` frames as fast as the socket takes them, so
what is measured is the receiving side. Implementations:

- ``rust``: a :func:`turnout.nats.connect` bus; handlers are ``bus.subscribe`` handlers,
  routed by the bus's Rust index behind shared NATS subscriptions;
- ``nats-py``: plain nats-py with one NATS subscription per handler, each callback
  decoding the envelope with ``Event.from_json`` (what a turnout handler is given) and
  calling the handler.

Cases (the figure is deliveries per second: handler calls over the time from the first
frame written until the last delivery, polled every millisecond; sync handlers are a C
counter, ``next`` of an ``itertools.count``, so what is timed is the delivery, the same
handler on both sides):

- ``1 sync handler``;
- ``100 sync handlers``, on ten overlapping patterns that all match the subject, the
  narrowest subscribed first (turnout ends with one NATS subscription, the broadest, which
  took the narrower ones over; plain nats-py holds 100 subscriptions);
- ``10 async handlers`` on overlapping patterns (``async def``; turnout runs them on the
  benchmark's event loop through their mailboxes, nats-py's callbacks are async anyway).

Every delivery is counted. A run that stops making progress for ``stall_s`` seconds ends
there and reports what it delivered (``completed`` < 1 in the row's extra figures), with
the slow-consumer reports counted: nats-py's error callbacks and the server cutting the
connection (``disconnects``). turnout must deliver everything: if it does not, that is a
:class:`~turnout._bench.workloads.WorkloadError`, not a figure.

``python -m turnout._bench.w9_nats`` prints the figures with the targets;
``TURNOUT_BENCH_QUICK=1`` selects the small scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.errors import SlowConsumerError

from turnout._bench.implementations import Implementation
from turnout._bench.rates import quick_mode
from turnout._bench.report import ResultRow, format_rate
from turnout._bench.timing import Measurement
from turnout._bench.workloads import Scale, StepReporter, WorkloadError
from turnout.events import Event, tool_installed
from turnout.nats import connect
from turnout.testing.nats_server import NatsServer

__all__ = [
    "CASES",
    "FULL",
    "HANDLERS",
    "QUICK",
    "Session",
    "W9Scale",
    "main",
    "measure_case",
    "run",
]

ONE = "1 sync handler"
HUNDRED = "100 sync handlers, overlapping patterns"
ASYNC = "10 async handlers, overlapping patterns"
CASES = (ONE, HUNDRED, ASYNC)
TARGETS = {HUNDRED: 1_000_000.0, ASYNC: 200_000.0}

SUBJECT = "events.tool.installed"
# Ten patterns matching SUBJECT, narrowest first.
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
HANDLERS = {ONE: 1, HUNDRED: 100, ASYNC: 10}
_POLL_SECONDS = 0.001


@dataclass(frozen=True)
class W9Scale:
    name: str
    messages: dict[str, int]
    """Messages published per round, per case."""
    rounds: int
    stall_s: float
    """A round with no delivery for this long ends there."""


QUICK = W9Scale("quick", {ONE: 20_000, HUNDRED: 1_000, ASYNC: 2_000}, rounds=1, stall_s=3.0)
FULL = W9Scale("full", {ONE: 200_000, HUNDRED: 10_000, ASYNC: 20_000}, rounds=3, stall_s=5.0)


def _frames(count: int) -> bytes:
    """``count`` PUB frames of distinct jb-mesh envelopes, one buffer."""
    frames = bytearray()
    for n in range(count):
        payload = tool_installed("bench", f"tool-{n}", "v1.0.0").to_json()
        frames += b"PUB %s %d\r\n%s\r\n" % (SUBJECT.encode(), len(payload), payload)
    return bytes(frames)


class _RawPublisher:
    """A NATS client of a few lines: CONNECT, then the frames, then PING until PONG."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self._read_line()  # INFO
        self._sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        self._await_pong()

    def _read_line(self) -> bytes:
        line = bytearray()
        while not line.endswith(b"\r\n"):
            chunk = self._sock.recv(1)
            if not chunk:
                raise WorkloadError("W9: the server closed the publisher's connection")
            line += chunk
        return bytes(line)

    def _await_pong(self) -> None:
        while True:
            line = self._read_line()
            if line.startswith(b"PONG"):
                return
            if line.startswith(b"-ERR"):
                raise WorkloadError(f"W9: the server refused the publisher: {line!r}")

    def send(self, frames: bytes) -> None:
        self._sock.sendall(frames)
        self._sock.sendall(b"PING\r\n")
        self._await_pong()

    def close(self) -> None:
        self._sock.close()


class _Tally:
    """Counts deliveries. A sync handler is ``next`` of one ``itertools.count`` (C code,
    so the figure is the cost of delivering, not of a Python handler body); an async one
    is the least an ``async def`` can do."""

    def __init__(self) -> None:
        self._calls = itertools.count()
        self._awaited = 0

    def sync_handler(self) -> Callable[[Event], object]:
        return functools.partial(next, self._calls)  # next(counter, event): the event unused

    def async_handler(self) -> Callable[[Event], Any]:
        async def handler(event: Event) -> None:
            self._awaited += 1

        return handler

    @property
    def count(self) -> int:
        """Deliveries so far (read by the round's polling, not by the handlers)."""
        return int(repr(self._calls)[len("count(") : -1]) + self._awaited


class _Subscribers:
    """One implementation's handlers for one case, connected and subscribed."""

    tally: _Tally

    async def open(self, url: str, case: str) -> None:
        raise NotImplementedError

    def problems(self) -> dict[str, float]:
        """Slow-consumer reports and losses: counters that must stay 0 for turnout."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class _TurnoutSubscribers(_Subscribers):
    async def open(self, url: str, case: str) -> None:
        self.tally = _Tally()
        self.bus = await connect(url, node="w9")
        tally = self.tally
        make = tally.async_handler if case == ASYNC else tally.sync_handler
        for n in range(HANDLERS[case]):
            # Large mailboxes: the figure is throughput, not how a full one waits.
            self.bus.subscribe(PATTERNS[n % len(PATTERNS)], make(), maxsize=1 << 20)
        await self.bus.flush()

    def nats_subscriptions(self) -> int:
        return int(self.bus.stats()["transport"]["nats_subscriptions"])

    def problems(self) -> dict[str, float]:
        stats = self.bus.stats()
        transport = stats["transport"]
        return {
            "slow_consumer_errors": float(transport["slow_consumers"]),
            "disconnects": float(transport["disconnects"]),
            "dropped": float(stats["dropped"]),
            "handler_errors": float(stats["handler_errors"]),
        }

    async def close(self) -> None:
        await self.bus.aclose()


class _PlainSubscribers(_Subscribers):
    async def open(self, url: str, case: str) -> None:
        self.tally = _Tally()
        self.slow = 0
        self.disconnects = 0

        async def error_cb(exc: Exception) -> None:
            if isinstance(exc, SlowConsumerError):
                self.slow += 1

        async def disconnected_cb() -> None:
            self.disconnects += 1

        self.client = await nats.connect(
            url, error_cb=error_cb, disconnected_cb=disconnected_cb, max_reconnect_attempts=-1
        )
        decode = Event.from_json
        for n in range(HANDLERS[case]):
            if case == ASYNC:
                handler = self.tally.async_handler()

                async def callback(msg: Any, handler: Any = handler) -> None:
                    await handler(decode(msg.data))
            else:
                sync = self.tally.sync_handler()

                async def callback(msg: Any, handler: Any = sync) -> None:
                    handler(decode(msg.data))

            await self.client.subscribe(PATTERNS[n % len(PATTERNS)], cb=callback)
        await self.client.flush()

    def problems(self) -> dict[str, float]:
        return {"slow_consumer_errors": float(self.slow), "disconnects": float(self.disconnects)}

    async def close(self) -> None:
        await self.client.close()


def _subscribers(name: str) -> _Subscribers:
    return _TurnoutSubscribers() if name == "rust" else _PlainSubscribers()


class Session:
    """A nats-server and one implementation's handlers for one case, set up untimed;
    ``await round()`` times one round. An async context manager."""

    def __init__(self, name: str, case: str, scale: W9Scale) -> None:
        self.name = name
        self.case = case
        self.scale = scale
        self.expected = scale.messages[case] * HANDLERS[case]
        self.frames = _frames(scale.messages[case])
        self.subscribers = _subscribers(name)
        self.best: tuple[int, int] | None = None  # (deliveries, ns) of the fastest round
        self._store = tempfile.TemporaryDirectory(prefix="turnout-w9-")
        self._server = NatsServer(Path(self._store.name), jetstream=False)

    async def __aenter__(self) -> Session:
        try:
            self._server.start()
        except (RuntimeError, TimeoutError) as exc:  # no binary, or it would not start
            self._store.cleanup()
            raise WorkloadError(f"W9 needs a nats-server: {exc}") from exc
        try:
            await self.subscribers.open(self._server.url, self.case)
        except BaseException:
            self._server.kill()
            self._store.cleanup()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.subscribers.close()
        finally:
            self._server.kill()
            self._store.cleanup()

    async def round(self) -> None:
        """Publishes the frames; returns when every delivery is made or none came for
        ``stall_s`` seconds."""
        tally = self.subscribers.tally
        base = tally.count
        publisher = _RawPublisher(self._server.port)
        stall_s = self.scale.stall_s * 1e9
        try:
            start = time.perf_counter_ns()
            sending = asyncio.create_task(asyncio.to_thread(publisher.send, self.frames))
            # Polled every millisecond: the time of the last delivery is known to 1 ms.
            seen, seen_at = 0, start
            while seen < self.expected:
                await asyncio.sleep(_POLL_SECONDS)
                now, count = time.perf_counter_ns(), tally.count - base
                if count != seen:
                    seen, seen_at = count, now
                elif now - seen_at > stall_s:
                    break
            # A server that cut a slow consumer off may leave the publisher hanging.
            with contextlib.suppress(asyncio.TimeoutError, OSError, WorkloadError):
                await asyncio.wait_for(sending, stall_s * 4)
        finally:
            publisher.close()
        delivered, elapsed = seen, max(seen_at - start, 1)
        best = self.best
        if best is None or delivered * best[1] > best[0] * elapsed:
            self.best = (delivered, elapsed)

    def extra(self) -> dict[str, float]:
        """Completion of the best round, slow-consumer reports, NATS subscriptions."""
        delivered = 0 if self.best is None else self.best[0]
        extra = {
            "expected": float(self.expected),
            "completed": delivered / self.expected,
            "handlers": float(HANDLERS[self.case]),
            **self.subscribers.problems(),
        }
        if isinstance(self.subscribers, _TurnoutSubscribers):
            extra["nats_subscriptions"] = float(self.subscribers.nats_subscriptions())
        return extra

    def check(self) -> None:
        """Raises unless turnout made every delivery (the baseline may fall short)."""
        if self.name == "rust" and (self.best is None or self.best[0] != self.expected):
            delivered = 0 if self.best is None else self.best[0]
            raise WorkloadError(f"W9 {self.case}: turnout delivered {delivered} of {self.expected}")

    def measurement(self) -> Measurement:
        assert self.best is not None
        delivered, elapsed = self.best
        return Measurement(
            ops=max(delivered, 1), elapsed_ns=elapsed, repeats=self.scale.rounds, latencies_ns=()
        )


async def _measure(name: str, case: str, scale: W9Scale) -> tuple[Measurement, dict[str, float]]:
    async with Session(name, case, scale) as session:
        for _ in range(scale.rounds):
            await session.round()
        session.check()
        return session.measurement(), session.extra()


def measure_case(name: str, case: str, scale: W9Scale) -> tuple[Measurement, dict[str, float]]:
    """The best of ``scale.rounds`` rounds of one case for ``rust`` or ``nats-py``, and
    the extra figures (completion, slow-consumer reports, NATS subscriptions)."""
    return asyncio.run(_measure(name, case, scale))


def run(implementation: Implementation, scale: Scale, step: StepReporter) -> list[ResultRow]:
    """The catalog's entry point: every case for ``implementation``."""
    chosen = QUICK if scale.name == "quick" else FULL
    rows = []
    for case in CASES:
        step(case)
        measurement, extra = measure_case(implementation.name, case, chosen)
        rows.append(ResultRow.from_measurement("W9", case, implementation.name, measurement, extra))
    return rows


def main() -> None:
    scale = QUICK if quick_mode() else FULL
    print(f"W9 NATS end to end, {scale.name} scale, best of {scale.rounds} rounds")
    print(f"  {'deliveries/s':<42} {'turnout':>10} {'nats-py':>10}")
    for case in CASES:
        ours, ours_extra = measure_case("rust", case, scale)
        theirs, their_extra = measure_case("nats-py", case, scale)
        target = TARGETS.get(case)
        print(
            f"  {case:<42} {format_rate(ours.ops_per_s):>10} {format_rate(theirs.ops_per_s):>10}"
            f"   {ours.ops_per_s / theirs.ops_per_s:.2f}x"
            f"   nats-py delivered {their_extra['completed']:.0%}"
            f" (slow consumer errors {their_extra['slow_consumer_errors']:.0f},"
            f" disconnects {their_extra['disconnects']:.0f});"
            f" turnout on {ours_extra['nats_subscriptions']:.0f} NATS subscriptions"
            + ("" if target is None else f"; target >= {format_rate(target)}")
        )
    print("target for 1 sync handler: >= plain nats-py")


if __name__ == "__main__":
    main()
