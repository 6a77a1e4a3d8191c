"""`mmbench leaderboard`: ranked tables (terminal, Markdown, CSV, JSON, HTML) from run records only."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rich.table import Table

from mmbench.atomic import write_text_atomic
from mmbench.console import stderr, stdout
from mmbench.errors import UserError
from mmbench.leaderboard.board import build_board, relative_record_paths
from mmbench.leaderboard.check import check_records
from mmbench.leaderboard.collect import collect_records
from mmbench.leaderboard.references import load_references
from mmbench.leaderboard.render_text import percent, render_csv, render_json, render_markdown, settings_line

DEFAULT_RUNS = "runs"


def run(args: argparse.Namespace) -> int:
    roots = args.runs or [DEFAULT_RUNS]
    records, skipped = collect_records(roots)
    errors = stderr()
    for item in skipped:
        errors.print(f"[yellow]skipped[/yellow] {item.path}: {item.reason}", highlight=False, soft_wrap=True)
    if not records:
        raise UserError(
            f"no valid run records under {', '.join(map(str, roots))} ({len(skipped)} skipped, reasons "
            "above); re-run or re-evaluate those runs"
        )
    if args.check:
        problems = check_records(records)
        for line in problems:
            errors.print(f"[red]mismatch[/red] {line}", highlight=False, soft_wrap=True)
        if problems:
            bad = len({line.split(": scenario", 1)[0] for line in problems})
            raise UserError(
                f"{len(problems)} stored metrics disagree with their confusion matrices in {bad} records; "
                "those records were edited or corrupted: re-create them with 'mmbench eval CHECKPOINT'"
            )
        scenarios = sum(len(item.record["scenarios"]) for item in records)
        errors.print(
            f"check passed: every metric of {len(records)} records ({scenarios} scenarios) follows from "
            "its confusion matrix",
            highlight=False,
            soft_wrap=True,
        )
    board = build_board(
        records, skipped, dataset=args.dataset, protocol=args.protocol, references=load_references(args.references)
    )
    for item in board["skipped"][len(skipped) :]:  # skipped by the board itself (smoke runs)
        errors.print(f"[yellow]skipped[/yellow] {item['path']}: {item['reason']}", highlight=False, soft_wrap=True)
    if not board["tables"]:
        wanted = " and ".join(
            f"{kind} {value!r}" for kind, value in (("dataset", args.dataset), ("protocol", args.protocol)) if value
        )
        raise UserError(f"no records for {wanted}; drop the filter or check the names with 'mmbench list'")
    if args.out is None and args.format == "md" and sys.stdout.isatty():
        _print_rich(board)
        return 0
    if args.out is not None:
        relative_record_paths(board, Path(args.out).resolve().parent)
    text = _render(board, args.format, rebuild=_command(args, roots) if args.out else None)
    if args.out is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(args.out, text)
        errors.print(
            f"wrote {args.out} ({len(board['tables'])} tables, {board['records']} records)",
            highlight=False,
            soft_wrap=True,
        )
    return 0


def _command(args: argparse.Namespace, roots: list[str]) -> str:
    """The command that rebuilds this board (written into Markdown boards)."""
    parts = ["mmbench", "leaderboard", *map(str, roots)]
    for option in ("dataset", "protocol", "references"):
        if getattr(args, option):
            parts += [f"--{option}", str(getattr(args, option))]
    parts += ["--format", args.format, "--out", str(args.out)]
    return " ".join(shlex.quote(part) for part in parts)


def _render(board: dict, fmt: str, rebuild: str | None) -> str:
    if fmt == "md":
        return render_markdown(board, rebuild=rebuild)
    if fmt == "csv":
        return render_csv(board)
    if fmt == "json":
        return render_json(board)
    from mmbench.leaderboard.render_html import render_html

    return render_html(board)


def _print_rich(board: dict) -> None:
    console = stdout()
    for table in board["tables"]:
        view = Table(
            title=f"{table['dataset']['name']} / {table['protocol']['name']} v{table['protocol']['version']}",
            caption=settings_line(table),
            title_justify="left",
            caption_justify="left",
        )
        view.add_column("rank", justify="right")
        view.add_column("method", style="bold cyan")
        view.add_column("n", justify="right")
        for column in table["columns"]:
            view.add_column(column["label"], justify="right")
        view.add_column("flags")
        for row in table["rows"]:
            view.add_row(
                "–" if row["rank"] is None else f"{row['rank']:g}",
                row["label"],
                str(row["n"]),
                *(percent(row["values"].get(column["key"])) for column in table["columns"]),
                "[yellow]" + "; ".join(row["flags"]) + "[/yellow]" if row["flags"] else "clean",
            )
        for ref in table["references"]:
            view.add_row(
                "ref",
                f"{ref['method']} (published)",
                "",
                *([""] * len(table["columns"])),
                f"{ref['metric']} {ref['value']} — {ref['setting']} ({ref['provenance']})",
                style="dim",
            )
        console.print(view)
    if board["overall"]:
        overall = Table(title="Overall (Borda count)", title_justify="left")
        for name in ("rank", "method", "points", "tables"):
            overall.add_column(name, justify="left" if name == "method" else "right")
        for entry in board["overall"]:
            overall.add_row(f"{entry['rank']:g}", entry["label"], f"{entry['points']:g}", str(entry["tables"]))
        console.print(overall)
