"""W11, a fleet of hubs: a command's round trip across hubs, and events fanned out to
100 watchers spread over three hubs.

Two implementations, every hub a ``turnout hub`` process of its own (what users run),
the service and the operator in this process, the watchers in their own processes
(:mod:`turnout._bench.ws_receivers`):

- ``rust``: the fleet: three hubs on a nats-server (``--nats``); the operator is on hub
  A, the service on hub B, so each command goes A -> NATS -> B -> the service and back;
  the watchers are spread over the three hubs (34, 33, 33).
- ``reference``: one hub on its embedded bus, the operator, the service and the 100
  watchers all on it: the same command and the same events without a fleet.

Cases:

- ``command``: the operator sends ``status`` for the service's workflow over
  ``/v1/control`` and waits for the answer, one command at a time (ops are commands;
  P50/P95/P99 theirs). The target: the fleet's P50 at most 2x the single hub's.
- ``fan-out``: the service sends ``progress`` messages; a round ends when every watcher
  has counted every one (ops are deliveries).

A command that is not answered, or a round whose deliveries do not all arrive, is an
error, not a figure. ``python -m turnout._bench.w11_fleet [--runs N]`` prints both side
by side: for the commands, the fleet and the single hub are set up together and their
commands timed in alternating blocks of 10, so the load of the moment falls on both
alike (each run a fresh set of processes); ``TURNOUT_BENCH_QUICK=1`` selects the small
scale.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from turnout._bench.implementations import Implementation
from turnout._bench.rates import quick_mode
from turnout._bench.receivers_process import WAIT_S, expect_line, start_receivers
from turnout._bench.report import ResultRow, format_rate
from turnout._bench.timing import Measurement
from turnout._bench.workloads import Scale, StepReporter, WorkloadError
from turnout.coordination import CoordinatorConfig
from turnout.testing.hub_process import HubProcess
from turnout.testing.nats_server import NatsServer
from turnout.ws import Coordinator
from turnout.ws.operator import HubClient, HubClientError

__all__ = ["CASES", "COMMAND", "FANOUT", "FULL", "QUICK", "W11Scale", "main", "measure_case", "run"]

WATCHERS = 100
HUBS = 3
COMMAND = "command: status round trip, one at a time"
FANOUT = "fan-out: a service's messages to 100 watchers"
CASES = (COMMAND, FANOUT)
TARGET_RATIO = 2.0
_WORKFLOW = "wf-bench"


@dataclass(frozen=True)
class W11Scale:
    name: str
    commands: int
    """Commands timed (after ``commands // 10`` untimed ones)."""
    events: int
    """Events per fan-out round (each delivered ``WATCHERS`` times)."""
    rounds: int
    """Fan-out rounds; the fastest gives the figure."""


QUICK = W11Scale("quick", commands=100, events=200, rounds=2)
FULL = W11Scale("full", commands=1_000, events=2_000, rounds=3)


class _Setup:
    """The hubs (and the nats-server) of one implementation, the service and the
    operator's connection."""

    def __init__(self, fleet: bool) -> None:
        self.fleet = fleet
        self.token = secrets.token_urlsafe(16)
        self.hubs: list[HubProcess] = []
        self.service: Coordinator | None = None
        self.operator: ClientConnection | None = None

    @property
    def operator_hub(self) -> HubProcess:
        return self.hubs[0]

    @property
    def service_hub(self) -> HubProcess:
        return self.hubs[1] if self.fleet else self.hubs[0]

    def watch_urls(self) -> list[tuple[str, int]]:
        """(URL, watchers) for each receivers' process."""
        query = f"?subject=events.coordination.progress.>&token={self.token}"
        if not self.fleet:
            return [(self.hubs[0].watch_url + query, WATCHERS)]
        shares = [WATCHERS // HUBS + (1 if i < WATCHERS % HUBS else 0) for i in range(HUBS)]
        return [(hub.watch_url + query, n) for hub, n in zip(self.hubs, shares, strict=True)]


@contextlib.asynccontextmanager
async def _setup(fleet: bool, queue_size: int) -> AsyncIterator[_Setup]:
    setup = _Setup(fleet)
    with contextlib.ExitStack() as stack:
        nats_url: str | None = None
        if fleet:
            store = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="w11-")))
            server = NatsServer(store, jetstream=False).start()
            stack.callback(server.kill)
            nats_url = server.url
        for n in range(HUBS if fleet else 1):
            hub = HubProcess(token=setup.token, nats_url=nats_url, hub_id=f"w11-{'abc'[n]}")
            setup.hubs.append(hub)
            stack.callback(hub.kill)
            await asyncio.to_thread(hub.start)
        operator = HubClient(setup.operator_hub.base_url, setup.token)
        if fleet:
            await _until(lambda: _peers_heard(setup), "every hub hearing the others")
        config = CoordinatorConfig(
            setup.service_hub.url, "bench", service_id="svc-bench", token=setup.token
        )
        async with Coordinator(config, queue_size=queue_size) as service:
            setup.service = service
            service.phases.register_workflow(_WORKFLOW)
            service.send_workflow_created(_WORKFLOW)
            await _until(lambda: _workflow_seen(operator), "the workflow at the operator's hub")
            url = f"{setup.operator_hub.base_url.replace('http', 'ws')}/v1/control"
            async with connect(f"{url}?token={setup.token}", compression=None) as control:
                setup.operator = control
                yield setup


