"""W6: the workspace dispatcher routing build updates from one source to 10,000 workspaces,
1,000,000 updates, given as JSON bytes.

Four ways of doing the same routing are measured, each from the same messages:

- ``raw``: ``WorkspaceDispatcher.put_raw`` on batches of bytes (the Rust ``KeyRouter`` reads
  ``workspace_name``; each channel takes its share of a batch in one operation);
- ``objects``: ``WorkspaceDispatcher.run`` on an async iterable of ``WorkspaceBuildUpdate``
  objects decoded beforehand (what a service that already holds objects pays);
- ``decode+objects``: the same, decoding each message with ``WorkspaceBuildUpdate.from_json``
  inside the timing (what the object path costs when the updates arrive as bytes);
- ``end to end``: 1,000 workspaces, each with a consumer task reading its channel a batch
  at a time (``channel.batches()``) and reading a field of every update, fed by ``put_raw``
  in reads of 4,096 messages (the source yields to the loop between reads, as a network
  reader does); beside ``baseline end to end``: the same reads, each message decoded by
  ``orjson.loads`` and put in an ``asyncio.Queue`` per workspace, one consumer task per
  queue reading the same field of each dict;
- ``baseline``: plain Python, no dispatcher: ``orjson.loads`` and a dict lookup per
  message, appending to a list per workspace (no channels, no bounds: a lower bound for
  a Python dispatcher); ``baseline objects``: the same async source as ``objects``, a dict
  lookup and a bounded ``asyncio.Queue`` per workspace.

Channels are sized to hold every update of their workspace, so the figures are the cost of
routing, not of waiting for consumers (a ``block`` channel that fills stalls the dispatcher
until its consumer reads; ``drop_oldest`` drops instead). Each pass is prepared untimed (a
fresh dispatcher, an event loop, the batches cut) and its ``run()`` is what is timed.

``turnout bench --workload W6`` runs it through :func:`run`: the raw path beside
``baseline``, the object path beside ``baseline objects``, and end to end beside
``baseline end to end``. Run standalone for all four
paths: ``python -m turnout._bench.w6_dispatcher [quick|full]``.
"""

from __future__ import annotations

import asyncio
import functools
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson

from turnout._bench.implementations import Implementation
from turnout._bench.report import ResultRow
from turnout._bench.timing import Measurement, gc_paused
from turnout._bench.workloads import Scale, StepReporter
from turnout.workspace import (
    ProvisionerJobStatus,
    WorkspaceBuildUpdate,
    WorkspaceChannel,
    WorkspaceDispatcher,
    WorkspaceTransition,
)

__all__ = [
    "FULL",
    "QUICK",
    "PreparedPass",
    "W6Data",
    "W6Pass",
    "W6Scale",
    "prepare_baseline",
    "prepare_baseline_end_to_end",
    "prepare_baseline_objects",
    "prepare_decoded_objects",
    "prepare_end_to_end",
    "prepare_objects",
    "prepare_raw",
    "run",
    "timed",
    "w6_data",
]


@dataclass(frozen=True)
class W6Scale:
    name: str
    workspaces: int
    updates: int
    batch: int
    """Messages per ``put_raw`` batch."""


FULL = W6Scale(name="full", workspaces=10_000, updates=1_000_000, batch=65_536)
QUICK = W6Scale(name="quick", workspaces=500, updates=20_000, batch=4_096)
# End to end: one consumer task per workspace, fed in network-sized reads.
END_TO_END_FULL = W6Scale(name="full", workspaces=1_000, updates=200_000, batch=4_096)
END_TO_END_QUICK = W6Scale(name="quick", workspaces=1_000, updates=20_000, batch=4_096)

# A build goes pending -> running -> succeeded; the stream cycles through those.
_STATUSES = (
    ProvisionerJobStatus.PENDING,
    ProvisionerJobStatus.RUNNING,
    ProvisionerJobStatus.SUCCEEDED,
)


@dataclass(frozen=True)
class W6Data:
    names: list[str]
    updates: list[WorkspaceBuildUpdate]
    messages: list[bytes]
    """``updates[i].to_json()``."""

    @property
    def most_per_workspace(self) -> int:
        """The most updates any one workspace gets: the channel size that never fills."""
        return max(Counter(update.workspace_name for update in self.updates).values())


