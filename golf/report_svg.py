"""Inline SVG charts for the report: line charts (training curves) and a stacked byte bar.

Plain strings, no script and no external resource, so the page renders offline in any browser
and its numbers can be read back from the markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

# Colour-blind-safe categorical colours (Okabe-Ito), one per run or byte group.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")

Series = tuple[str, Sequence[tuple[float, float]]]  # (name, [(x, y), ...])


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step) + 1)]


def line_chart(series: Sequence[Series], *, title: str, x_label: str, y_label: str,
               width: int = 460, height: int = 260, points: bool = False) -> str:
    """An SVG line chart of several series with axes, ticks and a legend."""
    pairs = [(x, y) for _, data in series for x, y in data if math.isfinite(y)]
    if not pairs:
        return f'<p class="empty">{escape(title)}: no data</p>'
    left, right, top, bottom = 52, 12, 26, 38
    x_lo, x_hi = min(p[0] for p in pairs), max(p[0] for p in pairs)
    y_lo, y_hi = min(p[1] for p in pairs), max(p[1] for p in pairs)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    pad = (y_hi - y_lo) * 0.05 or 0.5
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def sx(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * (width - left - right)

    def sy(y: float) -> float:
        return top + (y_hi - y) / (y_hi - y_lo) * (height - top - bottom)

    out = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{escape(title)}">', f'<text x="{left}" y="16" class="title">{escape(title)}</text>']
    for t in nice_ticks(y_lo, y_hi):
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" class="tick" text-anchor="end">{t:g}</text>')
    for t in nice_ticks(x_lo, x_hi):
        out.append(f'<text x="{sx(t):.1f}" y="{height - bottom + 16}" class="tick" text-anchor="middle">{t:g}</text>')
    out.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 6}" class="axis" text-anchor="middle">'
               f'{escape(x_label)}</text>')
    out.append(f'<text transform="translate(14 {(top + height - bottom) / 2:.0f}) rotate(-90)" class="axis" '
               f'text-anchor="middle">{escape(y_label)}</text>')
    for i, (name, data) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in data if math.isfinite(y))
        if coords:
            out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        if points or len(data) == 1:
            out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>' for x, y in data
                    if math.isfinite(y)]
        out.append(f'<text x="{width - right - 4}" y="{top + 14 * i + 8}" class="legend" text-anchor="end" '
                   f'fill="{colour}">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def stacked_bar(parts: Sequence[tuple[str, int]], *, total: int, width: int = 640, height: int = 22) -> str:
    """One horizontal bar, `parts` (name, bytes) left to right, scaled so `total` spans the width."""
    out = [f'<svg class="bar" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    x = 0.0
    for i, (name, value) in enumerate(parts):
        w = value / total * width if total else 0
        out.append(f'<rect x="{x:.2f}" y="0" width="{w:.2f}" height="{height}" fill="{PALETTE[i % len(PALETTE)]}">'
                   f'<title>{escape(name)}: {value:,} bytes</title></rect>')
        x += w
    out.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="none" stroke="#888"/></svg>')
    return "".join(out)
