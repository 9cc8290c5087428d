"""Results of an autostart scale test (coder's ``scaletest/autostart`` ``RunResult`` and
``RunResults``): per-workspace timings, and their counts and latency percentiles, as JSON
and as the text report coder prints."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TextIO
from uuid import UUID

import orjson

from turnout._duration_text import go_duration_text, round_duration_ns
from turnout._go_json import go_escape
from turnout._wire import duration_from_ns, duration_to_ns, is_zero_time

__all__ = ["RunResult", "RunResults"]

_MILLISECOND_NS = 1_000_000
_PERCENTILES = (0.50, 0.95, 0.99)


@dataclass(frozen=True, slots=True)
class RunResult:
    """One workspace's autostart run. Times are timezone-aware; None (or Go's zero time)
    means the moment was not reached. ``error`` says why a run failed."""

    workspace_id: UUID
    workspace_name: str
    config_time: datetime | None = None
    """When the autostart schedule was set."""
    scheduled_time: datetime | None = None
    """When the workspace was scheduled to start."""
    completion_time: datetime | None = None
    """When the autostart build completed."""
    success: bool = False
    error: str = ""

    def __post_init__(self) -> None:
        for name in ("config_time", "scheduled_time", "completion_time"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, datetime):
                raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
            if value.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware")

    def end_to_end_latency(self) -> timedelta:
        """Completion minus config time; zero if either is missing."""
        return duration_from_ns(self.end_to_end_latency_ns())

    def trigger_to_completion_latency(self) -> timedelta:
        """Completion minus scheduled time (queueing plus build); zero if either is missing."""
        return duration_from_ns(self.trigger_to_completion_latency_ns())

    def end_to_end_latency_ns(self) -> int:
        """``end_to_end_latency`` in exact nanoseconds."""
        return _elapsed_ns(self.config_time, self.completion_time)

    def trigger_to_completion_latency_ns(self) -> int:
        """``trigger_to_completion_latency`` in exact nanoseconds."""
        return _elapsed_ns(self.scheduled_time, self.completion_time)


@dataclass(frozen=True, slots=True)
class RunResults:
    """Counts over all runs and latency percentiles over the successful ones (nearest-rank
    below: the value at index ``int((n - 1) * p)`` of the sorted latencies, zero when no run
    succeeded)."""

    total_runs: int
    successful_runs: int
    failed_runs: int
    runs: tuple[RunResult, ...]
    end_to_end_latency_p50: timedelta
    end_to_end_latency_p95: timedelta
    end_to_end_latency_p99: timedelta
    trigger_to_completion_p50: timedelta
    trigger_to_completion_p95: timedelta
    trigger_to_completion_p99: timedelta

    @classmethod
    def from_runs(cls, runs: Iterable[RunResult]) -> RunResults:
        all_runs = tuple(runs)
        succeeded = [run for run in all_runs if run.success]
        end_to_end = sorted(run.end_to_end_latency_ns() for run in succeeded)
        trigger = sorted(run.trigger_to_completion_latency_ns() for run in succeeded)
        e50, e95, e99 = (duration_from_ns(_percentile(end_to_end, p)) for p in _PERCENTILES)
        t50, t95, t99 = (duration_from_ns(_percentile(trigger, p)) for p in _PERCENTILES)
        return cls(
            total_runs=len(all_runs),
            successful_runs=len(succeeded),
            failed_runs=len(all_runs) - len(succeeded),
            runs=all_runs,
            end_to_end_latency_p50=e50,
            end_to_end_latency_p95=e95,
            end_to_end_latency_p99=e99,
            trigger_to_completion_p50=t50,
            trigger_to_completion_p95=t95,
            trigger_to_completion_p99=t99,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object coder writes: latencies in whole milliseconds (truncated), a run's
        ``error`` omitted when empty, and ``runs`` null when there are none (Go's nil
        slice)."""
        return {
            "total_runs": self.total_runs,
            "successful_runs": self.successful_runs,
            "failed_runs": self.failed_runs,
            "end_to_end_latency_p50_ms": _ms(self.end_to_end_latency_p50),
            "end_to_end_latency_p95_ms": _ms(self.end_to_end_latency_p95),
            "end_to_end_latency_p99_ms": _ms(self.end_to_end_latency_p99),
            "trigger_to_completion_p50_ms": _ms(self.trigger_to_completion_p50),
            "trigger_to_completion_p95_ms": _ms(self.trigger_to_completion_p95),
            "trigger_to_completion_p99_ms": _ms(self.trigger_to_completion_p99),
            "runs": [_run_dict(run) for run in self.runs] or None,
        }

    def to_json(self) -> bytes:
        return go_escape(orjson.dumps(self.to_dict()))

    def print_text(self, file: TextIO | None = None) -> None:
        """Writes coder's human-readable report to ``file`` (standard output by default):
        the counts, the percentiles (rounded to the millisecond, in Go's duration notation)
        when a run succeeded, and each failed run."""
        out = sys.stdout if file is None else file
        lines = [
            "Autostart Scale Test Results",
            "=============================",
            "",
            f"Total Runs:      {self.total_runs}",
            f"Successful:      {self.successful_runs}",
            f"Failed:          {self.failed_runs}",
            "",
        ]
        if self.successful_runs > 0:
            lines += [
                "End-to-End Latency (Config → Completion)",
                "-----------------------------------------",
                *_percentile_lines(
                    self.end_to_end_latency_p50,
                    self.end_to_end_latency_p95,
                    self.end_to_end_latency_p99,
                ),
                "Trigger to Completion Latency (Scheduled Time → Completion)",
                "------------------------------------------------------------",
                *_percentile_lines(
                    self.trigger_to_completion_p50,
                    self.trigger_to_completion_p95,
                    self.trigger_to_completion_p99,
                ),
            ]
        if self.failed_runs > 0:
            lines += ["Failed Runs", "-----------"]
            lines += [
                f"- {run.workspace_name} ({run.workspace_id}): {run.error}"
                for run in self.runs
                if not run.success
            ]
        out.write("\n".join(lines) + "\n")


