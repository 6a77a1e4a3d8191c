"""Markdown, CSV and JSON renderings of a board (the HTML page is in `render_html`)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

from mmbench.leaderboard.across_tables import friedman_result
from mmbench.leaderboard.statistics import render_friedman_markdown

TIED = "≈"  # not distinguishable from the table's best
FEW_SEEDS = "⚠"  # fewer than 3 seeds


def percent(summary: Mapping[str, Any] | None, with_std: bool = True) -> str:
    if not summary or summary.get("mean") is None:
        return "–"
    text = f"{100 * summary['mean']:.1f}"
    if with_std and summary.get("std") is not None:
        text += f" ± {100 * summary['std']:.1f}"
    return text


def _rank(rank: float | None) -> str:
    if rank is None:
        return "–"
    return f"{rank:g}"


def ci_text(summary: Mapping[str, Any] | None) -> str:
    """The 95 % interval of a cell in percent, "[low, high]", or "" when the board has none."""
    interval = (summary or {}).get("ci")
    if not interval:
        return ""
    return f"[{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def value_text(summary: Mapping[str, Any] | None) -> str:
    """mean ± std and, when present, the interval: "61.2 ± 0.4 [60.1, 62.0]"."""
    text = percent(summary)
    interval = ci_text(summary)
    return f"{text} {interval}" if interval and text != "–" else text


def rank_text(row: Mapping[str, Any]) -> str:
    """The rank, or the 95 % rank interval ("1–3") when the bootstrap does not settle the rank."""
    interval = row.get("rank_interval")
    if row.get("rank") is not None and interval and interval[0] != interval[1]:
        return f"{interval[0]:g}–{interval[1]:g}"
    return _rank(row.get("rank"))


def label_text(row: Mapping[str, Any]) -> str:
    """The row label with the tie mark when the row is not distinguishable from the best."""
    tied = row.get("tied_with_best") and row.get("p_vs_best") is not None
    return f"{row['label']} {TIED}" if tied else str(row["label"])


def n_text(row: Mapping[str, Any]) -> str:
    return f"{row['n']} {FEW_SEEDS}" if row.get("few_seeds") else str(row["n"])


def p_text(row: Mapping[str, Any]) -> str:
    p = row.get("p_vs_best")
    if p is None:
        return "best" if row.get("tied_with_best") else "–"
    return f"{p:.3g}"


def delta_text(row: Mapping[str, Any]) -> str:
    """The 95 % paired bootstrap interval of row − best in points ("[-1.0, +0.3]"); – on the best row and
    where there is none."""
    interval = row.get("ci_vs_best")
    if not interval or interval[0] is None or interval[1] is None:
        return "–"
    return f"[{100 * interval[0]:+.1f}, {100 * interval[1]:+.1f}]"


def millions(value: Any) -> str:
    return f"{value / 1e6:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def seconds(value: Any, digits: int = 0) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def steps_text(budget: Mapping[str, Any]) -> str:
    """The row's training steps ("3000"); – when no record says."""
    return seconds(budget.get("steps"))  # the same whole-number formatting; budget.steps is an int or None


def selected_text(budget: Mapping[str, Any]) -> str:
    """The step each seed's checkpoint was selected at, in seed order ("2750, 3000, 2500"); – when no record
    says."""
    steps = budget.get("selected_steps") or []
    return ", ".join("–" if step is None else str(step) for step in steps) if any(s is not None for s in steps) else "–"


def statistics_line(table: Mapping[str, Any]) -> str:
    """One sentence: how the intervals and marks of this table were made, or why it has none."""
    info = table.get("statistics") or {}
    custom = f" Custom aggregate: {table['custom_aggregate']}." if table.get("custom_aggregate") else ""
    if not info:
        return custom.strip()
    if not info.get("available"):
        return f"No confidence intervals or significance marks: {info.get('reason')}.{custom}"
    text = (
        f"Brackets: {100 * info['level']:.0f} % hierarchical-bootstrap intervals (seeds, then {info['units']} "
        f"{info['unit_kind']}s; {info['n_boot']} replicates, RNG seed {info['rng_seed']}). p vs best: paired "
        f"permutation test by seed and {info['unit_kind']} ({info['n_permutations']} permutations), Holm-adjusted; "
        f"Δ vs best: paired bootstrap interval of the row minus the best (points; seeds and {info['unit_kind']}s "
        f"resampled). {TIED} = not shown to be worse than the best at α = {info['alpha']:g}: a row is marked worse "
        "only when p < α and the Δ interval excludes 0. A rank range is the 95 % rank interval."
    )
    if info.get("rank_interval_seed_subset"):
        seeds = ", ".join(map(str, info.get("rank_interval_seeds") or []))
        fixed = info.get("rank_interval_fixed") or []
        if fixed:
            text += (
                f" Rank intervals resample seeds {seeds}; rows missing one of them are held at their point "
                f"estimates and shown without an interval: {', '.join(map(_cell, fixed))}."
            )
        else:
            text += f" Rank intervals use only the seeds every row has ({seeds})."
    if info.get("reason"):
        text += f" {info['reason']}."
    return text + custom


