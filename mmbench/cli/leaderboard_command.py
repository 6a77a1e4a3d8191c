"""`mmbench leaderboard`: ranked tables (terminal, Markdown, CSV, JSON, HTML) from run records only."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from mmbench.atomic import existing_ancestor, write_failure_reason, write_text_atomic
from mmbench.console import stderr, stdout
from mmbench.errors import UserError
from mmbench.leaderboard.board import build_board, relative_record_paths
from mmbench.leaderboard.check import check_records
from mmbench.leaderboard.collect import collect_records
from mmbench.leaderboard.compare import compare_rows, comparison_cells, render_comparison_markdown
from mmbench.leaderboard.references import load_references
from mmbench.leaderboard.render_text import (
    FEW_SEEDS,
    delta_text,
    label_text,
    millions,
    p_text,
    rank_text,
    render_csv,
    render_json,
    render_markdown,
    selected_text,
    settings_line,
    statistics_line,
    steps_text,
    value_text,
)
from mmbench.leaderboard.reruns import pair_reruns, pair_row, render_reruns_markdown, reruns_summary, unpaired_lines

DEFAULT_RUNS = "runs"


def run(args: argparse.Namespace) -> int:
    roots = args.runs or [DEFAULT_RUNS]
    n_boot = getattr(args, "bootstrap", 2000)
    if n_boot < 1:
        raise UserError(f"--bootstrap {n_boot}: the number of bootstrap replicates must be at least 1 (default 2000)")
    seed = getattr(args, "bootstrap_seed", 0)
    if seed < 0:
        raise UserError(f"--bootstrap-seed {seed}: the bootstrap RNG seed must be 0 or more (default 0)")
    if getattr(args, "compare", None) and args.format not in ("md", "json"):
        raise UserError(f"--compare writes md (the terminal table) or json, not {args.format}; drop --format")
    if getattr(args, "rerun_of", None) and (args.format not in ("md", "json") or getattr(args, "compare", None)):
        raise UserError(f"--rerun-of writes md or json, alone; drop --format {args.format} or --compare")
    if args.out is not None:
        _check_out(Path(args.out), args.format)
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
        _check(records)
    if getattr(args, "compare", None):
        return _compare(args, records, n_boot)
    if getattr(args, "rerun_of", None):
        return _reruns(args, records)
    board = build_board(
        records,
        skipped,
        dataset=args.dataset,
        protocol=args.protocol,
        references=load_references(args.references),
        n_boot=n_boot,
        bootstrap_seed=getattr(args, "bootstrap_seed", 0),
    )
    for item in board["skipped"][len(skipped) :]:  # skipped by the board itself (smoke runs)
        errors.print(f"[yellow]skipped[/yellow] {item['path']}: {item['reason']}", highlight=False, soft_wrap=True)
    if not board["tables"]:
        wanted = " and ".join(
            f"{kind} {value!r}" for kind, value in (("dataset", args.dataset), ("protocol", args.protocol)) if value
        )
        if wanted:
            raise UserError(f"no records for {wanted}; drop the filter or check the names with 'mmbench list'")
        raise UserError(
            f"nothing to rank: all {len(board['skipped'])} records found were skipped (reasons above); "
            "smoke runs never reach a board: run without --smoke"
        )
    if args.out is None and args.format == "md" and sys.stdout.isatty():
        _print_rich(board)
        return 0
    if args.out is not None:
        relative_record_paths(board, Path(args.out).resolve().parent)
    text = _render(board, args.format, rebuild=_command(args, roots) if args.out else None)
    if args.out is None:
        sys.stdout.write(text)
    else:
        _write(args.out, text)
        errors.print(
            f"wrote {args.out} ({len(board['tables'])} tables, {board['records']} records)",
            highlight=False,
            soft_wrap=True,
        )
    return 0


def _check_out(out: Path, fmt: str) -> None:
    """`--out` names a file to write: refuse a folder, or a path under a file, before any work is done."""
    if out.is_dir():
        raise UserError(
            f"--out {out} is a folder; --out names the file to write, e.g. --out {out / ('leaderboard.' + fmt)}"
        )
    ancestor = existing_ancestor(out.parent)
    if not ancestor.is_dir():
        raise UserError(f"--out {out}: {ancestor} is a file, not a folder; pick another path for the board")


def _write(out: str, text: str) -> None:
    """Write the board (or comparison) atomically; a failed write is one line naming the path."""
    try:
        write_text_atomic(out, text)
    except OSError as exc:
        reason = write_failure_reason(exc) or type(exc).__name__
        raise UserError(f"--out {out}: cannot write it ({reason}); pick another path or free space") from exc


def _check(records: list) -> None:
    """`--check`: one line per disagreement and per part that could not be recomputed, then the verdict."""
    errors = stderr()
    report = check_records(records)
    for line in report.problems:
        errors.print(f"[red]mismatch[/red] {escape(line)}", highlight=False, soft_wrap=True)
    for line in report.unchecked:
        errors.print(f"[yellow]unchecked[/yellow] {escape(line)}", highlight=False, soft_wrap=True)
    if report.problems:
        raise UserError(
            f"{len(report.problems)} stored numbers of {len(report.bad_records)} records disagree with what their "
            f"confusion matrices and protocols give (first: {report.problems[0]}); those records were edited or "
            "corrupted: re-create them with 'mmbench eval CHECKPOINT'"
        )
    caveats = []
    if report.unchecked:
        caveats.append(f"{len(report.unchecked)} parts could not be recomputed (listed above as unchecked)")
    if report.fragile_as_stored:
        caveats.append(
            f"most_fragile's test metrics of {report.fragile_as_stored} records are as stored (the record holds no "
            "matrix of that scenario)"
        )
    head = "check passed: every scenario metric and aggregate"
    if report.unchecked:
        head = "check incomplete: every number that could be recomputed"
    errors.print(
        f"{head} of {len(records)} records ({report.scenarios} scenarios) follows from the confusion matrices and "
        "the protocol's own code" + "".join(f"; {caveat}" for caveat in caveats),
        highlight=False,
        soft_wrap=True,
    )


def _compare(args: argparse.Namespace, records: list, n_boot: int) -> int:
    """`--compare A B`: the paired comparison on every shared table (mmbench/leaderboard/compare.py)."""
    a, b = args.compare
    result = compare_rows(
        records,
        a,
        b,
        dataset=args.dataset,
        protocol=args.protocol,
        n_boot=n_boot,
        rng_seed=getattr(args, "bootstrap_seed", 0),
    )
    if args.format == "json":
        text = render_json(result)
    elif args.out is None and sys.stdout.isatty():
        _print_comparison(result)
        return 0
    else:
        text = render_comparison_markdown(result)
    if args.out is None:
        sys.stdout.write(text)
    else:
        _write(args.out, text)
    return 0


def _print_comparison(result: dict) -> None:
    console = stdout()
    for table in result["tables"]:
        caption = f"store: {table['store']}; seeds paired: {', '.join(map(str, table['seeds'])) or 'none'}"
        if table["reason"]:
            caption += f"; no interval: {table['reason']}"
        view = Table(
            title=escape(f"{result['a']} − {result['b']}: {table['dataset']} / {table['protocol']}"),
            caption=escape(caption),
            title_justify="left",
            caption_justify="left",
        )
        for name in ("column", "A − B (pp)", f"{100 * result['level']:.0f} % CI", "p"):
            view.add_column(name, justify="left" if name == "column" else "right")
        for entry in table["columns"]:
            view.add_row(escape(entry["label"]), *map(escape, comparison_cells(entry)))
        console.print(view)


def _command(args: argparse.Namespace, roots: list[str]) -> str:
    """The command that rebuilds this board (written into Markdown boards)."""
    parts = ["mmbench", "leaderboard", *map(str, roots)]
    for option in ("dataset", "protocol", "references"):
        if getattr(args, option):
            parts += [f"--{option}", str(getattr(args, option))]
    if getattr(args, "bootstrap", 2000) != 2000:
        parts += ["--bootstrap", str(args.bootstrap)]
    if getattr(args, "bootstrap_seed", 0) != 0:
        parts += ["--bootstrap-seed", str(args.bootstrap_seed)]
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
            caption=escape(settings_line(table) + (f"\n{statistics_line(table)}" if statistics_line(table) else "")),
            title_justify="left",
            caption_justify="left",
        )
        view.add_column("rank", justify="right")
        view.add_column("method", style="bold cyan")
        view.add_column("n", justify="right")
        for column in table["columns"]:
            view.add_column(column["label"], justify="right")
        for name in ("p vs best", "Δ vs best", "infer. params (M)", "s/step", "train s", "steps", "selected at"):
            view.add_column(name, justify="right")
        view.add_column("flags")
        for row in table["rows"]:
            budget = row.get("budget") or {}
            view.add_row(
                rank_text(row),
                escape(label_text(row)),
                str(row["n"]) + (f" [yellow]{FEW_SEEDS}[/yellow]" if row.get("few_seeds") else ""),
                *(escape(value_text(row["values"].get(column["key"]))) for column in table["columns"]),
                p_text(row),
                delta_text(row),
                millions(budget.get("params_inference")),
                "–" if budget.get("step_s") is None else f"{budget['step_s']:.3f}",
                "–" if budget.get("train_s") is None else f"{budget['train_s']:.0f}",
                steps_text(budget),
                selected_text(budget),
                "[yellow]" + "; ".join(row["flags"]) + "[/yellow]" if row["flags"] else "clean",
                style="green" if row.get("tied_with_best") else None,
            )
        for ref in table["references"]:
            view.add_row(
                "ref",
                f"{ref['method']} (published)",
                "",
                *([""] * (len(table["columns"]) + 6)),
                f"{ref['metric']} {ref['value']} — {ref['setting']} ({ref['provenance']})",
                style="dim",
            )
        console.print(view)
    across = board.get("across_tables") or {}
    if across.get("available"):
        view = Table(
            title="Across tables: average ranks (Friedman test, Nemenyi CD, Holm-Wilcoxon vs best)",
            caption=f"Friedman p = {across['friedman']['p_value']:.3g} over {len(across['blocks'])} blocks; "
            f"Nemenyi CD = {across['nemenyi_cd']:.2f}",
            title_justify="left",
            caption_justify="left",
        )
        for name in ("average rank", "method", "p vs best (Holm-Wilcoxon)"):
            view.add_column(name, justify="left" if name == "method" else "right")
        holm = across["wilcoxon_holm"]
        ranks = across["friedman"]["average_ranks"]
        for i in sorted(range(len(ranks)), key=lambda i: ranks[i]):
            name = across["methods"][i]
            p = holm["p_values"].get(name)
            view.add_row(f"{ranks[i]:.2f}", escape(name), "best" if name == holm["best"] else f"{p:.3g}")
        console.print(view)
    elif across:
        console.print(f"Across tables: not computed ({across.get('reason')})", highlight=False, soft_wrap=True)
    if board["overall"]:
        overall = Table(title="Overall (Borda count; descriptive)", title_justify="left")
        for name in ("rank", "method", "points", "tables"):
            overall.add_column(name, justify="left" if name == "method" else "right")
        for entry in board["overall"]:
            overall.add_row(f"{entry['rank']:g}", escape(entry["label"]), f"{entry['points']:g}", str(entry["tables"]))
        console.print(overall)


def _reruns(args: argparse.Namespace, reruns: list) -> int:
    """`--rerun-of DIR`: which records of RUNS_DIR give the numbers of the same run in DIR (reruns.py)."""
    originals, skipped = collect_records(args.rerun_of)
    for item in skipped:
        stderr().print(f"[yellow]skipped[/yellow] {item.path}: {item.reason}", highlight=False, soft_wrap=True)
    if not originals:
        raise UserError(f"--rerun-of {' '.join(args.rerun_of)}: no valid run records there; name the original runs")
    pairs, only_original, only_rerun = pair_reruns(originals, reruns)
    if not pairs:
        raise UserError(
            "no record pairs with one in --rerun-of (same configuration, seed, store and protocol settings): "
            "a rerun with a changed method config is a different configuration; compare those with --compare"
        )
    if args.format == "json":
        text = render_json(
            {
                "pairs": [pair_row(pair) for pair in pairs],
                "no_rerun": [str(item.path) for item in only_original],
                "no_original": [str(item.path) for item in only_rerun],
                "summary": reruns_summary(pairs, only_original, only_rerun),
            }
        )
    elif args.out is None and sys.stdout.isatty():
        _print_reruns(pairs, only_original, only_rerun)
        return 0
    else:
        text = render_reruns_markdown(pairs, only_original, only_rerun)
    if args.out is None:
        sys.stdout.write(text)
    else:
        _write(args.out, text)
    return 0


def _print_reruns(pairs: list, only_original: list, only_rerun: list) -> None:
    view = Table(
        title="reruns against their originals", caption=escape(reruns_summary(pairs, only_original, only_rerun))
    )
    names = (
        "method",
        "config",
        "seed",
        "protocol",
        "steps",
        "same numbers",
        "differs in",
        "not compared",
        "config keys in one",
    )
    for name in names:
        view.add_column(name, justify="right" if name in ("seed", "steps") else "left")
    view.add_column("config keys in one")
    for row in map(pair_row, pairs):
        view.add_row(
            *(escape(str(row[key])) for key in ("method", "config", "seed", "protocol")),
            str(row["steps"] or "–"),
            "[green]yes[/green]" if row["identical"] else "[red]no[/red]",
            escape(", ".join(row["differences"]) or "–"),
            escape(", ".join(row["not_compared"]) or "–"),
            escape(", ".join(row["config_keys_in_one"]) or "–"),
        )
    console = stdout()
    console.print(view)
    for line in unpaired_lines("no rerun", only_original) + unpaired_lines("no original", only_rerun):
        console.print(escape(line.removeprefix("- ")), highlight=False, soft_wrap=True)
