"""RunResult / RunResults (coder's scaletest/autostart output)."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from uuid import UUID

import orjson
import pytest

from turnout._duration_text import go_duration_text, round_duration_ns
from turnout._wire import ZERO_TIME, PreciseDatetime
from turnout.workspace import RunResult, RunResults

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
IDS = [UUID(int=n) for n in range(1, 6)]


def ok(n: int, trigger: timedelta, delay: timedelta = timedelta(minutes=1)) -> RunResult:
    return RunResult(
        workspace_id=IDS[n],
        workspace_name=f"workspace-{n + 1}",
        config_time=NOW,
        scheduled_time=NOW + delay,
        completion_time=NOW + delay + trigger,
        success=True,
    )


def coders_runs() -> list[RunResult]:
    """coder's own test data: three successes 10s/20s/30s after a 1-minute delay, one
    failure without times."""
    return [
        ok(0, timedelta(seconds=10)),
        ok(1, timedelta(seconds=20)),
        ok(2, timedelta(seconds=30)),
        RunResult(IDS[3], "workspace-4", success=False, error="build failed"),
    ]


def test_latencies_of_one_run() -> None:
    run = ok(0, timedelta(seconds=30), delay=timedelta(minutes=2))
    assert run.end_to_end_latency() == timedelta(minutes=2, seconds=30)
    assert run.trigger_to_completion_latency() == timedelta(seconds=30)


def test_a_missing_time_gives_zero_latency() -> None:
    run = RunResult(IDS[0], "w", config_time=NOW, completion_time=None, success=True)
    assert run.end_to_end_latency() == timedelta(0)
    zero = RunResult(IDS[0], "w", config_time=ZERO_TIME, scheduled_time=NOW, completion_time=NOW)
    assert zero.end_to_end_latency() == timedelta(0)
    assert zero.trigger_to_completion_latency() == timedelta(0)


def test_latency_keeps_nanoseconds() -> None:
    start = PreciseDatetime(2025, 1, 1, 0, 0, 0, 0, timezone.utc, nanosecond=100)
    end = PreciseDatetime(2025, 1, 1, 0, 0, 1, 2, timezone.utc, nanosecond=50)
    run = RunResult(IDS[0], "w", config_time=start, completion_time=end, success=True)
    assert run.end_to_end_latency_ns() == 1_000_001_950


def test_times_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        RunResult(IDS[0], "w", config_time=datetime(2025, 1, 1))
    with pytest.raises(TypeError):
        RunResult(IDS[0], "w", completion_time="2025-01-01")  # type: ignore[arg-type]


def test_coders_percentiles() -> None:
    results = RunResults.from_runs(coders_runs())
    assert (results.total_runs, results.successful_runs, results.failed_runs) == (4, 3, 1)
    # With 3 values every percentile is at index int(2 * p) = 1: the middle one.
    assert results.trigger_to_completion_p50 == timedelta(seconds=20)
    assert results.trigger_to_completion_p95 == timedelta(seconds=20)
    assert results.trigger_to_completion_p99 == timedelta(seconds=20)
    assert results.end_to_end_latency_p50 == timedelta(minutes=1, seconds=20)
    assert results.end_to_end_latency_p95 == timedelta(minutes=1, seconds=20)
    assert results.end_to_end_latency_p99 == timedelta(minutes=1, seconds=20)


def test_percentile_rule_on_more_runs() -> None:
    runs = [ok(0, timedelta(seconds=s)) for s in range(100, 0, -1)]  # 100 runs, unsorted
    results = RunResults.from_runs(runs)
    # sorted[int(99 * p)]: P50 -> index 49 (50 s), P95 -> 94 (95 s), P99 -> 98 (99 s).
    assert results.trigger_to_completion_p50 == timedelta(seconds=50)
    assert results.trigger_to_completion_p95 == timedelta(seconds=95)
    assert results.trigger_to_completion_p99 == timedelta(seconds=99)


def test_only_successful_runs_count_and_none_gives_zero() -> None:
    failed = RunResult(
        IDS[0],
        "w",
        config_time=NOW,
        completion_time=NOW + timedelta(hours=1),
        success=False,
        error="timeout",
    )
    results = RunResults.from_runs([failed])
    assert results.end_to_end_latency_p99 == timedelta(0)
    empty = RunResults.from_runs([])
    assert (empty.total_runs, empty.end_to_end_latency_p50) == (0, timedelta(0))


def test_json_keys_and_values() -> None:
    results = RunResults.from_runs(coders_runs())
    doc = orjson.loads(results.to_json())
    assert list(doc) == [
        "total_runs",
        "successful_runs",
        "failed_runs",
        "end_to_end_latency_p50_ms",
        "end_to_end_latency_p95_ms",
        "end_to_end_latency_p99_ms",
        "trigger_to_completion_p50_ms",
        "trigger_to_completion_p95_ms",
        "trigger_to_completion_p99_ms",
        "runs",
    ]
    assert doc["end_to_end_latency_p50_ms"] == 80_000
    assert doc["trigger_to_completion_p99_ms"] == 20_000
    assert doc["runs"][0] == {
        "workspace_id": "00000000-0000-0000-0000-000000000001",
        "workspace_name": "workspace-1",
        "success": True,
        "end_to_end_latency_ms": 70_000,
        "trigger_to_completion_ms": 10_000,
    }
    assert doc["runs"][3] == {
        "workspace_id": "00000000-0000-0000-0000-000000000004",
        "workspace_name": "workspace-4",
        "success": False,
        "error": "build failed",
        "end_to_end_latency_ms": 0,
        "trigger_to_completion_ms": 0,
    }


def test_json_golden_bytes_truncate_milliseconds() -> None:
    run = ok(0, timedelta(milliseconds=1, microseconds=999), delay=timedelta(microseconds=1))
    results = RunResults.from_runs([run])
    assert results.to_json() == (
        b'{"total_runs":1,"successful_runs":1,"failed_runs":0,'
        b'"end_to_end_latency_p50_ms":2,"end_to_end_latency_p95_ms":2,'
        b'"end_to_end_latency_p99_ms":2,"trigger_to_completion_p50_ms":1,'
        b'"trigger_to_completion_p95_ms":1,"trigger_to_completion_p99_ms":1,'
        b'"runs":[{"workspace_id":"00000000-0000-0000-0000-000000000001",'
        b'"workspace_name":"workspace-1","success":true,'
        b'"end_to_end_latency_ms":2,"trigger_to_completion_ms":1}]}'
    )


def test_json_of_no_runs_is_go_nil_slice() -> None:
    assert orjson.loads(RunResults.from_runs([]).to_json())["runs"] is None


def test_text_layout() -> None:
    out = io.StringIO()
    RunResults.from_runs(coders_runs()).print_text(out)
    assert out.getvalue() == (
        "Autostart Scale Test Results\n"
        "=============================\n"
        "\n"
        "Total Runs:      4\n"
        "Successful:      3\n"
        "Failed:          1\n"
        "\n"
        "End-to-End Latency (Config → Completion)\n"
        "-----------------------------------------\n"
        "P50: 1m20s\n"
        "P95: 1m20s\n"
        "P99: 1m20s\n"
        "\n"
        "Trigger to Completion Latency (Scheduled Time → Completion)\n"
        "------------------------------------------------------------\n"
        "P50: 20s\n"
        "P95: 20s\n"
        "P99: 20s\n"
        "\n"
        "Failed Runs\n"
        "-----------\n"
        "- workspace-4 (00000000-0000-0000-0000-000000000004): build failed\n"
    )


def test_text_without_successes_or_failures(capsys: pytest.CaptureFixture[str]) -> None:
    RunResults.from_runs([]).print_text()
    assert capsys.readouterr().out == (
        "Autostart Scale Test Results\n"
        "=============================\n"
        "\n"
        "Total Runs:      0\n"
        "Successful:      0\n"
        "Failed:          0\n"
        "\n"
    )


def test_text_rounds_to_the_millisecond() -> None:
    out = io.StringIO()
    run = ok(0, timedelta(seconds=1, microseconds=234_500), delay=timedelta(hours=1))
    RunResults.from_runs([run]).print_text(out)
    assert "P50: 1h0m1.235s\n" in out.getvalue()
    assert "P99: 1.235s\n" in out.getvalue()


@pytest.mark.parametrize(
    ("nanoseconds", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (999, "999ns"),
        (1_500, "1.5µs"),
        (1_000_000, "1ms"),
        (20_000_000, "20ms"),
        (1_234_567, "1.234567ms"),
        (1_000_000_000, "1s"),
        (20_000_000_000, "20s"),
        (1_500_000_000, "1.5s"),
        (120_000_000_000, "2m0s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_000_000_001, "1h2m3.000000001s"),
        (-1_500_000_000, "-1.5s"),
        (-999, "-999ns"),
    ],
)
def test_go_duration_text(nanoseconds: int, text: str) -> None:
    assert go_duration_text(nanoseconds) == text


@pytest.mark.parametrize(
    ("value", "unit", "rounded"),
    [
        (1_499_999, 1_000_000, 1_000_000),
        (1_500_000, 1_000_000, 2_000_000),
        (-1_500_000, 1_000_000, -2_000_000),
        (-1_499_999, 1_000_000, -1_000_000),
        (7, 0, 7),
    ],
)
def test_round_duration_halves_away_from_zero(value: int, unit: int, rounded: int) -> None:
    assert round_duration_ns(value, unit) == rounded