def across_markdown(section: Mapping[str, Any] | None) -> list[str]:
    """The "Across tables" section: Friedman + Nemenyi (render_friedman_markdown), the Holm-Wilcoxon
    comparison with the best, and which blocks and methods were used; or why there is none."""
    lines = ["## Across tables (Friedman test, Nemenyi critical difference)", ""]
    if not section:
        return []
    if not section.get("available"):
        return [*lines, f"Not computed: {section.get('reason')}.", ""]
    names = section["methods"]
    lines += [
        f"Blocks: the {len(section['blocks'])} (dataset, protocol, scenario) cells in which all {len(names)} methods "
        f"have a value ({section['left_out_blocks']} other blocks left out, {section['duplicate_blocks']} repeating "
        "another block's numbers counted once): " + "; ".join(section["blocks"]) + ".",
        "",
        *_few_seeds_line(section),
        # statistics.py words its blocks "tables"; here a block is a (dataset, protocol, scenario) cell
        render_friedman_markdown(names, friedman_result(section), section["nemenyi_cd"], section["alpha"]).replace(
            " tables, k = ", " blocks, k = ", 1
        ),
    ]
    holm = section["wilcoxon_holm"]
    others = ", ".join(f"{_cell(name)} p = {p:.3g}" for name, p in holm["p_values"].items() if p is not None)
    lines += [
        f"Recommended reading (Benavoli et al. 2016): the best by average rank, **{_cell(holm['best'])}**, against "
        f"each other method by Wilcoxon signed-rank tests over the blocks, Holm-adjusted: {others}. Not "
        f"distinguishable from it at α = {section['alpha']:g}: {', '.join(map(_cell, holm['not_distinguishable']))}.",
        "",
    ]
    return lines


def few_seeds_text(section: Mapping[str, Any]) -> str:
    """The sentence naming the compared methods with fewer than 3 seeds in some table; "" when none."""
    few = section.get("few_seeds") or []
    if not few:
        return ""
    return (
        f"{FEW_SEEDS} Fewer than 3 seeds in some table: {', '.join(map(_cell, few))}. Their means, so their "
        "ranks in each block, rest on fewer trainings than the others'; read their place here as provisional."
    )


def _few_seeds_line(section: Mapping[str, Any]) -> list[str]:
    text = few_seeds_text(section)
    return [text, ""] if text else []


def settings_line(table: Mapping[str, Any]) -> str:
    settings = ", ".join(f"{key}={_setting(value)}" for key, value in table["settings"].items())
    return f"dataset {table['dataset']['name']} ({table['dataset']['fingerprint'][:15]}…), {settings}"


def _setting(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_setting(v)}" for k, v in value.items()) + "}"
    return str(value)


