"""``turnout bench`` end to end, in process at the quick scale: the table, the JSON results
and the SVG chart. No timing is asserted, only that every figure is there and positive.

The detailed checks run the subject-index workloads W1-W4; one run of everything checks
that each workload of the catalog measures each of its implementations that can import."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from turnout._bench.report import BenchReport
from turnout.cli import main

IMPLEMENTATIONS = {"rust", "reference"}
# How many cases each workload measures (W1: build, 4 token counts x repeated/unique x
# cache on/off, 3 match_many; W2: plain/queues x cache on/off x match/match+read;
# W3: insert, remove, cycle; W4: build, hit and repeated at two sizes).
CASES_PER_WORKLOAD = {"W1": 20, "W2": 8, "W3": 3, "W4": 5}
SVG = "{http://www.w3.org/2000/svg}"


@dataclass(frozen=True)
class BenchRun:
    status: int
    results: dict[str, Any]
    svg_path: Path


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> BenchRun:
    """One quick ``turnout bench`` of W1-W4, shared by the tests below."""
    out = tmp_path_factory.mktemp("bench")
    json_path, svg_path = out / "bench.json", out / "bench.svg"
    files = ["--json", str(json_path), "--svg", str(svg_path)]
    status = main(["bench", "--quick", *files, "--workload", *CASES_PER_WORKLOAD])
    return BenchRun(status, json.loads(json_path.read_text(encoding="utf-8")), svg_path)


def test_bench_succeeds(quick_run: BenchRun) -> None:
    data = quick_run.results
    assert quick_run.status == 0
    assert data["scale"] == "quick"
    assert set(data["implementations"]) == IMPLEMENTATIONS
    assert list(data["workloads"]) == list(CASES_PER_WORKLOAD)
    assert json.loads(json.dumps(BenchReport.from_json(data).to_json())) == data  # reads back


def test_every_case_has_both_implementations(quick_run: BenchRun) -> None:
    data = quick_run.results
    by_case: dict[tuple[str, str], set[str]] = {}
    for row in data["rows"]:
        by_case.setdefault((row["workload"], row["case"]), set()).add(row["implementation"])
    for workload, count in CASES_PER_WORKLOAD.items():
        cases = [case for (w, case) in by_case if w == workload]
        assert len(cases) == count, (workload, cases)
    assert all(impls == IMPLEMENTATIONS for impls in by_case.values()), by_case


def test_every_figure_is_positive(quick_run: BenchRun) -> None:
    data = quick_run.results
    for row in data["rows"]:
        assert row["ops_per_s"] > 0, row
        assert row["ns_per_op"] > 0, row
        percentiles = [row["p50_ns"], row["p95_ns"], row["p99_ns"]]
        assert all(p is not None and p > 0 for p in percentiles), row
        assert percentiles == sorted(percentiles), row
        assert all(value >= 0 for value in row["extra"].values()), row


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="memory is read from /proc")
def test_w4_build_reports_memory_per_entry(quick_run: BenchRun) -> None:
    data = quick_run.results
    builds = [r for r in data["rows"] if r["workload"] == "W4" and r["case"] == "build"]
    assert {r["implementation"] for r in builds} == IMPLEMENTATIONS
    assert all(r["extra"]["bytes_per_entry"] > 0 for r in builds)


def test_svg_is_xml_with_one_bar_per_case(quick_run: BenchRun) -> None:
    root = ET.parse(quick_run.svg_path).getroot()
    assert root.tag == f"{SVG}svg"
    bars = [rect for rect in root.iter(f"{SVG}rect") if rect.find(f"{SVG}title") is not None]
    assert len(bars) == sum(CASES_PER_WORKLOAD.values())


def test_every_workload_measures_each_implementation(tmp_path: Path) -> None:
    from turnout._bench.catalog import WORKLOADS

    json_path = tmp_path / "all.json"
    keys = [key for key in WORKLOADS if key not in CASES_PER_WORKLOAD]
    assert main(["bench", "--quick", "--json", str(json_path), "--workload", *keys]) == 0
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert list(data["workloads"]) == keys
    for key in keys:
        measured = {row["implementation"] for row in data["rows"] if row["workload"] == key}
        assert measured == set(data["columns"][key]["implementations"]), key
        assert "rust" in measured, key
        baseline = WORKLOADS[key].implementations[1]
        assert baseline.name in measured or not baseline.is_available(), key
    for row in data["rows"]:
        assert row["ops_per_s"] > 0 and row["ns_per_op"] > 0, row


def test_table_on_stdout_progress_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--workload", "w3", "--no-reference"]) == 0
    out, err = capsys.readouterr()
    assert "W3" in out and "insert" in out
    assert "reference" not in out and "speedup" not in out
    assert "W3 rust" in err and "done" in err


def test_unknown_workload_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--workload", "W11"])
    assert exit_info.value.code == 2
    assert "unknown workload" in capsys.readouterr().err


def test_cli_offers_every_workload() -> None:
    # The CLI lists the workload keys itself so that `turnout --help` loads no bench code.
    from turnout import cli
    from turnout._bench.catalog import WORKLOADS

    assert tuple(WORKLOADS) == cli._WORKLOAD_KEYS