def _elapsed_ns(start: datetime | None, end: datetime | None) -> int:
    if start is None or end is None or is_zero_time(start) or is_zero_time(end):
        return 0
    # datetimes stop at microseconds; a PreciseDatetime carries the nanoseconds below.
    below_micro = getattr(end, "nanosecond", 0) - getattr(start, "nanosecond", 0)
    return duration_to_ns(end - start) + below_micro


def _percentile(ordered: list[int], p: float) -> int:
    if not ordered:
        return 0
    return ordered[int((len(ordered) - 1) * p)]


def _ms(value: timedelta) -> int:
    """Whole milliseconds, truncated toward zero (Go's ``Duration.Milliseconds``)."""
    nanoseconds = duration_to_ns(value)
    whole = abs(nanoseconds) // _MILLISECOND_NS
    return -whole if nanoseconds < 0 else whole


def _run_dict(run: RunResult) -> dict[str, Any]:
    data: dict[str, Any] = {
        "workspace_id": str(run.workspace_id),
        "workspace_name": run.workspace_name,
        "success": run.success,
    }
    if run.error:
        data["error"] = run.error
    data["end_to_end_latency_ms"] = _ms(run.end_to_end_latency())
    data["trigger_to_completion_ms"] = _ms(run.trigger_to_completion_latency())
    return data


def _percentile_lines(p50: timedelta, p95: timedelta, p99: timedelta) -> list[str]:
    return [
        f"P50: {_rounded_text(p50)}",
        f"P95: {_rounded_text(p95)}",
        f"P99: {_rounded_text(p99)}",
        "",
    ]


def _rounded_text(value: timedelta) -> str:
    return go_duration_text(round_duration_ns(duration_to_ns(value), _MILLISECOND_NS))
