"""The validation-curve chart of the HTML leaderboard: validation mIoU against training step, one colour
per method, a thin line per seed, a thick line for the mean over seeds and a ring at each seed's selected
checkpoint.

Why on the board: a row whose checkpoints were all selected at the last step, with its curve still
climbing, was ranked before it finished learning; a curve that flattens or turns down shows the budget
was enough. Plain SVG strings like the other charts (mmbench/leaderboard/svg.py), no plotting library.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from mmbench.leaderboard.svg import DASHES, PALETTE, _fmt, _text_width, axes, number, opening


def _points(curve: Mapping[str, Any]) -> list[tuple[float, float]]:
    found = []
    for point in curve.get("points") or []:
        if isinstance(point, Sequence) and len(point) == 2:
            step, score = number(point[0]), number(point[1])
            if step is not None and score is not None:
                found.append((step, 100 * score))
    return sorted(found)


def mean_curve(curves: Sequence[Sequence[tuple[float, float]]]) -> list[tuple[float, float]]:
    """The mean over seeds at each step every seed validated at (steps some seeds lack are left out, so
    the mean never mixes a different set of seeds from one point to the next)."""
    if not curves:
        return []
    common = set.intersection(*(set(step for step, _ in curve) for curve in curves))
    by_step = [dict(curve) for curve in curves]
    return [(step, sum(curve[step] for curve in by_step) / len(by_step)) for step in sorted(common)]


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = max(high - low, 1e-9)
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def validation_curves_chart(
    series: Sequence[tuple[str, Sequence[Mapping[str, Any]]]],
    *,
    title: str,
    data: dict[str, str] | None = None,
) -> str:
    """`series`: (label, curves) per method, each curve {seed, selected_step, points: [[step, score]]} with
    scores as fractions (a board row's `validation_curves`). Returns "" when no series has a point."""
    drawn = [(label, [p for c in curves if (p := _points(c))], curves) for label, curves in series]
    drawn = [(label, lines, curves) for label, lines, curves in drawn if lines]
    if not drawn:
        return ""
    steps = [step for _, lines, _ in drawn for line in lines for step, _ in line]
    scores = [score for _, lines, _ in drawn for line in lines for _, score in line]
    x_max = max(steps)
    y_low = max(0.0, math.floor(min(scores) / 10) * 10)
    y_high = min(100.0, math.ceil(max(scores) / 10) * 10)
    if y_high <= y_low:
        y_high = y_low + 10
    plot_w, plot_h, top, left, bottom = 520.0, 280.0, 34.0, 58.0, 44.0
    legend_w = 48.0 + max(_text_width(label) for label, _, _ in drawn)
    width = left + plot_w + 24 + legend_w
    height = max(top + plot_h + bottom, top + 18.0 * (len(drawn) + 2) + 16)

    def x_at(step: float) -> float:
        return left + plot_w * step / x_max

    def y_at(score: float) -> float:
        return top + plot_h * (1 - (min(max(score, y_low), y_high) - y_low) / (y_high - y_low))

    out = opening("validation-curves", data, width, height, title, title_x=left, title_y=18)
    for tick in _ticks(y_low, y_high):
        y = y_at(tick)
        out.append(
            f'<line x1="{_fmt(left)}" y1="{_fmt(y)}" x2="{_fmt(left + plot_w)}" y2="{_fmt(y)}" stroke="#e3e3e3"></line>'
            f'<text x="{_fmt(left - 6)}" y="{_fmt(y + 4)}" text-anchor="end">{tick:g}</text>'
        )
    for tick in _ticks(0.0, x_max):
        x = x_at(tick)
        out.append(
            f'<text x="{_fmt(x)}" y="{_fmt(top + plot_h + 16)}" font-size="11" text-anchor="middle">{tick:g}</text>'
        )
    out.append(axes(left, top, plot_w, plot_h, height, x_label="training step", y_label="validation mIoU (%)"))
    for index, (label, lines, curves) in enumerate(drawn):
        stroke = PALETTE[index % len(PALETTE)]
        dash = DASHES[(index // len(PALETTE)) % len(DASHES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<g class="series" data-series="{escape(label)}">')
        for line in lines:
            path = " ".join(f"{_fmt(x_at(step))},{_fmt(y_at(score))}" for step, score in line)
            out.append(
                f'<polyline class="seed" points="{path}" fill="none" stroke="{stroke}" stroke-opacity="0.35" '
                f'stroke-width="1"{dash_attr}></polyline>'
            )
        mean = mean_curve(lines)
        if mean:
            path = " ".join(f"{_fmt(x_at(step))},{_fmt(y_at(score))}" for step, score in mean)
            out.append(
                f'<polyline class="mean" points="{path}" fill="none" stroke="{stroke}" stroke-width="2.2"{dash_attr}>'
                f"<title>{escape(label)}: mean over {len(lines)} seed{'s' if len(lines) != 1 else ''}</title>"
                "</polyline>"
            )
        for curve in curves:
            line = dict(_points(curve))
            selected = number(curve.get("selected_step"))
            if selected is None or selected not in line:
                continue
            tooltip = f"{label}, seed {curve.get('seed')}: selected at step {selected:g} ({line[selected]:.1f})"
            out.append(
                f'<circle class="selected" cx="{_fmt(x_at(selected))}" cy="{_fmt(y_at(line[selected]))}" r="4" '
                f'fill="#ffffff" stroke="{stroke}" stroke-width="1.5"><title>{escape(tooltip)}</title></circle>'
            )
        out.append("</g>")
    legend_x = left + plot_w + 24
    out.append('<g class="legend">')
    for index, (label, lines, _) in enumerate(drawn):
        stroke = PALETTE[index % len(PALETTE)]
        dash = DASHES[(index // len(PALETTE)) % len(DASHES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        y = top + 6 + 18 * index
        out.append(
            f'<line x1="{_fmt(legend_x)}" y1="{_fmt(y)}" x2="{_fmt(legend_x + 22)}" y2="{_fmt(y)}" stroke="{stroke}" '
            f'stroke-width="2.2"{dash_attr}></line>'
            f'<text x="{_fmt(legend_x + 28)}" y="{_fmt(y + 4)}">{escape(label)} ({len(lines)})</text>'
        )
    y = top + 6 + 18 * len(drawn) + 6
    out.append(
        f'<circle cx="{_fmt(legend_x + 11)}" cy="{_fmt(y)}" r="4" fill="#ffffff" stroke="#555" stroke-width="1.5">'
        f'</circle><text x="{_fmt(legend_x + 28)}" y="{_fmt(y + 4)}" font-size="11">selected checkpoint</text>'
    )
    out.append("</g></svg>")
    return "".join(out)
