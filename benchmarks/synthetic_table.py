"""Render docs/results/synthetic.md's table from run records (numbers copied, never typed).

Usage: `python benchmarks/synthetic_table.py RECORD.json ...` — any mix of `last1`, `subsets` and
`minority` records; rows are methods (first-seen order), columns come from each protocol's aggregate.
The records come from (one seed, default CPU configs, the default synthetic store):

    mmbench run METHOD --protocol last1 --seed 0 --out runs
    mmbench eval runs/synthetic/last1/METHOD/<run>/best.ckpt --protocol subsets --out runs
    mmbench eval runs/synthetic/last1/METHOD/<run>/best.ckpt --protocol minority --out runs
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def collect(paths: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """method -> protocol -> record."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for path in paths:
        record = json.loads(Path(path).read_text())
        method, protocol = record["method"]["name"], record["protocol"]["name"]
        table.setdefault(method, {})[protocol] = record
    return table


def row(method: str, records: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(header cells, value cells) for one method."""
    headers, cells = [], []
    last1 = records.get("last1")
    if last1:
        for name, miou in last1["aggregate"]["per_scenario_miou"].items():
            headers.append(f"last1 {name}")
            cells.append(percent(miou))
        headers += ["last1 mean", "last1 worst"]
        cells += [percent(last1["aggregate"]["mean"]["miou"]), percent(last1["aggregate"]["worst"]["miou"])]
    subsets = records.get("subsets")
    if subsets:
        full = max(subsets["scenarios"], key=lambda s: len(s["available"]))
        headers += ["subsets mean", "subsets worst", "full set"]
        cells += [
            percent(subsets["aggregate"]["mean"]["miou"]),
            percent(subsets["aggregate"]["worst"]["miou"]),
            percent(full["metrics"]["miou"]),
        ]
    minority = records.get("minority")
    if minority:
        headers += ["minority mIoU mean / worst"]
        aggregate = minority["aggregate"]["minority_miou"]
        cells += [f"{percent(aggregate['mean'])} / {percent(aggregate['worst'])}"]
    trained = last1 or subsets or minority or {}
    headers += ["params (M)", "train s"]
    params = trained.get("method", {}).get("params")
    seconds = trained.get("timing", {}).get("train_s")
    cells.append(f"{params / 1e6:.2f}" if isinstance(params, int) else "-")
    cells.append(f"{seconds:.0f}" if isinstance(seconds, (int, float)) else "-")
    return headers, [method, *cells]


def main(paths: list[str]) -> int:
    table = collect(paths)
    header: list[str] | None = None
    lines = []
    for method, records in table.items():
        cells_header, cells = row(method, records)
        if header is None:
            header = cells_header
        elif cells_header != header:
            raise SystemExit(f"{method}: its records give columns {cells_header}, expected {header}")
        lines.append("| " + " | ".join(cells) + " |")
    if header is None:
        raise SystemExit("no records given")
    print("| method | " + " | ".join(header) + " |")
    print("|---|" + "---:|" * len(header))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
