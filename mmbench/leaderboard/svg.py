"""Small inline-SVG charts for the HTML leaderboard: a dot plot with whiskers (mIoU per scenario with its
uncertainty) and a heatmap (per-class F1). Plain strings, no
plotting library; every label is escaped, every size is estimated from the text so long method or class
names do not overlap. The `<svg>` elements carry no xmlns: they are meant to be inlined in an HTML5 page,
whose parser puts them in the SVG namespace.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

# Tableau 10: distinguishable, colour-blind-aware; beyond ten series the dash pattern and marker change.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
DASHES = ("", "6 3", "2 2")
MISSING_FILL = "#d0d0d0"
# Viridis, sampled: dark (low) to yellow (high); readable in greyscale and for colour-blind readers.
SCALE = ((0.0, (68, 1, 84)), (0.25, (59, 82, 139)), (0.5, (33, 145, 140)), (0.75, (94, 201, 98)), (1.0, (253, 231, 37)))
CHAR_WIDTH = 0.6  # average glyph width in em for a sans-serif font: enough to reserve room for a label
FONT = 12


def _text_width(text: str, size: float = FONT) -> float:
    return len(text) * size * CHAR_WIDTH


def _fmt(value: float) -> str:
    """A coordinate, short: one decimal, no trailing zero."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def number(value: object) -> float | None:
    """`value` as a finite float, or None (missing, NaN, a bool or anything that is not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def colour(fraction: float | None) -> str:
    """The heatmap colour of a value in [0, 1] (clipped); grey for a missing value."""
    if fraction is None:
        return MISSING_FILL
    fraction = min(1.0, max(0.0, fraction))
    for (low, start), (high, end) in zip(SCALE, SCALE[1:], strict=False):
        if fraction <= high:
            t = (fraction - low) / (high - low)
            r, g, b = (round(a + (c - a) * t) for a, c in zip(start, end, strict=True))
            return f"#{r:02x}{g:02x}{b:02x}"
    return "#{:02x}{:02x}{:02x}".format(*SCALE[-1][1])


def text_colour(fraction: float | None) -> str:
    """Black or white, whichever reads on `colour(fraction)`."""
    return "#ffffff" if fraction is not None and fraction < 0.55 else "#1a1a1a"


def opening(
    css_class: str,
    data: dict[str, str] | None,
    width: float,
    height: float,
    title: str,
    *,
    title_x: float,
    title_y: float,
) -> list[str]:
    """The chart's `<svg>` start tag (its class, `data-*` attributes and size), its title for screen readers
    and the visible bold title: the first parts of every chart here."""
    attrs = "".join(f' data-{escape(k)}="{escape(v)}"' for k, v in (data or {}).items())
    return [
        f'<svg class="{escape(css_class)}"{attrs} width="{_fmt(width)}" height="{_fmt(height)}" '
        f'viewBox="0 0 {_fmt(width)} {_fmt(height)}" role="img" font-family="sans-serif" font-size="{FONT}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{_fmt(title_x)}" y="{_fmt(title_y)}" font-weight="bold">{escape(title)}</text>',
    ]


def axes(left: float, top: float, plot_w: float, plot_h: float, height: float, *, x_label: str, y_label: str) -> str:
    """The plot area's left and bottom axis lines, the rotated y label and the x label under the plot."""
    mid_y = top + plot_h / 2
    return (
        f'<line x1="{_fmt(left)}" y1="{_fmt(top)}" x2="{_fmt(left)}" y2="{_fmt(top + plot_h)}" stroke="#555"></line>'
        f'<line x1="{_fmt(left)}" y1="{_fmt(top + plot_h)}" x2="{_fmt(left + plot_w)}" y2="{_fmt(top + plot_h)}" '
        'stroke="#555"></line>'
        f'<text x="16" y="{_fmt(mid_y)}" text-anchor="middle" transform="rotate(-90 16 {_fmt(mid_y)})">'
        f"{escape(y_label)}</text>"
        f'<text x="{_fmt(left + plot_w / 2)}" y="{_fmt(height - 8)}" text-anchor="middle">{escape(x_label)}</text>'
    )


