"""Server-generated SVG charts: axes with units, tick labels, a legend, no script, no style.

Colours and strokes come from classes styled by ``static/console.css`` (the
Content-Security-Policy forbids inline styles), so a chart reads the same
with or without JavaScript and prints as it shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 72, 16, 16, 56


@dataclass(frozen=True)
class Series:
    """One line (or set of bars) of a chart; ``css`` picks its colour."""

    label: str
    values: Sequence[float | None]
    css: str


def nice_max(value: float) -> float:
    """The smallest 1/2/2.5/5 × 10ⁿ at or above *value* (1 for an empty chart)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value:
            return float(candidate)
    return float(10 ** (exponent + 1))


def _frame(
    title: str,
    x_labels: Sequence[str],
    y_max: float,
    y_unit: str,
    y_format: Callable[[float], str],
    x_title: str,
    body: list[str],
    legend: Sequence[Series],
) -> Markup:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(5):
        value = y_max * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(y_format(value))}</text>"
        )
    n = max(len(x_labels), 1)
    every = max(1, math.ceil(n / 8))
    for i, label in enumerate(x_labels):
        if i % every:
            continue
        x = LEFT + plot_w * (i + 0.5) / n
        parts.append(
            f'<line class="axis" x1="{x:.1f}" y1="{TOP + plot_h}" '
            f'x2="{x:.1f}" y2="{TOP + plot_h + 4}"/>'
        )
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    parts.append(f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}"/>')
    parts.append(
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" '
        f'x2="{LEFT + plot_w}" y2="{TOP + plot_h}"/>'
    )
    parts.append(
        f'<text class="axis-title" x="14" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + plot_h / 2:.1f})">{escape(y_unit)}</text>'
    )
    parts.append(
        f'<text class="axis-title" x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 22}" '
        f'text-anchor="middle">{escape(x_title)}</text>'
    )
    parts.extend(body)
    x = LEFT
    for series in legend:
        parts.append(
            f'<rect class="swatch {series.css}" x="{x}" y="{HEIGHT - 12}" width="12" height="8"/>'
        )
        parts.append(
            f'<text class="legend" x="{x + 16}" y="{HEIGHT - 4}">{escape(series.label)}</text>'
        )
        x += 24 + 8 * len(series.label)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above is escaped


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    *,
    y_unit: str,
    x_title: str,
    y_format: Callable[[float], str] = lambda v: f"{v:g}",
) -> Markup:
    """Lines over evenly spaced bins; a missing value (None) breaks its line."""
    values = [v for s in series for v in s.values if v is not None]
    y_max = nice_max(max(values, default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(x_labels), 1)
    body = []
    for s in series:
        runs: list[list[str]] = [[]]
        for i, value in enumerate(s.values):
            if value is None:
                runs.append([])
                continue
            x = LEFT + plot_w * (i + 0.5) / n
            y = TOP + plot_h - plot_h * value / y_max
            runs[-1].append(f"{x:.1f},{y:.1f}")
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                body.append(f'<circle class="dot {s.css}" cx="{cx}" cy="{cy}" r="2.5"/>')
            elif run:
                body.append(f'<polyline class="line {s.css}" points="{" ".join(run)}"/>')
    return _frame(title, x_labels, y_max, y_unit, y_format, x_title, body, series)


def bar_chart(
    title: str,
    x_labels: Sequence[str],
    series: Series,
    *,
    y_unit: str,
    x_title: str,
    y_format: Callable[[float], str] = lambda v: f"{v:g}",
) -> Markup:
    """One bar per label (negative values are drawn as zero)."""
    y_max = nice_max(max((v or 0.0 for v in series.values), default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(x_labels), 1)
    slot = plot_w / n
    body = []
    for i, value in enumerate(series.values):
        height = plot_h * max(value or 0.0, 0.0) / y_max
        x = LEFT + slot * i + slot * 0.15
        body.append(
            f'<rect class="bar {series.css}" x="{x:.1f}" y="{TOP + plot_h - height:.1f}" '
            f'width="{slot * 0.7:.1f}" height="{height:.1f}">'
            f"<title>{escape(x_labels[i])}: {escape(y_format(value or 0.0))}</title></rect>"
        )
    return _frame(title, x_labels, y_max, y_unit, y_format, x_title, body, [series])