async def _until(check: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await check():
        if time.monotonic() > deadline:
            raise WorkloadError(f"W11: timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _peers_heard(setup: _Setup) -> bool:
    for hub in setup.hubs:
        health = await asyncio.to_thread(HubClient(hub.base_url, setup.token).get, "/healthz")
        if health.get("fleet_peers") != HUBS - 1:
            return False
    return True


async def _workflow_seen(operator: HubClient) -> bool:
    try:
        await asyncio.to_thread(operator.workflow, _WORKFLOW)
    except HubClientError:
        return False
    return True


async def _command(control: ClientConnection, n: int) -> None:
    command = {"id": n, "command": "status", "workflow_id": _WORKFLOW, "timeout": 10}
    await control.send(orjson.dumps(command).decode())
    answer = orjson.loads(await asyncio.wait_for(control.recv(), WAIT_S))
    if answer.get("outcome") != "answered":
        raise WorkloadError(f"W11: a command was not answered: {answer}")


async def _measure_commands(fleet: bool, scale: W11Scale) -> Measurement:
    samples: list[float] = []
    async with _setup(fleet, 100) as setup:
        control = setup.operator
        assert control is not None
        for n in range(scale.commands // 10):  # warm-up
            await _command(control, n)
        for n in range(scale.commands):
            start = time.perf_counter_ns()
            await _command(control, n)
            samples.append(float(time.perf_counter_ns() - start))
    return Measurement(
        ops=len(samples),
        elapsed_ns=max(int(sum(samples)), 1),
        repeats=1,
        latencies_ns=tuple(samples),
    )


async def _measure_fanout(fleet: bool, scale: W11Scale) -> Measurement:
    best = 0
    async with _setup(fleet, scale.events + 10) as setup:
        service = setup.service
        assert service is not None
        async with contextlib.AsyncExitStack() as stack:
            # One watcher per hub first, until an event reaches each: the hub's NATS
            # subscription for the pattern is then in place, and the receivers' watchers
            # share it (a hub subscribes once per pattern).
            primers = [
                await stack.enter_async_context(connect(url, compression=None))
                for url, _ in setup.watch_urls()
            ]
            await _prime(service, primers)
            receivers = []
            for url, count in setup.watch_urls():
                receivers.append(await start_receivers(stack, url, count, scale.events * count))
            for primer in primers:
                await primer.close()
            await _until(lambda: _watchers_subscribed(setup), "the watchers")
            for _ in range(scale.rounds):
                start = time.perf_counter_ns()
                for k in range(scale.events):
                    service.send_progress(_WORKFLOW, "step", float(k % 100))
                await asyncio.gather(*(expect_line(p, b"done") for p in receivers))
                elapsed = time.perf_counter_ns() - start
                best = elapsed if not best else min(best, elapsed)
    return Measurement(
        ops=scale.events * WATCHERS, elapsed_ns=best, repeats=scale.rounds, latencies_ns=()
    )


async def _watchers_subscribed(setup: _Setup) -> bool:
    total = 0
    for hub in setup.hubs:
        health = await asyncio.to_thread(HubClient(hub.base_url, setup.token).get, "/healthz")
        total += int(health["watchers"])
    return total == WATCHERS


async def _prime(service: Coordinator, primers: list[ClientConnection]) -> None:
    deadline = time.monotonic() + WAIT_S
    waiting = list(primers)
    while waiting:
        if time.monotonic() > deadline:
            raise WorkloadError("W11: no event reached a hub's watchers")
        service.send_progress(_WORKFLOW, "prime", 0.0)
        for primer in list(waiting):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(primer.recv(), 0.2)
                waiting.remove(primer)


async def _compare_commands(scale: W11Scale, block: int = 10) -> tuple[Measurement, Measurement]:
    """The command case for the fleet and the single hub side by side, both set up at
    once, their commands timed in alternating blocks of ``block`` (the load of the moment
    falls on both alike)."""
    samples: tuple[list[float], list[float]] = ([], [])
    async with _setup(True, 100) as fleet, _setup(False, 100) as single:
        controls = (fleet.operator, single.operator)
        for control in controls:
            assert control is not None
            for n in range(scale.commands // 10):  # warm-up
                await _command(control, n)
        for turn in range(max(scale.commands // block, 1)):
            order = (0, 1) if turn % 2 == 0 else (1, 0)
            for side in order:
                control = controls[side]
                assert control is not None
                for n in range(block):
                    start = time.perf_counter_ns()
                    await _command(control, n)
                    samples[side].append(float(time.perf_counter_ns() - start))
    fleet_m, single_m = (
        Measurement(
            ops=len(taken),
            elapsed_ns=max(int(sum(taken)), 1),
            repeats=1,
            latencies_ns=tuple(taken),
        )
        for taken in samples
    )
    return fleet_m, single_m


def measure_case(name: str, case: str, scale: W11Scale) -> Measurement:
    """One case for ``rust`` (the fleet) or ``reference`` (one hub)."""
    fleet = name == "rust"
    if case == COMMAND:
        return asyncio.run(_measure_commands(fleet, scale))
    return asyncio.run(_measure_fanout(fleet, scale))


def run(implementation: Implementation, scale: Scale, step: StepReporter) -> list[ResultRow]:
    """The catalog's entry point: every case for ``implementation``."""
    chosen = QUICK if scale.name == "quick" else FULL
    rows = []
    for case in CASES:
        step(case)
        measurement = measure_case(implementation.name, case, chosen)
        hubs = float(HUBS if implementation.name == "rust" else 1)
        extra = {"hubs": hubs}
        if case == FANOUT:
            extra |= {"watchers": float(WATCHERS), "events": float(chosen.events)}
        rows.append(
            ResultRow.from_measurement("W11", case, implementation.name, measurement, extra)
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="W11: a fleet of hubs beside one hub")
    parser.add_argument("--runs", type=int, default=1, help="command comparisons to make")
    parser.add_argument("--no-fan-out", action="store_true", help="the command case only")
    args = parser.parse_args()
    scale = QUICK if quick_mode() else FULL
    print(f"W11 a fleet of {HUBS} hubs on NATS beside one hub, {scale.name} scale")
    for run_number in range(1, args.runs + 1):
        fleet, single = asyncio.run(_compare_commands(scale))
        print(f" run {run_number}: command round trip, rounds interleaved")
        for label, m in (("fleet, across hubs", fleet), ("one hub", single)):
            p50, p99 = (m.percentile(q) or 0.0 for q in (0.5, 0.99))
            print(f"  {label:<20} P50 {p50 / 1000:8.0f} µs  P99 {p99 / 1000:8.0f} µs")
        ratio = (fleet.percentile(0.5) or 0.0) / (single.percentile(0.5) or 1.0)
        print(f"  P50 ratio {ratio:.2f}x (target <= {TARGET_RATIO:.0f}x)")
    if args.no_fan_out:
        return
    fleet, single = (measure_case(n, FANOUT, scale) for n in ("rust", "reference"))
    print(
        f"  deliveries/s to {WATCHERS} watchers: over {HUBS} hubs "
        f"{format_rate(fleet.ops_per_s)}, on one hub {format_rate(single.ops_per_s)}"
    )


if __name__ == "__main__":
    main()