def w6_data(workspaces: int, updates: int, seed: int = 6) -> W6Data:
    """``updates`` build updates spread at random (deterministically) over ``workspaces``
    workspaces named ``ws-00000``..., with their JSON."""
    rng = random.Random(seed)
    names = [f"ws-{i:05d}" for i in range(workspaces)]
    workspace_ids = [UUID(int=rng.getrandbits(128), version=4) for _ in names]
    build_ids = [UUID(int=rng.getrandbits(128), version=4) for _ in names]
    sent = [0] * workspaces
    built: list[WorkspaceBuildUpdate] = []
    for _ in range(updates):
        at = rng.randrange(workspaces)
        count = sent[at]
        sent[at] = count + 1
        built.append(
            WorkspaceBuildUpdate(
                workspace_id=workspace_ids[at],
                workspace_name=names[at],
                build_id=build_ids[at],
                transition=WorkspaceTransition.START,
                job_status=_STATUSES[count % 3],
                build_number=count // 3 + 1,
            )
        )
    return W6Data(names=names, updates=built, messages=_as_received([u.to_json() for u in built]))


def _as_received(encoded: list[bytes]) -> list[bytes]:
    """The messages as a network reader hands them over: each copied out of one receive
    buffer, so they lie one after another in memory. (The encoder's own output objects lie
    a page apart each; routing those would mostly measure cache misses of that layout.)"""
    buffer = b"".join(encoded)
    messages = []
    at = 0
    for message in encoded:
        end = at + len(message)
        messages.append(buffer[at:end])
        at = end
    return messages


class PreparedPass:
    """One routing of all the messages, set up (dispatcher, event loop) and ready to run.

    ``run()`` is the part to time (the garbage collector is paused meanwhile, as ``timeit``
    does: a collection set off by the million objects built beforehand must not land on
    one measurement); ``routed()`` then says how many updates reached a workspace.
    """

    def __init__(
        self,
        feed: Callable[[], Coroutine[Any, Any, None]] | Callable[[], None],
        routed: Callable[[], int],
    ) -> None:
        self._feed = feed
        self._routed = routed
        self._loop = asyncio.new_event_loop()

    def run(self) -> None:
        try:
            with gc_paused():
                outcome = self._feed()
                if outcome is not None:
                    self._loop.run_until_complete(outcome)
        finally:
            self._loop.close()

    def routed(self) -> int:
        return self._routed()


@dataclass(frozen=True)
class W6Pass:
    """One timed routing of all the messages."""

    elapsed_ns: int
    routed: int
    """Updates that reached a workspace's channel (or list, for the baseline)."""

    @property
    def updates_per_s(self) -> float:
        return self.routed * 1e9 / max(self.elapsed_ns, 1)


def timed(prepared: PreparedPass) -> W6Pass:
    """Runs a prepared pass once, timing it."""
    start = time.perf_counter_ns()
    prepared.run()
    elapsed = time.perf_counter_ns() - start
    return W6Pass(elapsed_ns=elapsed, routed=prepared.routed())


def prepare_raw(data: W6Data, batch: int) -> PreparedPass:
    """The raw path: ``put_raw`` on consecutive batches of ``batch`` messages."""
    messages = data.messages
    batches = [messages[at : at + batch] for at in range(0, len(messages), batch)]
    dispatcher = _dispatcher_for(data)

    async def feed() -> None:
        for chunk in batches:
            await dispatcher.put_raw(chunk)
        dispatcher.close()

    return PreparedPass(feed, lambda: dispatcher.stats()["routed"])


def prepare_objects(data: W6Data) -> PreparedPass:
    """The object path: ``run`` on an async iterable of ready ``WorkspaceBuildUpdate``s."""
    dispatcher = _dispatcher_for(data)

    async def feed() -> None:
        await dispatcher.run(_each(data.updates))

    return PreparedPass(feed, lambda: dispatcher.stats()["routed"])