def _marker(shape: int, x: float, y: float, fill: str, tooltip: str) -> str:
    title = f"<title>{escape(tooltip)}</title>"
    if shape == 0:
        return f'<circle cx="{_fmt(x)}" cy="{_fmt(y)}" r="3.5" fill="{fill}">{title}</circle>'
    if shape == 1:
        return f'<rect x="{_fmt(x - 3.5)}" y="{_fmt(y - 3.5)}" width="7" height="7" fill="{fill}">{title}</rect>'
    points = f"{_fmt(x)},{_fmt(y - 4.5)} {_fmt(x + 4.5)},{_fmt(y)} {_fmt(x)},{_fmt(y + 4.5)} {_fmt(x - 4.5)},{_fmt(y)}"
    return f'<polygon points="{points}" fill="{fill}">{title}</polygon>'


def heatmap(
    rows: Sequence[str],
    columns: Sequence[str],
    values: Sequence[Sequence[float | None]],
    *,
    title: str,
    css_class: str = "heatmap",
    data: dict[str, str] | None = None,
) -> str:
    """A rows x columns grid coloured by value (fractions in [0, 1]) with the value in percent printed
    in each cell; a missing value is a grey cell with a dash. A colour-scale key sits below the grid."""
    cell_w, cell_h = 52.0, 24.0
    left = float(round(12.0 + max((_text_width(row) for row in rows), default=20.0)))
    longest = max((_text_width(column, 11) for column in columns), default=0.0)
    top = float(round(30.0 + longest * 0.6 + 8))
    grid_w, grid_h = cell_w * len(columns), cell_h * len(rows)
    width = max(left + grid_w + 16 + longest * 0.8, left + 220.0)
    height = top + grid_h + 52
    out = opening(css_class, data, width, height, title, title_x=4, title_y=16)
    for index, column in enumerate(columns):
        x = left + cell_w * (index + 0.5)
        out.append(
            f'<text x="{_fmt(x)}" y="{_fmt(top - 6)}" font-size="11" '
            f'transform="rotate(-35 {_fmt(x)} {_fmt(top - 6)})">{escape(column)}</text>'
        )
    out.append('<g class="cells" text-anchor="middle" font-size="11" fill="#1a1a1a">')
    for r, row in enumerate(rows):
        y = top + cell_h * r
        row_values = list(values[r]) if r < len(values) else []
        out.append(f'<g class="row"><title>{escape(row)}</title>')
        for c in range(len(columns)):
            value = number(row_values[c]) if c < len(row_values) else None
            x = left + cell_w * c
            shown = "–" if value is None else f"{100 * value:.1f}"
            fill = text_colour(value)
            fill_attr = f' fill="{fill}"' if fill != "#1a1a1a" else ""
            out.append(
                f'<rect x="{_fmt(x)}" y="{_fmt(y)}" width="{_fmt(cell_w - 1)}" height="{_fmt(cell_h - 1)}" '
                f'fill="{colour(value)}"></rect><text x="{_fmt(x + cell_w / 2)}" y="{_fmt(y + cell_h / 2 + 4)}"'
                f"{fill_attr}>{shown}</text>"
            )
        out.append("</g>")
    out.append("</g>")
    for r, row in enumerate(rows):
        y = top + cell_h * r
        out.append(f'<text x="{_fmt(left - 6)}" y="{_fmt(y + cell_h / 2 + 4)}" text-anchor="end">{escape(row)}</text>')
    # colour key: ten steps from 0 to 100, then the missing-value swatch
    key_y = top + grid_h + 14
    out.append('<g class="scale">')
    for step in range(10):
        fraction = (step + 0.5) / 10
        out.append(
            f'<rect x="{_fmt(left + 14 * step)}" y="{_fmt(key_y)}" width="14" height="10" '
            f'fill="{colour(fraction)}"></rect>'
        )
    out.append(f'<text x="{_fmt(left)}" y="{_fmt(key_y + 24)}" font-size="10">0</text>')
    out.append(f'<text x="{_fmt(left + 140)}" y="{_fmt(key_y + 24)}" font-size="10" text-anchor="end">100</text>')
    out.append(f'<rect x="{_fmt(left + 152)}" y="{_fmt(key_y)}" width="14" height="10" fill="{MISSING_FILL}"></rect>')
    out.append(f'<text x="{_fmt(left + 170)}" y="{_fmt(key_y + 9)}" font-size="10">no value</text>')
    out.append("</g></svg>")
    return "".join(out)


