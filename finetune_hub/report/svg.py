"""Small inline SVG charts (line and scatter) for the HTML report: no script, no network, any browser."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

# Okabe–Ito: distinguishable with the common colour-vision deficiencies
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[float, float]]
    color: str
    dashed: bool = False


@dataclass(frozen=True)
class Dot:
    label: str
    x: float
    y: float
    color: str


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 × 10^k apart) covering [low, high]."""
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12))
    return ticks


def _label(value: float) -> str:
    return f"{value:.4g}"


class _Frame:
    """Maps data coordinates into the plot area and draws the axes, grid and titles."""

    def __init__(self, xs: list[float], ys: list[float], width: int, height: int) -> None:
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = 64, 16, 36, 48
        self.xticks = nice_ticks(min(xs), max(xs))
        self.yticks = nice_ticks(min(ys), max(ys))

    def x(self, value: float) -> float:
        lo, hi = self.xticks[0], self.xticks[-1]
        return self.left + (value - lo) / ((hi - lo) or 1) * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        lo, hi = self.yticks[0], self.yticks[-1]
        return self.height - self.bottom - (value - lo) / ((hi - lo) or 1) * (self.height - self.top - self.bottom)

    def axes(self, title: str, x_label: str, y_label: str) -> list[str]:
        parts = [f'<text x="{self.width / 2:.1f}" y="20" text-anchor="middle" class="title">{escape(title)}</text>']
        x0, x1 = self.left, self.width - self.right
        y0, y1 = self.height - self.bottom, self.top
        for tick in self.yticks:
            y = self.y(tick)
            parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" class="grid"/>')
            parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{_label(tick)}</text>')
        for tick in self.xticks:
            x = self.x(tick)
            parts.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + 4}" class="axis"/>')
            parts.append(f'<text x="{x:.1f}" y="{y0 + 18}" text-anchor="middle">{_label(tick)}</text>')
        parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" class="axis"/>')
        parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" class="axis"/>')
        centre, mid = (x0 + x1) / 2, (y0 + y1) / 2
        parts.append(f'<text x="{centre:.1f}" y="{self.height - 8}" text-anchor="middle">{escape(x_label)}</text>')
        rotate = f"rotate(-90 14 {mid:.1f})"
        parts.append(f'<text x="14" y="{mid:.1f}" text-anchor="middle" transform="{rotate}">{escape(y_label)}</text>')
        return parts


def _svg(parts: list[str], width: int, height: int, title: str) -> str:
    style = (
        "<style>text{font:11px sans-serif;fill:#333}.title{font-size:13px;font-weight:bold}"
        ".grid{stroke:#e5e5e5}.axis{stroke:#555}</style>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>{style}{"".join(parts)}</svg>'
    )


def _legend(entries: list[tuple[str, str, bool]], frame: _Frame) -> list[str]:
    parts = []
    for i, (label, stroke, dashed) in enumerate(entries):
        y = frame.top + 6 + i * 15
        x = frame.width - frame.right - 190
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        parts.append(f'<line x1="{x}" y1="{y}" x2="{x + 18}" y2="{y}" stroke="{stroke}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{x + 24}" y="{y + 4}">{escape(label[:32])}</text>')
    return parts


def line_chart(
    series: Sequence[Series], *, title: str, x_label: str, y_label: str, width: int = 720, height: int = 340
) -> str:
    """Lines through each series' points (a dot where a series has one point)."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return ""
    frame = _Frame([p[0] for s in drawn for p in s.points], [p[1] for s in drawn for p in s.points], width, height)
    parts = frame.axes(title, x_label, y_label)
    for s in drawn:
        coords = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in s.points)
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{s.color}" stroke-width="2"{dash}/>')
        if len(s.points) == 1:
            x, y = s.points[0]
            parts.append(f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="3" fill="{s.color}"/>')
    parts += _legend([(s.label, s.color, s.dashed) for s in drawn], frame)
    return _svg(parts, width, height, title)


def scatter_chart(
    dots: Sequence[Dot], *, title: str, x_label: str, y_label: str, width: int = 720, height: int = 340
) -> str:
    """Labelled points, e.g. cost (x) against quality (y)."""
    if not dots:
        return ""
    frame = _Frame([0.0, *(d.x for d in dots)], [0.0, 1.0, *(d.y for d in dots)], width, height)
    parts = frame.axes(title, x_label, y_label)
    for d in dots:
        x, y = frame.x(d.x), frame.y(d.y)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{d.color}" fill-opacity="0.85">')
        parts.append(f"<title>{escape(d.label)}: x={d.x:.4g}, y={d.y:.4g}</title></circle>")
        right_half = x > frame.width * 0.6  # label on the side with room, so it is never clipped
        anchor, dx = ("end", -9) if right_half else ("start", 9)
        label = escape(d.label[:40])
        parts.append(f'<text x="{x + dx:.1f}" y="{y - 7:.1f}" text-anchor="{anchor}">{label}</text>')
    return _svg(parts, width, height, title)