def prepare_decoded_objects(data: W6Data) -> PreparedPass:
    """The object path from bytes: each message decoded (and validated) in the source."""
    dispatcher = _dispatcher_for(data)

    async def decoded() -> AsyncIterator[WorkspaceBuildUpdate]:
        decode = WorkspaceBuildUpdate.from_json
        for message in data.messages:
            yield decode(message)

    async def feed() -> None:
        await dispatcher.run(decoded())

    return PreparedPass(feed, lambda: dispatcher.stats()["routed"])


def prepare_baseline(data: W6Data) -> PreparedPass:
    """Plain Python: ``orjson.loads`` and a dict lookup per message, a list per workspace."""
    lists: dict[str, list[bytes]] = {name: [] for name in data.names}

    def feed() -> None:
        loads = orjson.loads
        for message in data.messages:
            target = lists.get(loads(message).get("workspace_name"))
            if target is not None:
                target.append(message)

    return PreparedPass(feed, lambda: sum(map(len, lists.values())))


def prepare_baseline_objects(data: W6Data) -> PreparedPass:
    """Plain Python from objects, as one writes coder's dispatcher with asyncio: the same
    async source as the object path, a dict lookup per update and a bounded
    ``asyncio.Queue`` per workspace (sized, like the channels, never to fill)."""
    most = data.most_per_workspace
    queues: dict[str, asyncio.Queue[WorkspaceBuildUpdate]] = {
        name: asyncio.Queue(most) for name in data.names
    }

    async def feed() -> None:
        async for update in _each(data.updates):
            target = queues.get(update.workspace_name)
            if target is not None:
                target.put_nowait(update)

    return PreparedPass(feed, lambda: sum(queue.qsize() for queue in queues.values()))


def prepare_end_to_end(data: W6Data, batch: int) -> PreparedPass:
    """The dispatcher with a consumer task per workspace reading batches (see the module
    docstring); ``routed()`` counts the updates the consumers read."""
    batches = [data.messages[at : at + batch] for at in range(0, len(data.messages), batch)]
    dispatcher = _dispatcher_for(data)
    read = [0]

    async def consume(channel: WorkspaceChannel) -> None:
        seen = 0
        async for updates in channel.batches():
            for update in updates:
                seen += update.build_number > 0
        read[0] += seen

    async def feed() -> None:
        loop = asyncio.get_running_loop()
        consumers = [loop.create_task(consume(c)) for c in dispatcher.channels.values()]
        for chunk in batches:
            await dispatcher.put_raw(chunk)
            await asyncio.sleep(0)
        dispatcher.close()
        await asyncio.gather(*consumers)

    return PreparedPass(feed, lambda: read[0])


def prepare_baseline_end_to_end(data: W6Data, batch: int) -> PreparedPass:
    """Plain asyncio end to end: ``orjson.loads`` per message, an ``asyncio.Queue`` per
    workspace, a consumer task per queue reading a field of each dict."""
    batches = [data.messages[at : at + batch] for at in range(0, len(data.messages), batch)]
    read = [0]

    async def feed() -> None:
        queues: dict[str, asyncio.Queue[dict[str, Any] | None]] = {
            name: asyncio.Queue() for name in data.names
        }

        async def consume(queue: asyncio.Queue[dict[str, Any] | None]) -> None:
            seen = 0
            while (update := await queue.get()) is not None:
                seen += update["build_number"] > 0
            read[0] += seen

        loop = asyncio.get_running_loop()
        consumers = [loop.create_task(consume(q)) for q in queues.values()]
        loads = orjson.loads
        for chunk in batches:
            for message in chunk:
                update = loads(message)
                queue = queues.get(update.get("workspace_name"))
                if queue is not None:
                    queue.put_nowait(update)
            await asyncio.sleep(0)
        for queue in queues.values():
            queue.put_nowait(None)
        await asyncio.gather(*consumers)

    return PreparedPass(feed, lambda: read[0])


@functools.cache
def end_to_end_data(scale_name: str) -> tuple[W6Scale, W6Data]:
    """The end-to-end case's scale and updates (1,000 workspaces)."""
    scale = END_TO_END_QUICK if scale_name == "quick" else END_TO_END_FULL
    return scale, w6_data(scale.workspaces, scale.updates)


