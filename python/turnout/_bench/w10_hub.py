"""W10, hub: one event fanned out to 100 WebSocket watchers.

Two implementations, each a WebSocket server on loopback with 100 watchers connected from
a separate process (:mod:`turnout._bench.ws_receivers`, which counts frames):

- ``rust``: the turnout :class:`~turnout.ws.Hub`, watchers subscribed at
  ``/v1/watch?subject=events.bench.>``;
- ``reference``: plain websockets: a server keeping its 100 connections in a list and
  sending each event to each with ``await connection.send(...)``, the obvious loop.

Cases (the figure is deliveries per second: frames received by all watchers together
over the time from the first event sent until the watchers have counted every frame):

- ``emit``: the server's own code produces the events, one per event-loop turn (the hub:
  ``hub.bus.emit(Event(...))``; the reference: ``orjson.dumps`` of the same event, then
  the loop of sends).
- ``relay``: a service connection sends ``progress`` messages, which the server passes on
  (the hub: registration, parsing, tracking, republishing on its bus, the watchers; the
  reference: each frame received is sent to the 100 connections as it is).
- ``latency``: ``emit`` one event at a time, each waiting until the last watcher counted
  the one before: the time to reach all 100 (ops are events; P50/P95/P99 theirs). The
  hub's batching of writes has its price here, if anywhere.

No event may be lost: a run where the hub dropped deliveries for a slow watcher (its
counters say) is an error, not a figure; its watcher buffer is made large enough that it
never has to. ``python -m turnout._bench.w10_hub`` prints the figures with the target
(≥ 100,000 deliveries/s); ``TURNOUT_BENCH_QUICK=1`` selects the small scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, broadcast, serve

from turnout._bench.implementations import Implementation
from turnout._bench.rates import quick_mode
from turnout._bench.receivers_process import WAIT_S, expect_line, start_receivers
from turnout._bench.report import ResultRow, format_rate
from turnout._bench.timing import Measurement
from turnout._bench.workloads import Scale, StepReporter, WorkloadError
from turnout.events import Event
from turnout.protocol import MessageType, ProgressPayload, RegisterPayload, WSMessage
from turnout.ws import Hub

__all__ = [
    "CASES",
    "FULL",
    "LATENCY",
    "QUICK",
    "Session",
    "W10Scale",
    "main",
    "measure_case",
    "run",
    "session_for",
]

WATCHERS = 100
TARGET_PER_S = 100_000.0
EMIT = "emit: 1 event to 100 watchers"
RELAY = "relay: a service's message to 100 watchers"
LATENCY = "latency: 1 event at a time to 100 watchers"
CASES = (EMIT, RELAY, LATENCY)
BROADCAST = "broadcast"
_EVENT_TYPE = "bench.progress.svc-1.wf-1"
# What the watchers follow: the events of each case and nothing else.
_PATTERNS = {EMIT: "events.bench.>", RELAY: "events.coordination.progress.>"}


@dataclass(frozen=True)
class W10Scale:
    name: str
    events: int
    """Events per timed round (each is delivered ``WATCHERS`` times)."""
    rounds: int
    """Timed rounds; the fastest gives the figure."""
    latency_events: int
    """Events sent one at a time (each waits for the last delivery of the one before)."""


QUICK = W10Scale("quick", events=200, rounds=2, latency_events=50)
FULL = W10Scale("full", events=3_000, rounds=3, latency_events=500)


def _event_data(n: int) -> dict[str, object]:
    return {
        "service_id": "svc-1",
        "instance_id": "",
        "message": {"id": f"msg-bench-{n}", "type": "progress", "workflow_id": "wf-1"},
        "percent": n % 100,
        "stage": "build",
    }


def _progress_frames(count: int) -> list[bytes]:
    return [
        WSMessage.with_payload(
            MessageType.PROGRESS, ProgressPayload("wf-1", "a-1", float(n % 100), "build")
        ).to_json()
        for n in range(count)
    ]


# -- the servers (no keepalive pings: the counting watchers do not answer them) --------


class _Server:
    """What a case needs of a server under test."""

    url: str
    watch_url: str

    def watchers_ready(self) -> bool:
        raise NotImplementedError

    async def emit(self, count: int) -> None:
        raise NotImplementedError

    def check(self) -> None:
        """Raises if anything was lost."""


class _TurnoutHub(_Server):
    def __init__(self, hub: Hub, case: str) -> None:
        self.hub = hub
        self.url = hub.url
        self.watch_url = f"{hub.watch_url}?subject={_PATTERNS[case]}"

    def watchers_ready(self) -> bool:
        return self.hub.stats()["watchers"] == WATCHERS

    async def emit(self, count: int) -> None:
        emit = self.hub.bus.emit
        for n in range(count):
            emit(Event(_EVENT_TYPE, data=_event_data(n)))
            await asyncio.sleep(0)

    def check(self) -> None:
        stats = self.hub.stats()
        if stats["watcher_dropped"] or stats["publish_errors"] or stats["malformed"]:
            raise WorkloadError(f"W10: the hub lost deliveries: {stats}")


class _PlainWebsockets(_Server):
    """The baseline: a websockets server looping over its connections."""

    def __init__(self) -> None:
        self.watchers: list[ServerConnection] = []
        self.url = ""
        self.watch_url = ""

    async def handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        if connection.request.path.startswith("/v1/watch"):
            self.watchers.append(connection)
            try:
                await connection.wait_closed()
            finally:
                self.watchers.remove(connection)
            return
        async for frame in connection:  # the relay: every frame to every watcher
            await self.fan_out(frame)

    async def fan_out(self, frame: str | bytes) -> None:
        for watcher in self.watchers:
            await watcher.send(frame, text=True)

    def watchers_ready(self) -> bool:
        return len(self.watchers) == WATCHERS

    async def emit(self, count: int) -> None:
        for n in range(count):
            await self.fan_out(Event(_EVENT_TYPE, "bench", None, _event_data(n)).to_json())
            await asyncio.sleep(0)


class _PlainBroadcast(_PlainWebsockets):
    """A stronger baseline, shown by ``main()`` only: websockets' own ``broadcast()``,
    which writes to every connection without waiting (and so without backpressure)."""

    async def fan_out(self, frame: str | bytes) -> None:
        broadcast(self.watchers, frame, text=True)


@contextlib.asynccontextmanager
async def _server(name: str, case: str, scale: W10Scale) -> AsyncIterator[_Server]:
    if name == "rust":
        # Large enough that nothing is dropped: the figure is for complete delivery.
        buffer = scale.events * 1024
        async with Hub(port=0, node="bench", watcher_buffer=buffer, ping_interval=None) as hub:
            yield _TurnoutHub(hub, case)
        return
    plain = _PlainBroadcast() if name == BROADCAST else _PlainWebsockets()
    async with serve(plain.handle, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        plain.url = f"ws://127.0.0.1:{port}/v1/coordination"
        plain.watch_url = f"ws://127.0.0.1:{port}/v1/watch"
        yield plain


# -- measuring ---------------------------------------------------------------------------


class Session:
    """One implementation's server for one case, with its 100 watchers connected from
    their own process and the producer ready: each :meth:`round` sends ``scale.events``
    events and returns once every watcher has counted every one. Use ``async with``."""

    def __init__(self, name: str, case: str, scale: W10Scale) -> None:
        self.name = name
        self.case = case
        self.scale = scale
        self._stack = contextlib.AsyncExitStack()
        self._server: _Server | None = None
        self._receivers: asyncio.subprocess.Process | None = None
        self._produce: Callable[[], Awaitable[None]] | None = None

    async def __aenter__(self) -> Session:
        stack = self._stack
        server = await stack.enter_async_context(_server(self.name, self.case, self.scale))
        self._server = server
        receivers = await start_receivers(
            stack, server.watch_url, WATCHERS, self.scale.events * WATCHERS
        )
        self._receivers = receivers
        deadline = time.monotonic() + WAIT_S
        while not server.watchers_ready():
            if time.monotonic() > deadline:
                raise WorkloadError("W10: the watchers did not all subscribe")
            await asyncio.sleep(0.01)
        self._produce = await self._producer(server)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def round(self) -> None:
        assert self._produce is not None and self._receivers is not None
        try:
            await asyncio.wait_for(self._produce(), WAIT_S)
        except asyncio.TimeoutError:
            raise WorkloadError("W10: sending a round did not finish in time") from None
        await expect_line(self._receivers, b"done")

    def check(self) -> None:
        """Raises :class:`WorkloadError` if the server under test lost anything."""
        assert self._server is not None
        self._server.check()

    async def _producer(self, server: _Server) -> Callable[[], Awaitable[None]]:
        count = self.scale.events
        if self.case == EMIT:
            return lambda: server.emit(count)
        frames = _progress_frames(count)
        service = await self._stack.enter_async_context(connect(server.url, compression=None))
        if isinstance(server, _TurnoutHub):
            register = RegisterPayload(service_name="bench", service_id="svc-1")
            await service.send(WSMessage.with_payload(MessageType.REGISTER, register).to_json())
            await service.recv()  # registered

        async def relay() -> None:
            for frame in frames:
                await service.send(frame, text=True)

        return relay


async def _measure(name: str, case: str, scale: W10Scale) -> Measurement:
    if case == LATENCY:
        return await _measure_latency(name, scale)
    best = 0
    async with Session(name, case, scale) as session:
        for _ in range(scale.rounds):
            start = time.perf_counter_ns()
            await session.round()
            elapsed = time.perf_counter_ns() - start
            best = elapsed if not best else min(best, elapsed)
        session.check()
    return Measurement(
        ops=scale.events * WATCHERS, elapsed_ns=best, repeats=scale.rounds, latencies_ns=()
    )


def session_for(name: str, case: str, scale: W10Scale) -> Session:
    """The session measuring ``case``: the latency case is ``emit`` one event a round."""
    if case == LATENCY:
        return Session(name, EMIT, W10Scale(scale.name, 1, scale.latency_events, 0))
    return Session(name, case, scale)


async def _measure_latency(name: str, scale: W10Scale) -> Measurement:
    samples = []
    async with session_for(name, LATENCY, scale) as session:
        for _ in range(scale.latency_events):
            start = time.perf_counter_ns()
            await session.round()
            samples.append(float(time.perf_counter_ns() - start))
        session.check()
    return Measurement(
        ops=len(samples),
        elapsed_ns=max(int(sum(samples)), 1),
        repeats=1,
        latencies_ns=tuple(samples),
    )


def measure_case(name: str, case: str, scale: W10Scale) -> Measurement:
    """One case for one implementation (``rust``, ``reference`` or ``broadcast``): the
    best of ``scale.rounds`` rounds (ops are deliveries), or for the latency case every
    event's time until its last delivery (ops are events; the percentiles are theirs)."""
    return asyncio.run(_measure(name, case, scale))


