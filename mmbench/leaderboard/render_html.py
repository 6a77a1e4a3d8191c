"""The leaderboard as one self-contained HTML page: no network resource of any kind (inline style,
inline script, charts as inline SVG), every string from a record escaped, tables sortable by a few
lines of dependency-free JavaScript. The page is also well-formed XML (void elements self-closed,
no named entities, the script in a CDATA section), so a strict parser can check it.

It reads only the plain data `build_board` returns and tolerates missing optional keys.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from mmbench.leaderboard.cd_diagram import cd_diagram
from mmbench.leaderboard.curves_svg import validation_curves_chart
from mmbench.leaderboard.render_text import (
    FEW_SEEDS,
    TIED,
    ci_text,
    delta_text,
    few_seeds_text,
    millions,
    p_text,
    percent,
    rank_text,
    seconds,
    selected_text,
    statistics_line,
    steps_text,
)
from mmbench.leaderboard.svg import dot_plot, heatmap, number

DASH = "–"
SAFE_URL = re.compile(r"^https?://", re.IGNORECASE)
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem auto;
       max-width: 1400px; padding: 0 1rem; color: #1a1a1a; line-height: 1.4; }
h1 { margin-bottom: .2rem; }
h2 { margin-top: 2.5rem; border-bottom: 2px solid #ddd; padding-bottom: .2rem; }
h3 { margin-top: 1.5rem; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em; }
.settings { background: #f6f6f6; padding: .4rem .6rem; border-radius: 4px; font-size: .9em; }
.settings span { margin-right: 1.1em; white-space: nowrap; }
.note, .fingerprint { color: #555; font-size: .9em; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; vertical-align: top; }
th { background: #f0f0f0; text-align: left; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th:hover { background: #e4e4e4; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.best { font-weight: bold; }
th.primary, td.primary { background: #fbf7e6; }
table.reference { border: 2px dashed #b58900; }
table.reference caption, table.overall caption { text-align: left; font-weight: bold; padding: .3rem 0; }
table.reference caption { color: #8a6500; }
.flag { display: inline-block; color: #8a3b00; background: #fff1e0; border: 1px solid #f0b070;
        border-radius: 3px; padding: 0 .3em; margin: .1em .2em .1em 0; font-size: .85em; }
.clean { color: #2e7d32; font-size: .85em; }
.records a { display: inline-block; margin-right: .4em; font-size: .85em; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
figure { margin: 0; }
figcaption { font-size: .85em; color: #555; }
svg { max-width: 100%; height: auto; }
.empty { padding: 1rem; background: #fff6e0; border: 1px solid #e0c080; border-radius: 4px; }
ul.skipped li { font-size: .9em; }
tr.tied td.method { border-left: 4px solid #2e7d32; }
.ci { display: block; color: #555; font-size: .8em; }
.mark { color: #2e7d32; font-weight: bold; }
.few { color: #8a3b00; }
"""

SCRIPT = """
(function () {
  function key(cell) {
    var value = cell ? cell.getAttribute("data-sort") : "";
    return value === null ? cell.textContent.trim() : value;
  }
  function compare(a, b) {
    var x = Number(a), y = Number(b);
    if (a !== "" && b !== "" && !isNaN(x) && !isNaN(y)) { return x - y; }
    return a.localeCompare(b);
  }
  function sortBy(table, headers, th, index) {
    var current = th.getAttribute("aria-sort");
    var ascending = current ? current === "descending" : th.getAttribute("data-first") !== "desc";
    headers.forEach(function (other) { other.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r, s) {
      var a = key(r.cells[index]), b = key(s.cells[index]);
      if (a === "" || b === "") { return (a === "") - (b === ""); }
      return ascending ? compare(a, b) : compare(b, a);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var headers = Array.prototype.slice.call(table.querySelectorAll("thead th"));
    headers.forEach(function (th, index) {
      th.setAttribute("tabindex", "0");
      th.addEventListener("click", function () { sortBy(table, headers, th, index); });
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(table, headers, th, index); }
      });
    });
  });
})();
"""


def _e(value: Any) -> str:
    """Any value as escaped text (quotes included, so it is safe in an attribute too)."""
    return escape("" if value is None else str(value), quote=True)