def _end_to_end(
    prepare: Callable[[W6Data, int], PreparedPass],
) -> Callable[[W6Data, W6Scale], PreparedPass]:
    def prepared(data: W6Data, scale: W6Scale) -> PreparedPass:
        e2e_scale, e2e_data = end_to_end_data(scale.name)
        return prepare(e2e_data, e2e_scale.batch)

    return prepared


RAW_CASE = "W6 route JSON bytes"
OBJECTS_CASE = "W6 route update objects"
END_TO_END_CASE = "W6 end to end, 1,000 consumer tasks"
# Case -> implementation -> the pass to time.
_CATALOG: dict[str, dict[str, Callable[[W6Data, W6Scale], PreparedPass]]] = {
    RAW_CASE: {
        "rust": lambda data, scale: prepare_raw(data, scale.batch),
        "reference": lambda data, scale: prepare_baseline(data),
    },
    OBJECTS_CASE: {
        "rust": lambda data, scale: prepare_objects(data),
        "reference": lambda data, scale: prepare_baseline_objects(data),
    },
    END_TO_END_CASE: {
        "rust": _end_to_end(prepare_end_to_end),
        "reference": _end_to_end(prepare_baseline_end_to_end),
    },
}


def run(implementation: Implementation, scale: Scale, step: StepReporter) -> list[ResultRow]:
    """The catalog's entry point: both cases for ``implementation``, best of the scale's
    repeats; raises if an update did not reach its workspace."""
    chosen = QUICK if scale.name == "quick" else FULL
    step("W6 building the updates")
    data = w6_data(chosen.workspaces, chosen.updates)
    rows = []
    for case, passes in _CATALOG.items():
        step(case)
        case_scale = end_to_end_data(chosen.name)[0] if case == END_TO_END_CASE else chosen
        best: W6Pass | None = None
        for _ in range(max(scale.repeats, 1)):
            measured = timed(passes[implementation.name](data, chosen))
            if measured.routed != case_scale.updates:
                raise AssertionError(
                    f"{case}: {measured.routed:,} of {case_scale.updates:,} routed"
                )
            if best is None or measured.updates_per_s > best.updates_per_s:
                best = measured
        assert best is not None
        measurement = Measurement(
            ops=best.routed, elapsed_ns=best.elapsed_ns, repeats=scale.repeats, latencies_ns=()
        )
        extra = {"workspaces": float(case_scale.workspaces), "batch": float(case_scale.batch)}
        rows.append(ResultRow.from_measurement("W6", case, implementation.name, measurement, extra))
    return rows


def _dispatcher_for(data: W6Data) -> WorkspaceDispatcher:
    # Channels that hold all of their workspace's updates: no consumer is needed.
    return WorkspaceDispatcher(data.names, buffer=data.most_per_workspace)


async def _each(items: Sequence[WorkspaceBuildUpdate]) -> AsyncIterator[WorkspaceBuildUpdate]:
    for item in items:
        yield item


def main(argv: list[str]) -> int:
    scale = FULL if argv[:1] == ["full"] else QUICK
    data = w6_data(scale.workspaces, scale.updates)
    passes: dict[str, Callable[[], PreparedPass]] = {
        "baseline": lambda: prepare_baseline(data),
        "baseline objects": lambda: prepare_baseline_objects(data),
        f"raw (batches of {scale.batch})": lambda: prepare_raw(data, scale.batch),
        "objects": lambda: prepare_objects(data),
        "decode+objects": lambda: prepare_decoded_objects(data),
    }
    e2e_scale, e2e_data = end_to_end_data(scale.name)
    passes["baseline end to end"] = lambda: prepare_baseline_end_to_end(e2e_data, e2e_scale.batch)
    passes["end to end"] = lambda: prepare_end_to_end(e2e_data, e2e_scale.batch)
    print(f"W6 {scale.name}: {scale.updates:,} updates to {scale.workspaces:,} workspaces")
    for name, prepare in passes.items():
        best = max((timed(prepare()) for _ in range(3)), key=lambda p: p.updates_per_s)
        print(f"{name:28} {best.updates_per_s:>12,.0f} updates/s  ({best.routed:,} routed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
