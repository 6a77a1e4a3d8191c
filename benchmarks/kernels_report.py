"""Render a `mmbench bench kernels` JSON result as the Markdown tables of docs/results/kernels.md.

Usage: `python benchmarks/kernels_report.py RESULT.json [MORE.json ...]` (several files: one column
of medians per file, to show run-to-run spread). Numbers are copied from the JSON, never typed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"


def header(document: dict[str, Any]) -> str:
    env = document["env"]
    git = document["git"]
    return (
        f"- {document['created']}, `{document['command']}`, device {document['device']} "
        f"({env.get('device_name') or env['cpu']}, {env['cpu_count']} CPUs, {env['torch_threads']} torch threads), "
        f"torch {env['torch']}, triton {env['triton']}, commit {str(git.get('commit'))[:10]}"
        f"{' (dirty)' if git.get('dirty') else ''}; device-copy bandwidth "
        f"{document['copy_bandwidth_gbps']:.1f} GB/s"
    )


def main_table(document: dict[str, Any]) -> str:
    rows = document["results"]
    naive = {(r["op"], r["problem"]): r["median_ms"] for r in rows if r["provider"] == "naive"}
    lines = [
        "| op | problem | provider | median ms | p20-p80 ms | vs naive | GB/s | % copy BW | GFLOP/s | peak MB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["error"]:
            lines.append(f"| {r['op']} | {r['problem']} | {r['provider']} | {r['error']} | | | | | | |")
            continue
        base = naive.get((r["op"], r["problem"]))
        peak = r["peak_memory_bytes"]
        lines.append(
            f"| {r['op']} | {r['problem']} | {r['provider']} | {_number(r['median_ms'])} | "
            f"{_number(r['p20_ms'])}-{_number(r['p80_ms'])} | {base / r['median_ms']:.1f}x | {_number(r['gbps'])} | "
            f"{_number(100 * r['copy_fraction'] if r['copy_fraction'] is not None else None, 2)} | "
            f"{_number(r['gflops'])} | {_number(peak / 1e6 if peak is not None else None)} |"
        )
    return "\n".join(lines)


def targets_table(document: dict[str, Any]) -> str:
    lines = ["| target | measured | needed | met |", "|---|---:|---:|---|"]
    for t in document["targets"]:
        unit = t["unit"]
        value = f"{t['value']:.1f}{unit}" if unit else f"{100 * t['value']:.0f}%"
        needed = f">= {t['threshold']:.0f}{unit}" if unit else f">= {100 * t['threshold']:.0f}%"
        lines.append(f"| {t['name']} | {value} | {needed} | {'yes' if t['met'] else 'no'} |")
    return "\n".join(lines)


def spread_table(documents: list[dict[str, Any]]) -> str:
    """Reference vs naive speed-up per run: how much a shared 2-core machine moves the ratios."""
    lines = [
        "| op | problem | " + " | ".join(f"run {i + 1}: naive / reference" for i in range(len(documents))) + " |",
        "|---|---|" + "---:|" * len(documents),
    ]
    keys = [(r["op"], r["problem"]) for r in documents[0]["results"] if r["provider"] == "reference"]
    for op, problem in keys:
        cells = []
        for document in documents:
            found = {
                r["provider"]: r["median_ms"]
                for r in document["results"]
                if (r["op"], r["problem"]) == (op, problem) and r["median_ms"]
            }
            if "naive" not in found or "reference" not in found:
                cells.append("-")
                continue
            ratio = found["naive"] / found["reference"]
            cells.append(f"{found['naive']:.3g} / {found['reference']:.3g} ms = {ratio:.1f}x")
        lines.append(f"| {op} | {problem} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(paths: list[str]) -> int:
    documents = [json.loads(Path(path).read_text()) for path in paths]
    for document in documents:
        print(header(document))
    print()
    print(main_table(documents[-1]))
    print()
    print(targets_table(documents[-1]))
    if len(documents) > 1:
        print()
        print(spread_table(documents))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
