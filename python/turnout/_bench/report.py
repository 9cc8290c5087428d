"""Benchmark results: one row per (workload, case, implementation), their JSON form, and the
text table that puts turnout beside each workload's other implementations."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from turnout._bench.timing import Measurement

JSON_FORMAT = "turnout-bench/3"
"""The ``format`` tag of ``--json`` documents; a new one whenever their shape changes
(``/3``: each workload's ``slower`` reasons)."""

CACHE_ON_VS_OFF = "cache_on_vs_off"
"""Extra figure of a unique-subjects case with the cache on: its ns/op over the same case's
with the cache off (the goal: within 1.10, so a flood of unique subjects does not make
the cache a cost). The table shows it the other way up, as it does every ratio."""


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
    slower: dict[str, str] = field(default_factory=dict)
    """Case -> why turnout is slower there than an implementation it is measured beside
    (printed under the row when it is)."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkloadColumns:
        return cls(
            title=str(data["title"]),
            implementations=tuple(str(i) for i in data["implementations"]),
            labels={str(k): str(v) for k, v in dict(data["labels"]).items()},
            baseline=str(data["baseline"]),
            slower={str(k): str(v) for k, v in dict(data["slower"]).items()},
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

WIDTH = 100
"""The table fits a terminal this wide: columns shed detail until it does."""

TURNOUT = "rust"
"""The implementation name turnout's own rows carry."""


def render_table(report: BenchReport) -> str:
    """The results as text, one table per workload: turnout's rate, time per operation and
    percentiles, then one column per other implementation giving how many times faster
    turnout is (its time per operation in brackets), with notes under the rows that need
    them; the skipped implementations once at the end, with what installs them."""
    compared = compare(report.rows, report.baselines())
    lines = [_title_line(report), *_LEGEND, ""]
    for workload, columns in report.columns.items():
        cases = [c for c in compared if c.workload == workload]
        if cases:
            lines += [f"{workload}  {columns.title}", *_workload_table(columns, cases), ""]
    if report.skipped:
        lines.append("skipped (not installed here):")
        lines += [f"  {reason}" for reason in report.skipped]
    return "\n".join(lines).rstrip() + "\n"


def _title_line(report: BenchReport) -> str:
    env = report.environment
    parts = [f"turnout bench ({report.scale})"]
    parts += [env[k] for k in ("turnout", "python", "platform", "cpus") if k in env]
    parts.append(f"{report.duration_s:.1f} s")
    return " | ".join(parts)


_LEGEND = (
    "time/op and ops/s: the best of k repeats; an op is one call from Python, or one delivery",
    "or item where a case says so. P50/P95/P99: that repeat's per-op times, each over a batch",
    "(W1-W4: 100 calls, W2: 10). vs X: X's time/op over turnout's, so >1 = turnout faster;",
    "X's own time/op in brackets.",
)


def _workload_table(columns: WorkloadColumns, cases: Sequence[ComparedCase]) -> list[str]:
    names = [n for n in columns.implementations if any(n in c.by_implementation for c in cases)]
    ours = TURNOUT if TURNOUT in names else None
    others = sorted((n for n in names if n != ours), key=lambda n: n != columns.baseline)
    label = {n: columns.labels.get(n, n) for n in names}
    has_percentiles = ours is not None and any(
        _percentiles(c.by_implementation[ours]) != "-" for c in cases if ours in c.by_implementation
    )
    # When space is short, the others' own times go first, then the percentiles column
    # (its figures then go in a note under each row).
    for detailed, with_percentiles in ((True, True), (False, True), (False, False)):
        with_percentiles = with_percentiles and has_percentiles
        headings = ["case"]
        if ours is not None:
            headings += ["ops/s", "time/op"] + (["P50/P95/P99"] if with_percentiles else [])
        headings += [f"vs {label[n]}" if ours else f"{label[n]} time/op" for n in others]
        body = [_cells(c, ours, others, with_percentiles, detailed) for c in cases]
        table = _aligned([headings, *body])
        if max(len(line) for line in table) <= WIDTH:
            break
    # Still too wide: the long case names go on a line of their own above their figures.
    own_line: set[int] = set()
    while max(len(line) for line in table) > WIDTH and len(own_line) < len(body):
        longest = max(
            (i for i in range(len(body)) if i not in own_line), key=lambda i: len(body[i][0])
        )
        own_line.add(longest)
        body[longest][0] = ""
        table = _aligned([headings, *body])
    out = table[:2]
    for number, (case, line) in enumerate(zip(cases, table[2:], strict=True)):
        if number in own_line:
            out.append(case.case)
        out.append(line)
        notes = _notes(case, ours, others, label, columns)
        row = case.by_implementation.get(ours) if ours is not None else None
        figures = _percentiles(row) if row is not None else "-"
        if has_percentiles and not with_percentiles and figures != "-":
            notes.insert(0, f"P50/P95/P99: {figures}")
        out += [_wrapped(note) for note in notes]
    return out


def _cells(
    case: ComparedCase,
    ours: str | None,
    others: Sequence[str],
    with_percentiles: bool,
    detailed: bool,
) -> list[str]:
    cells = [case.case]
    row = case.by_implementation.get(ours) if ours is not None else None
    if ours is not None:
        if row is None:
            cells += ["-", "-"] + (["-"] if with_percentiles else [])
        else:
            cells += [format_rate(row.ops_per_s), format_time(row.ns_per_op)]
            cells += [_percentiles(row)] if with_percentiles else []
    for name in others:
        other = case.by_implementation.get(name)
        if other is None:
            cells.append("-")
        elif ours is None:
            cells.append(format_time(other.ns_per_op))
        else:
            ratio = case.speedup(ours, name)
            shown = "-" if ratio is None else format_ratio(ratio)
            cells.append(f"{shown} ({format_time(other.ns_per_op)})" if detailed else shown)
    return cells


def _percentiles(row: ResultRow) -> str:
    """P50/P95/P99 in the unit that suits the largest, written once."""
    values = [v for v in (row.p50_ns, row.p95_ns, row.p99_ns) if v is not None]
    if len(values) < 3:
        return "-"
    scale, unit = _unit(max(values))
    return "/".join(_three_digits(v / scale) for v in values) + f" {unit}"


def _notes(
    case: ComparedCase,
    ours: str | None,
    others: Sequence[str],
    label: Mapping[str, str],
    columns: WorkloadColumns,
) -> list[str]:
    """What a row needs said: why turnout is slower than an implementation (the workload's
    known reason), implementations that ran at different sizes, what the match cache does
    to a flood of unique subjects, the memory per entry."""
    notes: list[str] = []
    slower = [
        label[n]
        for n in others
        if ours is not None and (r := case.speedup(ours, n)) is not None and r < 1
    ]
    if slower:
        reason = columns.slower.get(case.case, "no reason recorded for this case")
        notes.append(f"slower than {', '.join(slower)}: {reason}")
    rows = [
        case.by_implementation[n] for n in columns.implementations if n in case.by_implementation
    ]
    name = {
        n: "turnout" if n == TURNOUT else columns.labels.get(n, n) for n in columns.implementations
    }
    sizes = {row.implementation: row.extra.get("entries") for row in rows}
    if len({s for s in sizes.values() if s is not None}) > 1:
        notes.append(
            "different sizes: "
            + ", ".join(f"{name[n]} {s:,.0f} entries" for n, s in sizes.items() if s is not None)
        )
    # Stored as cache-on time over cache-off time; shown the other way up, as every ratio.
    cache = {
        row.implementation: 1 / row.extra[CACHE_ON_VS_OFF]
        for row in rows
        if row.extra.get(CACHE_ON_VS_OFF)
    }
    if cache:
        notes.append(
            "cache on vs cache off (>1 = faster with the cache): "
            + ", ".join(f"{name[n]} {format_ratio(r)}" for n, r in cache.items())
        )
    memory = {
        row.implementation: row.extra["bytes_per_entry"]
        for row in rows
        if "bytes_per_entry" in row.extra
    }
    if memory:
        text = ", ".join(f"{name[n]} {b:,.0f} B" for n, b in memory.items())
        if memory.get(TURNOUT, 0) > 0 and len(memory) > 1:
            least = max(b for n, b in memory.items() if n != TURNOUT)
            text += f" (turnout {format_ratio(least / memory[TURNOUT])} less)"
        notes.append("memory per entry: " + text)
    return notes


def _wrapped(note: str) -> str:
    return "\n".join(
        textwrap.wrap(note, WIDTH, initial_indent="    > ", subsequent_indent="      ")
    )


def _aligned(table: Sequence[Sequence[str]]) -> list[str]:
    """Lays the table out in columns with a rule below the headings (``table[0]``): the
    first column left-aligned, the others right."""
    gap = "  "
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for row in table:
        cells = [c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)]
        lines.append(gap.join(cells).rstrip())
    lines.insert(1, "-" * max(len(line) for line in lines))
    return lines


# --- number formats ---------------------------------------------------------------------


def format_rate(per_second: float) -> str:
    """Operations per second with a k/M/G suffix and three significant digits."""
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if per_second >= threshold:
            return _three_digits(per_second / threshold) + suffix
    return _three_digits(per_second)


def format_time(ns: float) -> str:
    """A duration given in nanoseconds, in the unit that keeps it short: ``84.6 ns``,
    ``2.97 µs``, ``3.28 ms``, ``1.20 s``."""
    scale, unit = _unit(ns)
    return f"{_three_digits(ns / scale)} {unit}"


def _unit(ns: float) -> tuple[float, str]:
    for scale, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if ns >= scale * 0.9995:  # rounds to 1.00 of this unit, not 1,000 of the one below
            return scale, unit
    return 1.0, "ns"


def format_ratio(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:,.1f}x"


def _three_digits(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