def _setting(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _rank(value: Any) -> str:
    value = number(value)
    if value is None:
        return DASH
    return str(int(value)) if value == int(value) else f"{value:g}"


def _sort_attr(value: Any) -> str:
    value = number(value)
    return "" if value is None else repr(value)


def _link(url: Any, text: Any) -> str:
    """An anchor to `url` when it is an http(s) address; otherwise just the text (no javascript: links)."""
    if isinstance(url, str) and SAFE_URL.match(url.strip()):
        return f'<a href="{_e(url.strip())}" rel="noopener noreferrer">{_e(text)}</a>'
    return _e(text)


def _record_href(path: str) -> str:
    """The record path as given, unless it could be read as a URL scheme (javascript:, data:...); a
    Windows drive letter or such a name gets './' so the browser still treats it as a relative path."""
    return f"./{path}" if SCHEME.match(path) else path


def _columns(table: Mapping[str, Any]) -> list[dict[str, Any]]:
    columns = table.get("columns")
    if isinstance(columns, list) and columns:
        return [
            column if isinstance(column, Mapping) else {"key": str(column), "label": str(column)} for column in columns
        ]
    keys: dict[str, None] = {}
    for row in table.get("rows") or []:
        for key in row.get("values") or {}:
            keys.setdefault(key, None)
    return [
        {
            "key": key,
            "label": key.removeprefix("scenario:"),
            "kind": "scenario" if key.startswith("scenario:") else "aggregate",
        }
        for key in keys
    ]


def _cell_mean(row: Mapping[str, Any], key: str) -> Any:
    cell = (row.get("values") or {}).get(key)
    return cell.get("mean") if isinstance(cell, Mapping) else cell


def _value_cell(row: Mapping[str, Any], key: str, best: float | None, primary: bool) -> str:
    cell = (row.get("values") or {}).get(key)
    cell = cell if isinstance(cell, Mapping) else {"mean": cell}
    mean, std = number(cell.get("mean")), number(cell.get("std"))
    classes = ["num"] + (["primary"] if primary else []) + (["best"] if mean is not None and mean == best else [])
    text = percent({"mean": mean, "std": std})  # the Markdown board's formatting
    title = ""
    count, seeds = cell.get("n"), row.get("n")
    if isinstance(count, int) and isinstance(seeds, int) and mean is not None and count < seeds:
        title = f' title="from {count} of {seeds} seeds"'
        text += "*"
    interval = ci_text(cell) if mean is not None else ""
    if interval:
        text += f'<span class="ci" title="95 % hierarchical-bootstrap interval">{_e(interval)}</span>'
    return f'<td class="{" ".join(classes)}" data-sort="{_sort_attr(mean)}"{title}>{text}</td>'


def _params(value: Any) -> tuple[str, str]:
    value = number(value)
    return (DASH, "") if value is None else (f"{value / 1e6:.2f}", repr(value))


def _reproducibility(row: Mapping[str, Any]) -> str:
    paths = [str(path) for path in row.get("records") or []]
    links = "".join(
        f'<a href="{_e(_record_href(path))}" title="{_e(path)}">{_e(os.path.basename(path) or path)}</a>'
        for path in paths
    )
    flags = [str(flag) for flag in row.get("flags") or []]
    marks = "".join(f'<span class="flag" title="may not be reproducible">⚠ {_e(flag)}</span>' for flag in flags)
    status = marks or '<span class="clean">clean</span>'
    details = []
    if row.get("commits"):
        details.append("commits: " + ", ".join(str(commit)[:12] for commit in row["commits"]))
    if row.get("mmbench"):
        details.append("mmbench: " + ", ".join(str(version) for version in row["mmbench"]))
    title = f' title="{_e("; ".join(details))}"' if details else ""
    return f'<td class="repro" data-sort="{len(flags)}"{title}>{status}<div class="records">{links}</div></td>'


def _method_cell(row: Mapping[str, Any]) -> str:
    label = row.get("label") or row.get("method") or "?"
    paper = row.get("paper")
    text = _link(paper, label)
    if paper and text == _e(label):  # a paper that is not a web address: show it, unlinked
        text += f' <span class="note">({_e(paper)})</span>'
    version = row.get("version")
    if version not in (None, ""):
        text += f' <span class="note">v{_e(version)}</span>'
    if row.get("tied_with_best") and row.get("p_vs_best") is not None:
        title = "not shown to be worse than the best at α = 0.05 (permutation test and seed-resampling interval)"
        text += f' <span class="mark" title="{title}">{TIED}</span>'
    return f'<td class="method" data-sort="{_e(label)}">{text}</td>'


def _board_table(table: Mapping[str, Any], index: int) -> str:
    columns = _columns(table)
    primary = table.get("primary", "mean")
    rows = [row for row in table.get("rows") or [] if isinstance(row, Mapping)]
    best = {}
    for column in columns:
        present = [v for v in (number(_cell_mean(row, column["key"])) for row in rows) if v is not None]
        best[column["key"]] = max(present) if present else None
    head = [
        '<th scope="col" data-first="asc" title="rank, or its 95 % interval when the bootstrap does not settle '
        'it">rank</th>',
        '<th scope="col">method</th>',
        '<th scope="col" data-first="desc" title="number of records (seeds) aggregated">n (seeds)</th>',
    ]
    for column in columns:
        css = ' class="primary"' if column["key"] == primary else ""
        label = column.get("label", column["key"])
        head.append(
            f'<th scope="col"{css} data-first="desc" data-key="{_e(column["key"])}" '
            f'title="{_e(column["key"])}">{_e(label)}</th>'
        )
    head += [
        '<th scope="col" data-first="desc" title="paired permutation test against the best row, Holm-adjusted">'
        "p vs best</th>",
        '<th scope="col" data-first="desc" title="95 % paired bootstrap interval of the row minus the best row, '
        "in points (seeds and units resampled); a row is marked worse than the best only when p &lt; 0.05 and "
        'this interval excludes 0">Δ vs best</th>',
        '<th scope="col" data-first="asc">params (M)</th>',
        '<th scope="col" data-first="asc" title="parameters used at inference on the full modality set">'
        "inference params (M)</th>",
        '<th scope="col" data-first="asc" title="seconds per training step">s / step</th>',
        '<th scope="col" data-first="asc" title="training time in seconds">train s</th>',
        '<th scope="col" data-first="asc" title="training steps">steps</th>',
        '<th scope="col" data-first="asc" title="the step each seed\'s checkpoint was selected at on validation, '
        'in seed order">selected at</th>',
        '<th scope="col" data-first="asc">reproducibility</th>',
    ]
    body = []
    for row in rows:
        seeds = row.get("seeds") or []
        n = row.get("n", len(seeds))
        seed_text = f' <span class="note">({_e(", ".join(str(seed) for seed in seeds))})</span>' if seeds else ""
        params, params_sort = _params(row.get("params"))
        budget = row.get("budget") if isinstance(row.get("budget"), Mapping) else {}
        few = (
            f' <span class="few" title="fewer than 3 seeds: the interval sees too few training runs">{FEW_SEEDS}</span>'
            if row.get("few_seeds")
            else ""
        )
        rank = rank_text(row) if "label" in row else _rank(row.get("rank"))
        cells = [
            f'<td class="num" data-sort="{_sort_attr(row.get("rank"))}">{_e(rank)}</td>',
            _method_cell(row),
            f'<td class="num" data-sort="{_sort_attr(n)}">{_e(n)}{few}{seed_text}</td>',
        ]
        cells += [_value_cell(row, column["key"], best[column["key"]], column["key"] == primary) for column in columns]
        p_value = row.get("p_vs_best")
        cells += [
            f'<td class="num" data-sort="{_sort_attr(p_value)}">{_e(p_text(row))}</td>',
            f'<td class="num" data-sort="{_sort_attr((row.get("ci_vs_best") or [None, None])[1])}">'
            f"{_e(delta_text(row))}</td>",
            f'<td class="num" data-sort="{params_sort}">{params}</td>',
            f'<td class="num" data-sort="{_sort_attr(budget.get("params_inference"))}">'
            f"{millions(budget.get('params_inference'))}</td>",
            f'<td class="num" data-sort="{_sort_attr(budget.get("step_s"))}">{seconds(budget.get("step_s"), 3)}</td>',
            f'<td class="num" data-sort="{_sort_attr(budget.get("train_s"))}">{seconds(budget.get("train_s"))}</td>',
            f'<td class="num" data-sort="{_sort_attr(budget.get("steps"))}">{_e(steps_text(budget))}</td>',
            f'<td class="num">{_e(selected_text(budget))}</td>',
            _reproducibility(row),
        ]
        tied = ' class="tied"' if row.get("tied_with_best") else ""
        body.append(f'<tr{tied} data-method="{_e(row.get("method"))}">{"".join(cells)}</tr>')
    return (
        f'<table class="board sortable" data-table="{_e(table.get("id", index))}">'
        f"<thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _reference_table(references: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(
        f'<th scope="col">{name}</th>'
        for name in ("method", "protocol", "setting", "metric", "value (%)", "source", "provenance")
    )
    body = []
    for ref in references:
        protocol = ref.get("protocol")
        value = ref.get("value")
        body.append(
            "<tr>"
            f"<td>{_e(ref.get('method'))}</td>"
            f"<td>{_e(protocol) if protocol else '<em>not stated</em>'}</td>"
            f"<td>{_e(ref.get('setting'))}</td>"
            f"<td>{_e(ref.get('metric'))}</td>"
            f'<td class="num" data-sort="{_sort_attr(value)}">{_e(value)}</td>'
            f"<td>{_link(ref.get('source'), ref.get('source'))}</td>"
            f"<td>{_e(ref.get('provenance'))}</td>"
            "</tr>"
        )
    return (
        '<table class="reference sortable"><caption>Published reference numbers — not ranked '
        '<span class="note">(copied from the cited source, not produced by mmbench; settings may differ)'
        f"</span></caption><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _primary_label(table: Mapping[str, Any]) -> str:
    primary = table.get("primary", "mean")
    return next(
        (str(column.get("label", primary)) for column in _columns(table) if column.get("key") == primary), str(primary)
    )


def _scenario_key(table: Mapping[str, Any], scenario: str) -> str:
    for column in _columns(table):
        if column.get("kind") == "scenario" and column.get("label") == scenario:
            return column["key"]
    return f"scenario:{scenario}"


def _whisker(row: Mapping[str, Any], key: str) -> tuple[tuple[float | None, float | None, float | None], str]:
    """((value, low, high) in percent, what the whisker is): the 95 % interval when the board has one,
    else mean ± std over seeds, else the dot alone (one seed)."""
    cell = (row.get("values") or {}).get(key)
    cell = cell if isinstance(cell, Mapping) else {"mean": cell}
    mean, std = number(cell.get("mean")), number(cell.get("std"))
    if mean is None:
        return (None, None, None), "none"
    interval = cell.get("ci")
    if isinstance(interval, Sequence) and len(interval) == 2 and all(number(v) is not None for v in interval):
        return (100 * mean, 100 * interval[0], 100 * interval[1]), "ci"
    if std is not None:
        return (100 * mean, 100 * (mean - std), 100 * (mean + std)), "std"
    return (100 * mean, None, None), "none"


def _whisker_note(kinds: set[str]) -> str:
    parts = []
    if "ci" in kinds:
        parts.append("95 % bootstrap CI")
    if "std" in kinds:
        parts.append("± 1 std over seeds" + (" (rows without per-unit matrices)" if "ci" in kinds else ""))
    if not parts:
        return "whiskers: none (one seed, no per-unit matrices)"
    return "whiskers: " + "; ".join(parts) + ("; none with one seed" if "none" in kinds else "")


def _charts(table: Mapping[str, Any], heading: str) -> str:
    scenarios = [str(s) for s in table.get("scenarios") or []]
    rows = [row for row in table.get("rows") or [] if isinstance(row, Mapping)]
    if not scenarios or not rows:
        return ""
    labels = [str(row.get("label") or row.get("method") or "?") for row in rows]
    keys = [_scenario_key(table, scenario) for scenario in scenarios]
    series = []
    kinds: set[str] = set()
    for label, row in zip(labels, rows, strict=True):
        points = []
        for key in keys:
            point, kind = _whisker(row, key)
            points.append(point)
            kinds.add(kind)
        series.append((label, points))
    table_id = str(table.get("id", ""))
    chart = dot_plot(
        scenarios,
        series,
        title=f"Robustness: mIoU per scenario — {heading}",
        x_label="scenario (modalities available at test time)",
        y_label="mIoU (%)",
        whisker_note=_whisker_note(kinds),
        data={"table": table_id},
    )
    classes: dict[str, None] = dict.fromkeys(str(c) for c in table.get("classes") or [])
    for row in rows:
        for per_class in (row.get("per_class_f1") or {}).values():
            if isinstance(per_class, Mapping):
                classes.update(dict.fromkeys(str(c) for c in per_class))
    maps = []
    for scenario in scenarios:
        grid = []
        for row in rows:
            per_class = (row.get("per_class_f1") or {}).get(scenario)
            per_class = per_class if isinstance(per_class, Mapping) else {}
            grid.append([per_class.get(name) for name in classes])
        svg = heatmap(
            labels,
            list(classes),
            grid,
            title=f"F1 per class (%) — {scenario}",
            data={"table": table_id, "scenario": scenario},
        )
        maps.append(f"<figure>{svg}<figcaption>scenario: {_e(scenario)}</figcaption></figure>")
    return (
        f'<h3>Robustness across scenarios</h3><div class="charts"><figure>{chart}<figcaption>One dot per method and '
        "scenario (scenarios are unordered: nothing joins them); "
        f"{_e(_whisker_note(kinds))}.</figcaption></figure></div>"
        f'<h3>Per-class F1 by scenario</h3><div class="charts">{"".join(maps)}</div>'
    )


def _curves(table: Mapping[str, Any], heading: str) -> str:
    """The validation curves of the rows' training runs; "" for a table of evaluation-only records (they
    repeat the curves of the checkpoints they loaded, shown with the training table)."""
    rows = [row for row in table.get("rows") or [] if isinstance(row, Mapping)]
    series = [
        (str(row.get("label") or row.get("method") or "?"), [c for c in row.get("validation_curves") or [] if c])
        for row in rows
    ]
    chart = validation_curves_chart(
        [(label, curves) for label, curves in series if curves],
        title=f"Validation mIoU during training — {heading}",
        data={"table": str(table.get("id", ""))},
    )
    if not chart:
        return ""
    return (
        f'<h3>Validation curves</h3><div class="charts"><figure>{chart}<figcaption>Mean of the training '
        "protocol's validation score over seeds (thick), each seed (thin), each seed's selected checkpoint "
        "(ring); the legend gives the number of seeds. A curve still rising at the last step means the "
        "budget, not the method, may have set the row's rank.</figcaption></figure></div>"
    )


def _part(table: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """table["dataset"] or table["protocol"] as a mapping (a bare string is taken as the name)."""
    value = table.get(name)
    if isinstance(value, Mapping):
        return value
    return {} if value is None else {"name": str(value)}


def _heading(table: Mapping[str, Any]) -> str:
    dataset, protocol = _part(table, "dataset"), _part(table, "protocol")
    version = protocol.get("version")
    return f"{dataset.get('name', '?')} / {protocol.get('name', '?')}" + (f" v{version}" if version else "")


def _table_section(table: Mapping[str, Any], index: int) -> str:
    dataset = _part(table, "dataset")
    heading = _heading(table)
    settings = table.get("settings") or {}
    settings_html = (
        "".join(f"<span><code>{_e(key)}={_e(_setting(value))}</code></span>" for key, value in settings.items())
        or "<em>none</em>"
    )
    parts = [
        f'<section class="table" id="table-{index}" data-table="{_e(table.get("id", index))}">',
        f"<h2>{_e(heading)}</h2>",
    ]
    if dataset.get("fingerprint"):
        parts.append(
            f'<p class="fingerprint">dataset fingerprint <code>{_e(dataset["fingerprint"])}</code>'
            f" · table <code>{_e(table.get('id', ''))}</code></p>"
        )
    parts.append(f'<p class="settings"><strong>settings:</strong> {settings_html}</p>')
    parts.append(
        '<p class="note">Values in percent (mIoU unless the column names another metric), mean ± sample '
        "standard deviation over seeds (no ± with a single seed; * = not every seed has the value). "
        f"Ranked by <strong>{_e(_primary_label(table))}</strong> (highlighted); click a header to sort.</p>"
    )
    note = statistics_line(table)
    if note:
        parts.append(f'<p class="note statistics">{_e(note)}</p>')
    parts.append(_board_table(table, index))
    references = [ref for ref in table.get("references") or [] if isinstance(ref, Mapping)]
    if references:
        parts.append(_reference_table(references))
    parts.append(_charts(table, heading))
    parts.append(_curves(table, heading))
    parts.append("</section>")
    return "".join(parts)


def _overall(overall: Sequence[Mapping[str, Any]]) -> str:
    body = "".join(
        f'<tr><td class="num" data-sort="{_sort_attr(entry.get("rank"))}">{_rank(entry.get("rank"))}</td>'
        f"<td>{_e(entry.get('label'))}</td>"
        f'<td class="num" data-sort="{_sort_attr(entry.get("points"))}">{_e(_rank(entry.get("points")))}</td>'
        f'<td class="num" data-sort="{_sort_attr(entry.get("tables"))}">{_e(entry.get("tables"))}</td></tr>'
        for entry in overall
        if isinstance(entry, Mapping)
    )
    return (
        '<section id="overall"><h2>Overall (Borda count) — descriptive</h2>'
        '<p class="note">In a table of n ranked rows, a row at rank r earns n − r points; points are summed over '
        "the tables a method appears in. Tables differ in difficulty and in which methods they hold: read this "
        "as a summary, not a measurement.</p>"
        '<table class="overall sortable"><thead><tr><th scope="col">rank</th><th scope="col">method</th>'
        '<th scope="col" data-first="desc">points</th><th scope="col" data-first="desc">tables</th></tr></thead>'
        f"<tbody>{body}</tbody></table></section>"
    )


def render_html(board: dict) -> str:
    """The whole leaderboard as one self-contained HTML5 page (a string; the caller writes it)."""
    board = board if isinstance(board, Mapping) else {}
    tables = [table for table in board.get("tables") or [] if isinstance(table, Mapping)]
    skipped = [item for item in board.get("skipped") or [] if isinstance(item, Mapping)]
    overall = [entry for entry in board.get("overall") or [] if isinstance(entry, Mapping)]
    filters = {key: value for key, value in (board.get("filters") or {}).items() if value is not None}
    records = board.get("records", sum(len(row.get("records") or []) for t in tables for row in t.get("rows") or []))

    summary = [
        f"<li><strong>{_e(records)}</strong> record{'s' if records != 1 else ''} in "
        f"<strong>{len(tables)}</strong> table{'s' if len(tables) != 1 else ''}</li>",
        f"<li><strong>{len(skipped)}</strong> record file{'s' if len(skipped) != 1 else ''} skipped</li>",
    ]
    if filters:
        summary.append(
            "<li>filters: " + ", ".join(f"<code>{_e(k)}={_e(v)}</code>" for k, v in filters.items()) + "</li>"
        )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"/>',
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>',
        "<title>mmbench leaderboard</title>",
        f"<style>{STYLE}</style></head><body>",
        "<header><h1>mmbench leaderboard</h1>",
        '<p class="note">Missing-modality multimodal segmentation. Every number comes from a run record; '
        "published reference numbers are shown apart and never ranked.</p>",
        f'<ul class="summary">{"".join(summary)}</ul>',
    ]
    if skipped:
        items = "".join(f"<li><code>{_e(item.get('path'))}</code> — {_e(item.get('reason'))}</li>" for item in skipped)
        parts.append(
            f'<details class="skipped" open="open"><summary>Skipped records</summary>'
            f'<ul class="skipped">{items}</ul></details>'
        )
    if tables:
        toc = "".join(
            f'<li><a href="#table-{index}">{_e(_toc_label(table))}</a></li>'
            for index, table in enumerate(tables, start=1)
        )
        parts.append(
            f'<nav><ul class="toc">{toc}<li><a href="#across">Across tables</a></li>'
            '<li><a href="#overall">Overall (Borda count)</a></li></ul></nav>'
        )
    parts.append("</header><main>")
    if not tables:
        parts.append(
            '<p class="empty">No leaderboard tables: no valid run record matched'
            + (" the filters" if filters else "")
            + ". Nothing to rank.</p>"
        )
    for index, table in enumerate(tables, start=1):
        parts.append(_table_section(table, index))
    if tables:
        parts.append(_across(board.get("across_tables")))
        parts.append(_overall(overall))
    parts.append(f"</main><script>//<![CDATA[{SCRIPT}//]]></script></body></html>\n")
    return "".join(parts)


def _across(section: Any) -> str:
    """The "Across tables" section: the critical-difference diagram, the Friedman line, the average ranks
    and the Holm-Wilcoxon comparison with the best; or why there is none."""
    head = '<section id="across"><h2>Across tables</h2>'
    if not isinstance(section, Mapping):
        return head + '<p class="note">Not computed.</p></section>'
    if not section.get("available"):
        return head + f'<p class="note">Not computed: {_e(section.get("reason"))}.</p></section>'
    names = [str(name) for name in section["methods"]]
    result = section["friedman"]
    cd = number(section.get("nemenyi_cd"))
    svg = cd_diagram(
        names,
        [float(r) for r in result["average_ranks"]],
        cd,
        title=f"Critical difference diagram ({len(names)} methods, {len(section['blocks'])} blocks)",
    )
    holm = section.get("wilcoxon_holm") or {}
    p_values = holm.get("p_values") or {}
    tied = set(holm.get("not_distinguishable") or [])
    order = sorted(range(len(names)), key=lambda i: result["average_ranks"][i])
    rows = "".join(
        f'<tr><td class="num" data-sort="{result["average_ranks"][i]!r}">{result["average_ranks"][i]:.2f}</td>'
        f"<td>{_e(names[i])}</td>"
        f'<td class="num" data-sort="{_sort_attr(p_values.get(names[i]))}">'
        f"{'best' if names[i] == holm.get('best') else _e(_p(p_values.get(names[i])))}</td>"
        f"<td>{'yes' if names[i] in tied else 'no'}</td></tr>"
        for i in order
    )
    blocks = "".join(f"<li>{_e(block)}</li>" for block in section["blocks"])
    friedman = (
        f"Friedman test over N = {result['n_blocks']} blocks, k = {result['n_methods']} methods: "
        f"χ²({result['n_methods'] - 1}) = {result['statistic']:.3f}, p = {result['p_value']:.3g}"
    )
    if result.get("iman_davenport") is not None:
        friedman += f"; Iman–Davenport F = {result['iman_davenport']:.3f}, p = {result['iman_davenport_p']:.3g}"
    return (
        head + '<p class="note">Blocks are (dataset, protocol, scenario) cells; the test uses the methods present '
        f"in the most blocks and the blocks holding all of them ({section['left_out_blocks']} blocks left out; "
        f"{section['duplicate_blocks']} blocks repeating another's numbers counted once). {_e(friedman)}. "
        f"Nemenyi critical difference at α = {section['alpha']:g}: CD = {cd if cd is None else f'{cd:.3f}'} "
        "(bars join methods whose average ranks differ by less). The Nemenyi groups depend on which other "
        "methods are compared (Benavoli et al. 2016): read the Holm-adjusted Wilcoxon test against the best "
        f"below as the test of record, the diagram as a summary. {_e(few_seeds_text(section))}</p>"
        f'<div class="charts"><figure>{svg}<figcaption>average rank over the blocks (1 = best)</figcaption></figure>'
        "</div>"
        '<table class="across sortable"><thead><tr><th scope="col">average rank</th><th scope="col">method</th>'
        '<th scope="col" title="Wilcoxon signed-rank test against the best over the blocks, Holm-adjusted">'
        'p vs best (Holm–Wilcoxon)</th><th scope="col">not distinguishable from the best</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
        f"<details><summary>blocks used ({len(section['blocks'])})</summary><ul>{blocks}</ul></details></section>"
    )


def _p(value: Any) -> str:
    value = number(value)
    return DASH if value is None else f"{value:.3g}"


def _toc_label(table: Mapping[str, Any]) -> str:
    rows = len(table.get("rows") or [])
    return f"{_heading(table)} ({rows} row{'s' if rows != 1 else ''})"