def dot_plot(
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[tuple[float | None, float | None, float | None]]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    whisker_note: str,
    y_max: float = 100.0,
    css_class: str = "robustness",
    data: dict[str, str] | None = None,
) -> str:
    """Per category (scenario) one dot per series (method) at its value with a vertical whisker from low to
    high, series side by side within the category's band. Scenarios are unordered, so nothing joins the
    categories (a line between them would suggest a trend). (value, low, high) with low/high None draws the
    dot alone; a missing value draws nothing. `whisker_note` (what the whiskers are) ends the legend."""
    n, m = len(categories), max(len(series), 1)
    band = max(64.0, 12.0 * m + 24, max((_text_width(c, 11) for c in categories), default=0.0) + 12)
    plot_w, plot_h, top, left = band * max(n, 1), 260.0, 34.0, 58.0
    bottom = 44.0
    legend_w = 34.0 + max([_text_width(label) for label, _ in series] + [_text_width(whisker_note, 11)])
    width = left + plot_w + 24 + legend_w
    height = max(top + plot_h + bottom, top + 18.0 * (len(series) + 1) + 16)

    def x_at(category: int, index: int) -> float:
        inner = band - 24
        return left + band * category + 12 + (inner / 2 if m == 1 else inner * index / (m - 1))

    def y_at(value: float) -> float:
        return top + plot_h * (1 - min(max(value, 0.0), y_max) / y_max)

    out = opening(css_class, data, width, height, title, title_x=left, title_y=18)
    for tick in range(0, int(y_max) + 1, int(y_max // 5) or 1):
        y = y_at(tick)
        out.append(
            f'<line x1="{_fmt(left)}" y1="{_fmt(y)}" x2="{_fmt(left + plot_w)}" y2="{_fmt(y)}" stroke="#e3e3e3"></line>'
            f'<text x="{_fmt(left - 6)}" y="{_fmt(y + 4)}" text-anchor="end">{tick}</text>'
        )
    for index, category in enumerate(categories):
        x = left + band * index
        if index:
            out.append(
                f'<line x1="{_fmt(x)}" y1="{_fmt(top)}" x2="{_fmt(x)}" y2="{_fmt(top + plot_h)}" stroke="#c8c8c8" '
                'stroke-dasharray="3 3"></line>'
            )
        out.append(
            f'<text x="{_fmt(x + band / 2)}" y="{_fmt(top + plot_h + 18)}" font-size="11" text-anchor="middle">'
            f"{escape(category)}</text>"
        )
    out.append(axes(left, top, plot_w, plot_h, height, x_label=x_label, y_label=y_label))
    for index, (label, values) in enumerate(series):
        stroke = PALETTE[index % len(PALETTE)]
        shape = (index // len(PALETTE)) % 3
        out.append(f'<g class="series" data-series="{escape(label)}">')
        for category, triple in enumerate(list(values)[:n]):
            value, low, high = (number(v) for v in triple)
            if value is None:
                continue
            x = x_at(category, index)
            tooltip = f"{label} — {categories[category]}: {value:.1f}"
            if low is not None and high is not None:
                tooltip += f" [{low:.1f}, {high:.1f}]"
                out.append(
                    f'<line class="whisker" x1="{_fmt(x)}" y1="{_fmt(y_at(low))}" x2="{_fmt(x)}" '
                    f'y2="{_fmt(y_at(high))}" stroke="{stroke}" stroke-width="1.5"></line>'
                )
            out.append(_marker(shape, x, y_at(value), stroke, tooltip))
        out.append("</g>")
    legend_x = left + plot_w + 24
    out.append('<g class="legend">')
    for index, (label, _) in enumerate(series):
        stroke = PALETTE[index % len(PALETTE)]
        y = top + 6 + 18 * index
        out.append(_marker((index // len(PALETTE)) % 3, legend_x + 11, y, stroke, label))
        out.append(f'<text x="{_fmt(legend_x + 28)}" y="{_fmt(y + 4)}">{escape(label)}</text>')
    y = top + 6 + 18 * len(series) + 6
    out.append(
        f'<line x1="{_fmt(legend_x + 11)}" y1="{_fmt(y - 7)}" x2="{_fmt(legend_x + 11)}" y2="{_fmt(y + 7)}" '
        f'stroke="#555" stroke-width="1.5"></line>'
        f'<text class="whisker-note" x="{_fmt(legend_x + 28)}" y="{_fmt(y + 4)}" font-size="11">'
        f"{escape(whisker_note)}</text>"
    )
    out.append("</g></svg>")
    return "".join(out)
