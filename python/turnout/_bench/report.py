"""Benchmark results: one row per (workload, case, implementation), their JSON form, and the
text table that puts turnout beside each workload's other implementations."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from turnout._bench.timing import Measurement

JSON_FORMAT = "turnout-bench/2"


@dataclass(frozen=True)
class ResultRow:
    """One measured case for one implementation."""

    workload: str
    """``W1`` .. ``W10``."""
    case: str
    """What was measured, the same text for every implementation so rows pair up."""
    implementation: str
    """``rust`` (turnout), ``reference`` (the baseline) or a third party's name."""
    ops_per_s: float
    ns_per_op: float
    p50_ns: float | None = None
    p95_ns: float | None = None
    p99_ns: float | None = None
    extra: dict[str, float] = field(default_factory=dict)
    """Case-specific figures: ``entries`` (index size), ``bytes_per_entry``, ``repeats``, ..."""

    @classmethod
    def from_measurement(
        cls,
        workload: str,
        case: str,
        implementation: str,
        measurement: Measurement,
        extra: Mapping[str, float] | None = None,
    ) -> ResultRow:
        return cls(
            workload=workload,
            case=case,
            implementation=implementation,
            ops_per_s=measurement.ops_per_s,
            ns_per_op=measurement.ns_per_op,
            p50_ns=measurement.percentile(0.50),
            p95_ns=measurement.percentile(0.95),
            p99_ns=measurement.percentile(0.99),
            extra={"repeats": float(measurement.repeats), **(extra or {})},
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResultRow:
        return cls(
            workload=str(data["workload"]),
            case=str(data["case"]),
            implementation=str(data["implementation"]),
            ops_per_s=float(data["ops_per_s"]),
            ns_per_op=float(data["ns_per_op"]),
            p50_ns=_optional_float(data.get("p50_ns")),
            p95_ns=_optional_float(data.get("p95_ns")),
            p99_ns=_optional_float(data.get("p99_ns")),
            extra={str(k): float(v) for k, v in dict(data.get("extra") or {}).items()},
        )


@dataclass(frozen=True)
class WorkloadColumns:
    """How one workload's table is laid out: its implementations in column order."""

    title: str
    implementations: tuple[str, ...]
    labels: dict[str, str]
    """Implementation name -> column heading."""
    baseline: str = "reference"
    """The implementation whose ns/op over turnout's is the speedup."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkloadColumns:
        return cls(
            title=str(data["title"]),
            implementations=tuple(str(i) for i in data["implementations"]),
            labels={str(k): str(v) for k, v in dict(data["labels"]).items()},
            baseline=str(data.get("baseline", "reference")),
        )


@dataclass(frozen=True)
class BenchReport:
    """A whole ``turnout bench`` run."""

    scale: str
    """``quick`` or ``full``."""
    columns: dict[str, WorkloadColumns]
    """Workload key -> its title and its table's columns, in run order."""
    rows: tuple[ResultRow, ...]
    environment: dict[str, str] = field(default_factory=dict)
    """Python version, platform, CPU count, turnout version."""
    duration_s: float = 0.0
    skipped: tuple[str, ...] = ()
    """Implementations left out because what they need is not installed, and why."""

    @property
    def implementations(self) -> tuple[str, ...]:
        """Short names of every implementation measured, in first-column order."""
        return tuple(dict.fromkeys(n for c in self.columns.values() for n in c.implementations))

    @property
    def workload_titles(self) -> dict[str, str]:
        return {key: c.title for key, c in self.columns.items()}

    def baselines(self) -> dict[str, str]:
        return {key: c.baseline for key, c in self.columns.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": JSON_FORMAT,
            "scale": self.scale,
            "implementations": list(self.implementations),
            "workloads": self.workload_titles,
            "environment": dict(self.environment),
            "duration_s": self.duration_s,
            "rows": [asdict(row) for row in self.rows],
            "columns": {key: asdict(c) for key, c in self.columns.items()},
            "skipped": list(self.skipped),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BenchReport:
        if data.get("format") != JSON_FORMAT:
            raise ValueError(f"not a {JSON_FORMAT} document")
        return cls(
            scale=str(data["scale"]),
            columns={
                str(k): WorkloadColumns.from_json(v) for k, v in dict(data["columns"]).items()
            },
            rows=tuple(ResultRow.from_json(row) for row in data["rows"]),
            environment={str(k): str(v) for k, v in dict(data.get("environment") or {}).items()},
            duration_s=float(data.get("duration_s", 0.0)),
            skipped=tuple(str(s) for s in data.get("skipped") or ()),
        )

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class ComparedCase:
    """One case of one workload with each implementation's row (missing if not run)."""

    workload: str
    case: str
    by_implementation: dict[str, ResultRow]
    baseline: str = "reference"

    def speedup(self, fast: str = "rust", baseline: str | None = None) -> float | None:
        """How many times fewer nanoseconds per operation ``fast`` took than ``baseline``."""
        fast_row = self.by_implementation.get(fast)
        base_row = self.by_implementation.get(self.baseline if baseline is None else baseline)
        if fast_row is None or base_row is None or fast_row.ns_per_op <= 0:
            return None
        return base_row.ns_per_op / fast_row.ns_per_op


def compare(
    rows: Iterable[ResultRow], baselines: Mapping[str, str] | None = None
) -> list[ComparedCase]:
    """Groups rows by (workload, case), keeping the order cases were first measured in;
    ``baselines`` names each workload's baseline (default ``reference``)."""
    grouped: dict[tuple[str, str], dict[str, ResultRow]] = {}
    for row in rows:
        grouped.setdefault((row.workload, row.case), {})[row.implementation] = row
    chosen = baselines or {}
    return [
        ComparedCase(w, c, by_impl, chosen.get(w, "reference"))
        for (w, c), by_impl in grouped.items()
    ]


# --- the text table ---------------------------------------------------------------------


def render_table(report: BenchReport) -> str:
    """The results as a fixed-width text table, one section per workload, each with the
    columns of that workload's implementations."""
    compared = compare(report.rows, report.baselines())
    lines = [_title_line(report), *_LEGEND, ""]
    for workload in report.columns:
        cases = [c for c in compared if c.workload == workload]
        if not cases:
            continue
        columns = report.columns[workload]
        names = [n for n in columns.implementations if any(n in c.by_implementation for c in cases)]
        with_speedup = "rust" in names and columns.baseline in names and len(names) > 1
        groups: list[tuple[str, int]] = [("", 1)]  # heading over a run of columns
        headings = ["case"]
        for name in names:
            groups.append((columns.labels.get(name, name), 3))
            headings += ["ops/s", "ns/op", "P50/P95/P99 ns"]
        if with_speedup:
            groups.append(("", 1))
            headings.append(f"vs {columns.baseline}")
        groups.append(("", 1))
        headings.append("note")
        body = [_table_row(c, names, with_speedup, columns.labels) for c in cases]
        lines.append(f"{workload}  {columns.title}")
        lines += _aligned(groups, [headings, *body])
        lines.append("")
    lines += [f"skipped: {reason}" for reason in report.skipped]
    return "\n".join(lines).rstrip() + "\n"


def _title_line(report: BenchReport) -> str:
    env = report.environment
    parts = [f"turnout bench ({report.scale})"]
    parts += [env[k] for k in ("turnout", "python", "platform", "cpus") if k in env]
    parts.append(f"{report.duration_s:.1f} s")
    return " | ".join(parts)


_LEGEND = (
    "ns/op, ops/s: the best of k repeats. P50/P95/P99: that repeat's per-op times, each",
    "over a batch of operations (W1-W4: 100 calls; W2: 10; match_many: 1 call of many).",
    "An op is one call from Python (W1-W4 driven by map() in C, GC paused), or one delivery",
    "or item where a case says so; ns/op includes the call. vs X: X's ns/op / turnout's.",
)


def _table_row(
    case: ComparedCase,
    implementations: Sequence[str],
    with_speedup: bool,
    labels: Mapping[str, str],
) -> list[str]:
    cells = [case.case]
    for name in implementations:
        row = case.by_implementation.get(name)
        if row is None:
            cells += ["-", "-", "-"]
            continue
        cells += [format_rate(row.ops_per_s), format_ns(row.ns_per_op), _percentiles(row)]
    if with_speedup:
        speedup = case.speedup()
        cells.append("-" if speedup is None else format_ratio(speedup))
    cells.append(_note(case, implementations, labels))
    return cells


def _percentiles(row: ResultRow) -> str:
    values = (row.p50_ns, row.p95_ns, row.p99_ns)
    if any(v is None for v in values):
        return "-"
    return "/".join(format_ns(v) for v in values if v is not None)


def _note(case: ComparedCase, implementations: Sequence[str], labels: Mapping[str, str]) -> str:
    """Says how turnout compares with the third-party baselines, where the implementations
    ran at different sizes, how a unique-subject flood with the cache on compares with the
    cache off, and the memory per entry."""
    rows = [case.by_implementation[n] for n in implementations if n in case.by_implementation]
    notes: list[str] = []
    for name in implementations:
        if name in ("rust", case.baseline):
            continue
        ratio = case.speedup(baseline=name)
        if ratio is not None:
            notes.append(f"vs {labels.get(name, name)} {format_ratio(ratio)}")
    sizes = {row.implementation: row.extra.get("entries") for row in rows}
    if len({s for s in sizes.values() if s is not None}) > 1:
        notes.append(
            "entries "
            + " vs ".join(f"{name} {s:,.0f}" for name, s in sizes.items() if s is not None)
        )
    on_vs_off = {
        row.implementation: row.extra["cache_on_vs_off"]
        for row in rows
        if "cache_on_vs_off" in row.extra
    }
    if on_vs_off:
        notes.append(
            "vs cache off: " + ", ".join(f"{name} {r:.2f}x" for name, r in on_vs_off.items())
        )
    memory = {
        row.implementation: row.extra["bytes_per_entry"]
        for row in rows
        if "bytes_per_entry" in row.extra
    }
    if memory:
        notes.append(
            "memory/entry "
            + " vs ".join(f"{name} {b:,.0f} B" for name, b in memory.items())
            + _memory_ratio(memory)
        )
    return "; ".join(notes)


def _memory_ratio(memory: Mapping[str, float]) -> str:
    if "rust" in memory and "reference" in memory and memory["rust"] > 0:
        return f" ({format_ratio(memory['reference'] / memory['rust'])} less)"
    return ""


def _aligned(groups: Sequence[tuple[str, int]], table: Sequence[Sequence[str]]) -> list[str]:
    """Lays the table out in columns under group headings, with a rule below the headings
    (``table[0]``): the first and last columns left-aligned, the numbers between right."""
    gap = "  "
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    spans: list[tuple[str, int, int]] = []  # (heading, first column, last column)
    first = 0
    for heading, span in groups:
        last = first + span - 1
        room = sum(widths[first : last + 1]) + len(gap) * (span - 1)
        if len(heading) > room:  # a long heading widens its group's last column
            widths[last] += len(heading) - room
        spans.append((heading, first, last))
        first = last + 1
    group_line = gap.join(
        heading.center(sum(widths[a : b + 1]) + len(gap) * (b - a)) for heading, a, b in spans
    )
    last_column = len(widths) - 1
    lines = [group_line.rstrip()]
    for number, row in enumerate(table):
        cells = [
            cell.ljust(widths[i]) if i in (0, last_column) else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append(gap.join(cells).rstrip())
        if number == 0:
            lines.append("-" * len(lines[-1]))
    return lines


# --- number formats ---------------------------------------------------------------------


def format_rate(per_second: float) -> str:
    """Operations per second with a k/M/G suffix and three significant digits."""
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if per_second >= threshold:
            return _three_digits(per_second / threshold) + suffix
    return _three_digits(per_second)


def format_ns(ns: float) -> str:
    """Nanoseconds: two decimals below 10, one below 100, whole with separators above."""
    if ns < 10:
        return f"{ns:.2f}"
    if ns < 100:
        return f"{ns:.1f}"
    return f"{ns:,.0f}"


def format_ratio(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:,.1f}x"


def _three_digits(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
