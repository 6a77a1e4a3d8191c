"""Markdown, CSV and JSON renderings of a board (the HTML page is in `render_html`)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any


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
        "says otherwise; mean ± std over seeds (n). Rows flagged in the last column do not come from one "
        "clean source tree.",
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
        headers = [
            "rank",
            "method",
            "n",
            *(column["label"] for column in table["columns"]),
            "params (M)",
            "reproducibility",
        ]
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|---:|---|---:|" + "---:|" * len(table["columns"]) + "---:|---|")
        for row in table["rows"]:
            links = " ".join(f"[{index + 1}]({path})" for index, path in enumerate(row["records"]))
            flags = "; ".join(row["flags"]) if row["flags"] else "clean"
            params = f"{row['params'] / 1e6:.2f}" if isinstance(row["params"], int) else "–"
            cells = [
                _rank(row["rank"]),
                row["label"],
                str(row["n"]),
                *(percent(row["values"].get(column["key"])) for column in table["columns"]),
                params,
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
    if board["overall"]:
        lines += [
            "## Overall (Borda count over the tables above)",
            "",
            "In a table of n ranked rows, rank r earns n − r points.",
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
                        "; ".join(row["flags"]),
                        " ".join(row["records"]),
                    ]
                )
    return buffer.getvalue()


def render_json(board: Mapping[str, Any]) -> str:
    return json.dumps(board, indent=2, sort_keys=False) + "\n"
