"""An SVG bar chart of the speedups (baseline ns/op over turnout's), one bar per case.

Plain SVG text, no dependency. The axis is logarithmic: speedups span from about 1x to
well over 100x, and on a linear axis the small ones would vanish. A case where the Rust
core is slower would draw leftwards from the 1x line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from turnout._bench.report import BenchReport, ComparedCase, compare, format_ratio

_FONT_SIZE = 12
_CHAR_WIDTH = 7.3  # advance of a 12px monospace glyph, for sizing the label column
_ROW_HEIGHT = 20
_BAR_HEIGHT = 13
_BAR_AREA = 460
_VALUE_ROOM = 70  # right of the longest bar, for its "123.4x" label
_TOP = 58
_BOTTOM = 34
_PAD = 12
_UNEQUAL_MARK = " *"
_UNEQUAL_NOTE = "the implementations ran at different index sizes (see the table)"
_PALETTE = ("#3b6fb6", "#d9822b", "#3a9a5b", "#b8445a", "#7a5ab8", "#5a8a99")


@dataclass(frozen=True)
class _Bar:
    label: str
    workload: str
    speedup: float


def render_speedup_svg(report: BenchReport) -> str:
    """The chart as an SVG document (a string)."""
    bars = [
        _Bar(
            f"{case.workload} {case.case}{_UNEQUAL_MARK if _unequal_sizes(case) else ''}",
            case.workload,
            speedup,
        )
        for case in compare(report.rows, report.baselines())
        if (speedup := case.speedup()) is not None and speedup > 0
    ]
    title = f"turnout bench ({report.scale}): turnout's speedup over each workload's baseline"
    label_width = _PAD + _CHAR_WIDTH * max([len(b.label) for b in bars] + [24])
    width = math.ceil(label_width + _PAD + _BAR_AREA + _VALUE_ROOM)
    footnote = any(b.label.endswith(_UNEQUAL_MARK) for b in bars)
    height = _TOP + _ROW_HEIGHT * max(len(bars), 1) + _BOTTOM + (_ROW_HEIGHT if footnote else 0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="{_FONT_SIZE}">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        _text(_PAD, 22, title, weight="bold"),
        _text(_PAD, 40, "log scale; bars start at 1x (equal speed)", fill="#555"),
    ]
    if not bars:
        parts.append(_text(_PAD, _TOP + 14, "no case was measured on both implementations"))
    else:
        parts += _plot(bars, x0=label_width + _PAD)
    if footnote:
        parts.append(
            _text(_PAD, height - 10, f"{_UNEQUAL_MARK.strip()} {_UNEQUAL_NOTE}", fill="#555")
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _plot(bars: list[_Bar], *, x0: float) -> list[str]:
    logs = [math.log10(b.speedup) for b in bars]
    low = min(0.0, min(logs))
    high = max(1.0, max(logs))  # at least up to 10x, so small speedups are not stretched

    def x(log_value: float) -> float:
        return x0 + (log_value - low) / (high - low) * _BAR_AREA

    workloads = list(dict.fromkeys(b.workload for b in bars))
    colours = {w: _PALETTE[i % len(_PALETTE)] for i, w in enumerate(workloads)}
    axis_bottom = _TOP + _ROW_HEIGHT * len(bars)
    parts: list[str] = []
    for tick in _ticks(low, high):
        tx = x(math.log10(tick))
        parts.append(
            f'<line x1="{tx:.1f}" y1="{_TOP - 4}" x2="{tx:.1f}" y2="{axis_bottom}" '
            f'stroke="{"#444" if tick == 1 else "#ddd"}" stroke-width="1"/>'
        )
        parts.append(_text(tx, axis_bottom + 16, _tick_label(tick), anchor="middle", fill="#555"))
    for row, (bar, log_value) in enumerate(zip(bars, logs, strict=True)):
        top = _TOP + row * _ROW_HEIGHT
        start, end = sorted((x(0.0), x(log_value)))
        baseline = top + _BAR_HEIGHT - 2
        parts.append(_text(_PAD, baseline, bar.label))
        parts.append(
            f'<rect x="{start:.1f}" y="{top}" width="{max(end - start, 1):.1f}" '
            f'height="{_BAR_HEIGHT}" fill="{colours[bar.workload]}">'
            f"<title>{escape(bar.label)}: {format_ratio(bar.speedup)}</title></rect>"
        )
        parts.append(_text(end + 4, baseline, format_ratio(bar.speedup)))
    return parts


def _unequal_sizes(case: ComparedCase) -> bool:
    sizes = {row.extra.get("entries") for row in case.by_implementation.values()}
    return len(sizes) > 1


def _ticks(low: float, high: float) -> list[float]:
    """1, 2, 5 x powers of ten inside [10**low, 10**high]."""
    ticks: list[float] = []
    for exponent in range(math.floor(low), math.ceil(high) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10.0**exponent
            if low - 1e-9 <= math.log10(value) <= high + 1e-9:
                ticks.append(value)
    return ticks


def _tick_label(value: float) -> str:
    return f"{value:g}x"


def _text(
    x: float,
    y: float,
    content: str,
    *,
    anchor: str = "start",
    weight: str = "normal",
    fill: str = "#111",
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor={quoteattr(anchor)} '
        f"font-weight={quoteattr(weight)} fill={quoteattr(fill)}>{escape(content)}</text>"
    )
