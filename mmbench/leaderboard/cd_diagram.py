"""A critical-difference diagram (Demšar 2006, JMLR 7, Fig. 1-2) as an inline SVG string.

An axis of average ranks (1 = best, on the left), every method hung from its average rank with its name
and rank, the critical difference drawn as a ruler above the axis, and thick bars joining the methods
whose average ranks differ by less than the critical difference (not significantly different by the
Nemenyi test, mmbench/leaderboard/statistics.py). Sizes, font and escaping follow
mmbench/leaderboard/svg.py so the diagram sits with the board's other charts; like them it carries no
xmlns (meant to be inlined in an HTML5 page).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from mmbench.leaderboard.statistics import nemenyi_groups
from mmbench.leaderboard.svg import FONT, _fmt, _text_width

__all__ = ["cd_diagram"]

_ROW = 20.0  # vertical distance between two method labels
_BAR_GAP = 7.0  # vertical distance between two group bars


def cd_diagram(
    names: Sequence[str],
    average_ranks: Sequence[float],
    cd: float | None,
    *,
    title: str = "Critical difference diagram",
    width: float = 640.0,
    css_class: str = "cd-diagram",
) -> str:
    """The SVG (explicit width and height) of methods placed by average rank. `cd` None (fewer than the
    methods or tables a test needs) draws the ranks without a ruler and without group bars."""
    if len(names) != len(average_ranks):
        raise ValueError(f"{len(names)} names for {len(average_ranks)} average ranks")
    if any(not math.isfinite(r) for r in average_ranks):
        raise ValueError("average ranks must be finite")
    k = len(names)
    order = sorted(range(k), key=lambda i: (average_ranks[i], names[i]))
    n_left = (k + 1) // 2
    left_side, right_side = order[:n_left], order[n_left:][::-1]  # the worst hangs outermost on the right

    def label(i: int) -> str:
        return f"{names[i]} ({average_ranks[i]:.2f})"

    left_w = max((_text_width(label(i)) for i in left_side), default=0.0) + 16
    right_w = max((_text_width(label(i)) for i in right_side), default=0.0) + 16
    width = max(float(width), left_w + right_w + 160)
    axis_left, axis_right = left_w, width - right_w
    lowest = 1
    highest = max(k, math.ceil(max(average_ranks, default=1.0)), 2)

    def x_at(rank: float) -> float:
        return axis_left + (rank - lowest) / (highest - lowest) * (axis_right - axis_left)

    groups = nemenyi_groups(list(average_ranks), cd) if cd is not None else []
    top = 28.0
    ruler_y = top + 16
    axis_y = ruler_y + (30 if cd is not None else 8)
    bars_y = axis_y + 14
    first_row = bars_y + _BAR_GAP * len(groups) + 12
    height = first_row + _ROW * max(len(left_side), len(right_side), 1) + 8

    out = [
        f'<svg class="{escape(css_class)}" width="{_fmt(width)}" height="{_fmt(height)}" '
        f'viewBox="0 0 {_fmt(width)} {_fmt(height)}" role="img" font-family="sans-serif" font-size="{FONT}">',
        f"<title>{escape(title)}</title>",
        f'<text x="4" y="16" font-weight="bold">{escape(title)}</text>',
    ]
    if cd is not None:
        end = x_at(min(lowest + cd, highest))
        out.append(
            f'<g class="cd"><line x1="{_fmt(x_at(lowest))}" y1="{_fmt(ruler_y)}" x2="{_fmt(end)}" y2="{_fmt(ruler_y)}" '
            f'stroke="#1a1a1a" stroke-width="1.5"></line>'
            f'<line x1="{_fmt(x_at(lowest))}" y1="{_fmt(ruler_y - 4)}" x2="{_fmt(x_at(lowest))}" '
            f'y2="{_fmt(ruler_y + 4)}" stroke="#1a1a1a"></line>'
            f'<line x1="{_fmt(end)}" y1="{_fmt(ruler_y - 4)}" x2="{_fmt(end)}" y2="{_fmt(ruler_y + 4)}" '
            f'stroke="#1a1a1a"></line>'
            f'<text x="{_fmt((x_at(lowest) + end) / 2)}" y="{_fmt(ruler_y - 6)}" text-anchor="middle">'
            f"CD = {cd:.2f}</text></g>"
        )
    out.append(
        f'<g class="axis"><line x1="{_fmt(axis_left)}" y1="{_fmt(axis_y)}" x2="{_fmt(axis_right)}" '
        f'y2="{_fmt(axis_y)}" stroke="#555"></line>'
    )
    for tick in range(lowest, highest + 1):
        x = x_at(tick)
        out.append(
            f'<line x1="{_fmt(x)}" y1="{_fmt(axis_y - 5)}" x2="{_fmt(x)}" y2="{_fmt(axis_y)}" stroke="#555"></line>'
            f'<text x="{_fmt(x)}" y="{_fmt(axis_y - 8)}" font-size="11" text-anchor="middle">{tick}</text>'
        )
    out.append("</g>")
    out.append('<g class="methods">')
    for side, members in (("left", left_side), ("right", right_side)):
        for row, i in enumerate(members):
            x, y = x_at(average_ranks[i]), first_row + _ROW * row
            end_x = axis_left - 6 if side == "left" else axis_right + 6
            anchor = "end" if side == "left" else "start"
            out.append(
                f'<g class="method" data-method="{escape(names[i])}" data-rank="{average_ranks[i]:.4f}">'
                f'<polyline points="{_fmt(x)},{_fmt(axis_y)} {_fmt(x)},{_fmt(y)} {_fmt(end_x)},{_fmt(y)}" '
                f'fill="none" stroke="#555"></polyline>'
                f'<text x="{_fmt(end_x + (-4 if side == "left" else 4))}" y="{_fmt(y + 4)}" text-anchor="{anchor}">'
                f"{escape(label(i))}</text></g>"
            )
    out.append("</g>")
    out.append('<g class="groups">')
    for row, group in enumerate(groups):
        ranks = [average_ranks[i] for i in group]
        y = bars_y + _BAR_GAP * row
        members = ", ".join(names[i] for i in group)
        out.append(
            f'<line class="group" x1="{_fmt(x_at(min(ranks)) - 3)}" y1="{_fmt(y)}" x2="{_fmt(x_at(max(ranks)) + 3)}" '
            f'y2="{_fmt(y)}" stroke="#1a1a1a" stroke-width="4" stroke-linecap="round">'
            f"<title>not significantly different: {escape(members)}</title></line>"
        )
    out.append("</g></svg>")
    return "".join(out)