def run(implementation: Implementation, scale: Scale, step: StepReporter) -> list[ResultRow]:
    """The catalog's entry point: every case for ``implementation``."""
    chosen = QUICK if scale.name == "quick" else FULL
    rows = []
    for case in CASES:
        step(case)
        measurement = measure_case(implementation.name, case, chosen)
        rows.append(
            ResultRow.from_measurement(
                "W10",
                case,
                implementation.name,
                measurement,
                {
                    "watchers": float(WATCHERS),
                    "events": float(chosen.latency_events if case == LATENCY else chosen.events),
                },
            )
        )
    return rows


def main() -> None:
    scale = QUICK if quick_mode() else FULL
    print(f"W10 hub fan-out to {WATCHERS} watchers, {scale.name} scale ({scale.events} events)")
    print(f"  {'deliveries/s':<44} {'turnout Hub':>12} {'websockets':>12} {'broadcast()':>12}")
    for case in CASES:
        hub, plain, fast = (measure_case(n, case, scale) for n in ("rust", "reference", BROADCAST))
        if case == LATENCY:
            print(
                f"  {case:<44} "
                + " ".join(f"{_p50_us(m):>9.0f} µs" for m in (hub, plain, fast))
                + "   (P50 until the 100th watcher has it)"
            )
            continue
        print(
            f"  {case:<44} {format_rate(hub.ops_per_s):>12} {format_rate(plain.ops_per_s):>12} "
            f"{format_rate(fast.ops_per_s):>12}   "
            f"({plain.ns_per_op / hub.ns_per_op:.2f}x the send loop, "
            f"{fast.ns_per_op / hub.ns_per_op:.2f}x broadcast)"
        )
    print(f"target: >= {TARGET_PER_S:,.0f} deliveries/s")


def _p50_us(measurement: Measurement) -> float:
    return (measurement.percentile(0.5) or 0.0) / 1000


if __name__ == "__main__":
    main()
