"""Timed loops over pre-built inputs: best-of-k repeats and sampled per-op latencies.

Every measured operation is a call ``op(*args)`` whose arguments come from pre-built
columns. The calls are driven by ``map`` into a zero-length ``deque``, so the loop itself
runs in C: what is timed is the call into the index, not Python bytecode around it, and
the harness costs the same for both implementations. Calls are timed in batches (100 by
default): one ``perf_counter_ns`` pair per batch keeps the clock out of the figure, and the
batch time divided by its size is one latency sample. The best repeat (by rate) gives both
the mean (ns/op, ops/s) and the P50/P95/P99 of its samples, so the figures describe one run;
the slower repeats are warm-up and noise. The garbage collector is paused while a batch
runs, as ``timeit`` does, so a collection triggered by the harness's own allocations does
not land on a random sample.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BATCH = 100

Batch = tuple[Sequence[Any], ...]
"""Argument columns of equal length: call ``i`` of the batch is ``op(*(c[i] for c in batch))``."""

_DISCARD: deque[object] = deque(maxlen=0)


def drive(
    op: Callable[..., object], batch: Batch, read: Callable[[Any], object] | None = None
) -> None:
    """Calls ``op`` once per row of ``batch`` (then ``read`` on each result, if given) and
    throws the results away, looping in C."""
    if read is None:
        _DISCARD.extend(map(op, *batch))
    else:
        _DISCARD.extend(map(read, map(op, *batch)))


def batches_of(columns: Batch, size: int = DEFAULT_BATCH) -> list[Batch]:
    """Splits argument columns into consecutive batches of at most ``size`` calls."""
    length = len(columns[0])
    return [tuple(c[start : start + size] for c in columns) for start in range(0, length, size)]


def repeated_batches(args: tuple[Any, ...], calls: int, size: int = DEFAULT_BATCH) -> list[Batch]:
    """``calls`` identical calls with ``args``, batched (the same objects, nothing copied)."""
    full, rest = divmod(calls, size)
    batch = tuple([a] * size for a in args)
    batches: list[Batch] = [batch] * full
    if rest:
        batches.append(tuple([a] * rest for a in args))
    return batches


@dataclass(frozen=True)
class Trial:
    """One repeat of a measurement: the operation and the batches of calls to time."""

    op: Callable[..., object]
    batches: Sequence[Batch]
    ops_per_call: int = 1
    """How many operations one call stands for (``match_many`` of 100 subjects is 100)."""
    read: Callable[[Any], object] | None = None
    """Applied to each call's result inside the timing (e.g. reading ``.plain``)."""
    whole: bool = False
    """Run every batch even past the time budget: what the trial builds is used afterwards."""
    after: Callable[[], None] | None = None
    """Runs untimed once the batches are done (e.g. checks what the batches left behind)."""


@dataclass(frozen=True)
class Measurement:
    """The outcome of a measurement: its best repeat."""

    ops: int
    """Operations in the best repeat."""
    elapsed_ns: int
    """Time the best repeat took."""
    repeats: int
    """Repeats actually run (fewer than asked when the time budget ran out)."""
    latencies_ns: tuple[float, ...] = field(repr=False)
    """The best repeat's latency samples: each is one batch's time over its operations."""

    @property
    def ns_per_op(self) -> float:
        return self.elapsed_ns / self.ops

    @property
    def ops_per_s(self) -> float:
        return self.ops * 1e9 / self.elapsed_ns

    def percentile(self, p: float) -> float | None:
        """The ``p`` quantile (0..1) of the latency samples, ``sorted[int((n-1)*p)]``."""
        if not self.latencies_ns:
            return None
        ordered = sorted(self.latencies_ns)
        return ordered[int((len(ordered) - 1) * p)]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Keeps the cyclic garbage collector off for the duration, restoring its state after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def measure(prepare: Callable[[int], Trial], *, repeats: int, budget_s: float) -> Measurement:
    """Runs up to ``repeats`` trials (``prepare(repeat)`` builds each, untimed) and keeps the
    fastest by rate.

    Stops early, between batches, once ``budget_s`` seconds have passed since the start, so a
    slow implementation cannot stretch a run without bound; at least one batch always runs.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    clock = time.perf_counter_ns
    deadline = clock() + int(budget_s * 1e9)
    best: tuple[int, int, list[float]] | None = None  # (ops, ns, samples) of the fastest
    runs = 0
    for repeat in range(repeats):
        if runs and clock() > deadline:
            break
        trial = prepare(repeat)
        latencies: list[float] = []
        ops, elapsed = _run_trial(trial, latencies, deadline, clock)
        if trial.after is not None:
            trial.after()
        runs += 1
        if ops and (best is None or ops * best[1] > best[0] * elapsed):
            best = (ops, elapsed, latencies)
    if best is None:
        raise ValueError("a measurement needs at least one call")
    return Measurement(
        ops=best[0], elapsed_ns=max(best[1], 1), repeats=runs, latencies_ns=tuple(best[2])
    )


def _run_trial(
    trial: Trial, latencies: list[float], deadline: int, clock: Callable[[], int]
) -> tuple[int, int]:
    """Times each batch of ``trial``; returns (operations, nanoseconds) over the batches run."""
    ops = 0
    elapsed = 0
    with gc_paused():
        for batch in trial.batches:
            if ops and not trial.whole and clock() > deadline:
                break
            start = clock()
            drive(trial.op, batch, trial.read)
            took = clock() - start
            batch_ops = len(batch[0]) * trial.ops_per_call
            if batch_ops:
                latencies.append(took / batch_ops)
            ops += batch_ops
            elapsed += took
    return ops, elapsed