def _primary_label(table: Mapping[str, Any]) -> str:
    label = next(column["label"] for column in table["columns"] if column["key"] == table["primary"])
    return f"{label} mIoU" if "mIoU" not in label and "F1" not in label else label


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(board: Mapping[str, Any], rebuild: str | None = None) -> str:
    lines = ["# mmbench leaderboard", ""]
    if rebuild:
        lines += [f"Rebuild with `{rebuild}`.", ""]
    lines += [
        f"{board['records']} run records, {len(board['tables'])} tables. Values are mIoU (%) unless the column "
        "says otherwise; mean ± std over seeds (n), with a 95 % bootstrap interval in brackets where the records "
        f"carry per-unit matrices. {TIED} = not distinguishable from the table's best; {FEW_SEEDS} = fewer than 3 "
        "seeds; a rank range (1–3) is a 95 % rank interval. Budget: parameters used at inference on the full "
        "modality set, seconds per training step, training time, training steps and the step each seed's "
        "checkpoint was selected at on validation. Rows flagged in the last column do not come "
        "from one clean source tree or need a caveat.",
        "",
    ]
    if not board["tables"]:
        lines += ["No records match the filters.", ""]
    for table in board["tables"]:
        lines += [
            f"## {table['dataset']['name']} / {table['protocol']['name']} v{table['protocol']['version']}",
            "",
            _cell(settings_line(table)) + f"; ranked by {_primary_label(table)}.",
            "",
        ]
        if statistics_line(table):
            lines += [statistics_line(table), ""]
        headers = [
            "rank",
            "method",
            "n",
            *(column["label"] for column in table["columns"]),
            "p vs best",
            "Δ vs best",
            "params (M)",
            "inference params (M)",
            "s / step",
            "train s",
            "steps",
            "selected at",
            "reproducibility",
        ]
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|---:|---|---:|" + "---:|" * len(table["columns"]) + "---:|" * 8 + "---|")
        for row in table["rows"]:
            links = " ".join(f"[{index + 1}]({path})" for index, path in enumerate(row["records"]))
            flags = "; ".join(row["flags"]) if row["flags"] else "clean"
            budget = row.get("budget") or {}
            cells = [
                rank_text(row),
                label_text(row),
                n_text(row),
                *(value_text(row["values"].get(column["key"])) for column in table["columns"]),
                p_text(row),
                delta_text(row),
                millions(row["params"]),
                millions(budget.get("params_inference")),
                seconds(budget.get("step_s"), 3),
                seconds(budget.get("train_s")),
                steps_text(budget),
                selected_text(budget),
                f"{flags} {links}",
            ]
            lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
        if table["references"]:
            lines += [
                "",
                "Published reference numbers (not ranked; different data, recipe and hardware):",
                "",
                "| method | setting | metric | value | source | provenance |",
                "|---|---|---|---:|---|---|",
            ]
            for ref in table["references"]:
                lines.append(
                    "| "
                    + " | ".join(
                        _cell(str(ref[key])) for key in ("method", "setting", "metric", "value", "source", "provenance")
                    )
                    + " |"
                )
        lines.append("")
    lines += across_markdown(board.get("across_tables"))
    if board["overall"]:
        lines += [
            "## Overall (Borda count over the tables above; descriptive)",
            "",
            "In a table of n ranked rows, rank r earns n − r points. A summary of the ranks, not a test: see "
            "the Friedman test above.",
            "",
            "| rank | method | points | tables |",
            "|---:|---|---:|---:|",
        ]
        lines += [
            f"| {_rank(entry['rank'])} | {_cell(entry['label'])} | {entry['points']:g} | {entry['tables']} |"
            for entry in board["overall"]
        ]
        lines.append("")
    if board["skipped"]:
        lines += ["## Skipped records", ""]
        lines += [f"- `{item['path']}`: {_cell(item['reason'])}" for item in board["skipped"]]
        lines.append("")
    return "\n".join(lines)


def render_csv(board: Mapping[str, Any]) -> str:
    """One line per (table, row, column): long format, so tables with different columns share one file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "table",
            "dataset",
            "protocol",
            "protocol_version",
            "rank",
            "method",
            "label",
            "config_id",
            "n",
            "seeds",
            "column",
            "mean",
            "std",
            "ci_low",
            "ci_high",
            "rank_low",
            "rank_high",
            "p_vs_best",
            "delta_vs_best_low",
            "delta_vs_best_high",
            "flags",
            "records",
        ]
    )
    for table in board["tables"]:
        for row in table["rows"]:
            for column in table["columns"]:
                value = row["values"].get(column["key"]) or {}
                writer.writerow(
                    [
                        table["id"],
                        table["dataset"]["name"],
                        table["protocol"]["name"],
                        table["protocol"]["version"],
                        _rank(row["rank"]),
                        row["method"],
                        row["label"],
                        row["config_id"],
                        row["n"],
                        " ".join(map(str, row["seeds"])),
                        column["key"],
                        "" if value.get("mean") is None else repr(value["mean"]),
                        "" if value.get("std") is None else repr(value["std"]),
                        *(["", ""] if not value.get("ci") else [repr(value["ci"][0]), repr(value["ci"][1])]),
                        *(["", ""] if not row.get("rank_interval") else [f"{r:g}" for r in row["rank_interval"]]),
                        "" if row.get("p_vs_best") is None else repr(row["p_vs_best"]),
                        *(["", ""] if not row.get("ci_vs_best") else [repr(v) for v in row["ci_vs_best"]]),
                        "; ".join(row["flags"]),
                        " ".join(row["records"]),
                    ]
                )
    return buffer.getvalue()


def render_json(board: Mapping[str, Any]) -> str:
    return json.dumps(board, indent=2, sort_keys=False) + "\n"
