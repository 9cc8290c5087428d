"""``turnout bench`` end to end, in process at the quick scale: the table, the JSON results
and the SVG chart. No timing is asserted, only that every figure is there and positive.

The detailed checks run the subject-index workloads W1-W4; one run of everything checks
that each workload of the catalog measures each of its implementations that can import."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from turnout._bench.catalog import WORKLOADS
from turnout._bench.report import (
    JSON_FORMAT,
    WIDTH,
    BenchReport,
    ResultRow,
    WorkloadColumns,
    render_table,
)
from turnout.cli import main

IMPLEMENTATIONS = {"rust", "reference"}
# How many cases each workload measures (W1: build, 4 token counts x repeated/unique x
# cache on/off, 3 match_many; W2: plain/queues x cache on/off x match/match+read;
# W3: insert, remove, cycle; W4: build, hit and repeated at two sizes).
CASES_PER_WORKLOAD = {"W1": 20, "W2": 8, "W3": 3, "W4": 5}
SVG = "{http://www.w3.org/2000/svg}"
BENCHMARKS_PAGE = Path(__file__).parent.parent / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class BenchRun:
    status: int
    results: dict[str, Any]
    svg_path: Path
    table: str


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> BenchRun:
    """One quick ``turnout bench`` of W1-W4, shared by the tests below."""
    out = tmp_path_factory.mktemp("bench")
    json_path, svg_path = out / "bench.json", out / "bench.svg"
    files = ["--json", str(json_path), "--svg", str(svg_path)]
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        status = main(["bench", "--quick", *files, "--workload", *CASES_PER_WORKLOAD])
    results = json.loads(json_path.read_text(encoding="utf-8"))
    return BenchRun(status, results, svg_path, table.getvalue())


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


# One run per workload: together they take minutes on a loaded machine, past the
# suite's per-test timeout, which is there to end a hang.
@pytest.mark.parametrize("key", [key for key in WORKLOADS if key not in CASES_PER_WORKLOAD])
def test_every_workload_measures_each_implementation(
    key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path = tmp_path / f"{key}.json"
    assert main(["bench", "--quick", "--json", str(json_path), "--workload", key]) == 0
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert list(data["workloads"]) == [key]
    measured = {row["implementation"] for row in data["rows"] if row["workload"] == key}
    assert measured == set(data["columns"][key]["implementations"])
    assert "rust" in measured
    baseline = WORKLOADS[key].implementations[1]
    assert baseline.name in measured or not baseline.is_available()
    for row in data["rows"]:
        assert row["ops_per_s"] > 0 and row["ns_per_op"] > 0, row
    _check_rows(data)  # the documented --json shape, W5-W10's extra figures included
    table = capsys.readouterr().out.splitlines()
    assert all(len(line) <= WIDTH for line in table), max(table, key=len)


def test_table_on_stdout_progress_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--workload", "w3", "--no-reference"]) == 0
    out, err = capsys.readouterr()
    assert "W3" in out and "insert" in out
    assert "reference" not in out and "speedup" not in out
    assert "W3 rust" in err and "done" in err


def test_unknown_workload_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--workload", "W99"])
    assert exit_info.value.code == 2
    assert "unknown workload" in capsys.readouterr().err


def test_cli_offers_every_workload() -> None:
    # The CLI lists the workload keys itself so that `turnout --help` loads no bench code.
    from turnout import cli
    from turnout._bench.catalog import WORKLOADS

    assert tuple(WORKLOADS) == cli._WORKLOAD_KEYS


# --- what a person reads ----------------------------------------------------------------


def test_the_table_fits_100_columns(quick_run: BenchRun) -> None:
    lines = quick_run.table.splitlines()
    assert all(len(line) <= WIDTH == 100 for line in lines), max(lines, key=len)
    assert "vs pure-Python index" in quick_run.table  # the baseline named in the heading


def _report(rows: list[ResultRow], **columns: Any) -> BenchReport:
    layout = WorkloadColumns(
        title="a workload",
        implementations=("rust", "reference", "peer"),
        labels={"rust": "turnout", "reference": "plain dict bus", "peer": "peer lib"},
        **columns,
    )
    return BenchReport(scale="quick", columns={"W5": layout}, rows=tuple(rows))


def _row(case: str, implementation: str, ns: float, **extra: float) -> ResultRow:
    return ResultRow("W5", case, implementation, 1e9 / ns, ns, extra=dict(extra))


def test_every_ratio_is_above_one_when_turnout_is_faster() -> None:
    rows = [
        _row("fast", "rust", 100),
        _row("fast", "reference", 300),  # turnout 3x faster
        _row("fast", "peer", 50),  # turnout at half the speed
        _row("cached", "rust", 100, cache_on_vs_off=0.5),  # the cache halves the time
    ]
    table = render_table(_report(rows, slower={"fast": "it does more work"}))
    heading = next(line for line in table.splitlines() if line.startswith("case"))
    assert "vs plain dict bus" in heading and "vs peer lib" in heading
    fast = next(line for line in table.splitlines() if line.startswith("fast"))
    assert "3.00x (300 ns)" in fast and "0.50x (50.0 ns)" in fast
    assert "slower than peer lib: it does more work" in table
    assert "slower than plain dict bus" not in table
    assert "faster with the cache): turnout 2.00x" in table
    assert "0.50x" not in table.split("cache")[-1]  # not the stored way up


def test_a_wide_table_sheds_detail_until_it_fits() -> None:
    case = "P50 latency at 5k msgs/s, 1 sync handler"  # W9's longest, beside three peers
    peers = {"reference": "plain nats-py", "faststream": "FastStream", "pyee": "pyee on NATS"}
    layout = WorkloadColumns(
        title="wide",
        implementations=("rust", *peers),
        labels={"rust": "turnout", **peers},
    )
    rows = [
        ResultRow("W9", case, "rust", 1e6, 1_000.0, 900.0, 1_500.0, 2_000.0),
        *(ResultRow("W9", case, name, 5e5, 2_000.0) for name in peers),
    ]
    report = BenchReport(scale="quick", columns={"W9": layout}, rows=tuple(rows))
    lines = render_table(report).splitlines()
    assert all(len(line) <= WIDTH for line in lines), max(lines, key=len)
    assert "    > P50/P95/P99: 0.90/1.50/2.00 µs" in lines  # moved under the row
    assert any(line.startswith(case) for line in lines)
    assert any(line.endswith("2.00x") for line in lines)


def test_a_slower_row_without_a_recorded_reason_says_so() -> None:
    table = render_table(_report([_row("c", "rust", 200), _row("c", "reference", 100)]))
    assert "slower than plain dict bus: no reason recorded" in table


def test_times_take_the_unit_that_fits() -> None:
    from turnout._bench.report import format_time

    assert [format_time(ns) for ns in (84.56, 999.4, 2_970, 3_279_627, 1.2e9)] == [
        "84.6 ns",
        "999 ns",
        "2.97 µs",
        "3.28 ms",
        "1.20 s",
    ]


def test_a_skipped_implementation_is_named_once_with_its_install_command() -> None:
    # blinker made unimportable, as when the bench extra is not installed.
    code = (
        "import sys; sys.modules['blinker'] = None\n"
        "from turnout.cli import main\n"
        "sys.exit(main(['bench', '--quick', '--workload', 'W5']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    skip_lines = [line for line in output.splitlines() if "blinker" in line]
    assert len(skip_lines) == 1, output  # once, with the other bench-extra libraries
    assert skip_lines[0].startswith("  W5 blinker"), output
    assert skip_lines[0].endswith(": pip install 'turnout[bench]'"), output
    assert "skipped (not installed here):" in done.stdout


# --- the documented --json schema -------------------------------------------------------


def _documented_fields(section: str) -> set[str]:
    """The field names in the table under ``### <section>`` of docs/benchmarks.md."""
    page = BENCHMARKS_PAGE.read_text(encoding="utf-8")
    body = page.split(f"### {section}\n", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9_]+)` \|", body, flags=re.MULTILINE))


def test_the_json_document_has_the_documented_shape(quick_run: BenchRun) -> None:
    data = quick_run.results
    assert data["format"] == JSON_FORMAT
    assert f"`{JSON_FORMAT}`" in BENCHMARKS_PAGE.read_text(encoding="utf-8")
    assert set(data) == _documented_fields("Top level")
    assert all(set(row) == _documented_fields("`rows[]`") for row in data["rows"])
    layouts = data["columns"].values()
    assert all(set(c) == _documented_fields("`columns.<workload>`") for c in layouts)
    _check_rows(data)


def _check_rows(data: dict[str, Any]) -> None:
    documented_extra = _documented_fields("`rows[].extra`")
    for row in data["rows"]:
        assert isinstance(row["ops_per_s"], float) and isinstance(row["ns_per_op"], float)
        assert all(isinstance(v, float) for v in row["extra"].values())
        assert set(row["extra"]) <= documented_extra, row
