"""`mmbench leaderboard RECORDS --compare A B`: two board rows compared on every table they share.

Per shared table (same dataset, protocol and settings: board.table_key) the difference A − B of the
primary column and of each scenario's mIoU, paired by seed and evaluation unit
(statistics.paired_comparison: paired hierarchical-bootstrap interval, paired permutation p-value). Only
seeds both rows ran are paired; the others are listed. Tables whose records carry no per-unit matrices
give the difference of the stored means with no interval and say why. docs/leaderboard.md ("--compare").
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from mmbench.errors import RecordError, UserError
from mmbench.leaderboard import statistics as st
from mmbench.leaderboard.board import (
    MAX_SCENARIO_COLUMNS,
    PRIMARY_COLUMNS,
    _digest,
    _labels,
    config_id,
    record_values,
    store_summary,
    table_key,
)
from mmbench.leaderboard.collect import LoadedRecord
from mmbench.leaderboard.table_statistics import LEVEL, table_units


def _resolve(name: str, rows: Mapping[str, tuple[str, str]]) -> str:
    """The config id of the row called `name`: its board label, its config id, `method [config id]`, or
    a method name that has one configuration on the board. `rows`: config id -> (label, method)."""
    for identifier, (label, method) in rows.items():
        if name in (label, identifier, f"{method} [{identifier}]"):
            return identifier
    matches = [identifier for identifier, (_, method) in rows.items() if method == name]
    available = ", ".join(sorted(label for label, _ in rows.values()))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UserError(
            f"{name!r} has {len(matches)} configurations on this board; name one: "
            + ", ".join(sorted(rows[m][0] for m in matches))
        )
    raise UserError(f"no board row is labelled {name!r}; available labels: {available}")


def _chosen(records: Sequence[LoadedRecord], dataset: str | None, protocol: str | None) -> list[LoadedRecord]:
    return [
        item
        for item in records
        if not item.record.get("smoke")
        and (dataset is None or item.record["dataset"]["name"] == dataset)
        and (protocol is None or item.record["protocol"]["name"] == protocol)
    ]


def compare_rows(
    records: Sequence[LoadedRecord],
    a: str,
    b: str,
    *,
    dataset: str | None = None,
    protocol: str | None = None,
    n_boot: int = 2000,
    rng_seed: int = 0,
) -> dict[str, Any]:
    """The comparison as plain data (what `--format json` writes)."""
    chosen = _chosen(records, dataset, protocol)
    labels = _labels(chosen)
    rows = {config_id(item.record): (labels[config_id(item.record)], item.record["method"]["name"]) for item in chosen}
    id_a, id_b = _resolve(a, rows), _resolve(b, rows)
    if id_a == id_b:
        raise UserError(f"{a!r} and {b!r} are the same row ({rows[id_a][0]}); name two different rows")
    tables: dict[str, tuple[dict[str, Any], dict[str, list[LoadedRecord]]]] = {}
    for item in sorted(chosen, key=lambda item: (item.record["seed"], str(item.path))):
        identifier = config_id(item.record)
        if identifier in (id_a, id_b):
            key = table_key(item.record)
            entry = tables.setdefault(json.dumps(key, sort_keys=True, default=str), (key, {id_a: [], id_b: []}))
            entry[1][identifier].append(item)
    shared = [(key, groups) for key, groups in tables.values() if groups[id_a] and groups[id_b]]
    label_a, label_b = rows[id_a][0], rows[id_b][0]
    if not shared:
        where = {
            label: sorted({f"{k['dataset']['name']}/{k['protocol']['name']}" for k, g in tables.values() if g[ident]})
            for label, ident in ((label_a, id_a), (label_b, id_b))
        }
        raise UserError(
            f"{label_a} and {label_b} share no table (same dataset, protocol and settings): {label_a} is in "
            f"{', '.join(where[label_a])}; {label_b} is in {', '.join(where[label_b])}; "
            "evaluate both under one protocol"
        )
    out = [_compare_table(key, groups, id_a, id_b, n_boot, rng_seed) for key, groups in shared]
    out.sort(key=lambda table: (table["dataset"], table["store"], table["protocol"], table["id"]))
    return {
        "a": label_a,
        "b": label_b,
        "n_boot": n_boot,
        "n_permutations": n_boot,
        "rng_seed": rng_seed,
        "level": LEVEL,
        "tables": out,
    }


def _stored_difference(groups: Mapping[str, Sequence[LoadedRecord]], id_a: str, id_b: str, column: str) -> Any:
    """Mean over the paired seeds of the stored values, A − B (no matrices: no interval)."""
    values = {
        ident: {item.record["seed"]: record_values(item.record).get(column) for item in groups[ident]}
        for ident in (id_a, id_b)
    }
    common = [seed for seed in values[id_a] if seed in values[id_b]]
    pairs = [(values[id_a][s], values[id_b][s]) for s in common]
    pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
    return sum(x - y for x, y in pairs) / len(pairs) if pairs else None


def _compare_table(
    key: Mapping[str, Any],
    groups: dict[str, list[LoadedRecord]],
    id_a: str,
    id_b: str,
    n_boot: int,
    rng_seed: int,
) -> dict[str, Any]:
    first = groups[id_a][0].record
    primary = PRIMARY_COLUMNS.get(key["protocol"]["name"], "mean")
    if primary not in record_values(first):
        primary = "mean"
    scenarios = [s["name"] for s in first["scenarios"]] if len(first["scenarios"]) <= MAX_SCENARIO_COLUMNS else []
    seeds_a = [item.record["seed"] for item in groups[id_a]]
    seeds_b = [item.record["seed"] for item in groups[id_b]]
    table: dict[str, Any] = {
        "id": f"{key['dataset']['name']}/{key['protocol']['name']}/{_digest(key)}",
        "dataset": key["dataset"]["name"],
        "store": store_summary(first),
        "protocol": f"{key['protocol']['name']} v{key['protocol']['version']}",
        "primary": primary,
        "seeds": [seed for seed in seeds_a if seed in seeds_b],
        "dropped_a": [seed for seed in seeds_a if seed not in seeds_b],
        "dropped_b": [seed for seed in seeds_b if seed not in seeds_a],
        "reason": None,
        "columns": [],
    }
    columns: list[tuple[str, Any]] = [(primary, "mean")] + [(f"scenario:{name}", i) for i, name in enumerate(scenarios)]
    units, reason = table_units(groups)
    if not table["seeds"]:
        reason = "the two rows share no seed: nothing to pair"
    if units is None or reason:
        table["reason"] = reason
        for column, _ in columns:
            table["columns"].append(_entry(column, _stored_difference(groups, id_a, id_b, column), None, None, None))
        return table
    for column, statistic in columns:
        mask = units.scored if column != "minority mean" else units.minority
        if mask is None:
            table["columns"].append(_entry(column, _stored_difference(groups, id_a, id_b, column), None, None, None))
            continue
        try:
            result = st.paired_comparison(
                units.rows[id_a], units.rows[id_b], mask, n_boot, n_boot, LEVEL, rng_seed, statistic
            )
        except RecordError as exc:
            table["reason"] = str(exc)
            table["columns"].append(_entry(column, None, None, None, None))
            continue
        table["columns"].append(_entry(column, result.difference, result.low, result.high, result.p_value))
    return table


def _entry(column: str, difference: Any, low: Any, high: Any, p: Any) -> dict[str, Any]:
    return {
        "column": column,
        "label": column.removeprefix("scenario:"),
        "difference": difference,
        "low": low,
        "high": high,
        "p_value": p,
    }


def _pp(value: Any) -> str:
    return "–" if value is None else f"{100 * value:+.2f}"


def comparison_cells(entry: Mapping[str, Any]) -> list[str]:
    """(A − B, 95 % CI, p) in percentage points, as the terminal and Markdown show them."""
    interval = "–" if entry["low"] is None else f"[{_pp(entry['low'])}, {_pp(entry['high'])}]"
    p = "–" if entry["p_value"] is None else f"{entry['p_value']:.3g}"
    return [_pp(entry["difference"]), interval, p]


def render_comparison_markdown(result: Mapping[str, Any]) -> str:
    lines = [
        f"# {result['a']} − {result['b']}",
        "",
        "Differences in mIoU percentage points (A − B), paired by seed and evaluation unit; "
        f"{100 * result['level']:.0f} % "
        f"paired-bootstrap interval ({result['n_boot']} replicates), paired permutation p-value "
        f"({result['n_permutations']} permutations), RNG seed {result['rng_seed']}.",
        "",
    ]
    for table in result["tables"]:
        lines += [f"## {table['dataset']} / {table['protocol']}", "", f"store: {table['store']}", ""]
        seeds = f"seeds paired: {', '.join(map(str, table['seeds'])) or 'none'}"
        for side, key in (("A", "dropped_a"), ("B", "dropped_b")):
            if table[key]:
                seeds += f"; only {side}: {', '.join(map(str, table[key]))}"
        lines += [seeds + (f". No interval: {table['reason']}." if table["reason"] else "."), ""]
        lines += ["| column | A − B (pp) | 95 % CI | p |", "|---|---:|---:|---:|"]
        for entry in table["columns"]:
            lines.append("| " + " | ".join([entry["label"], *comparison_cells(entry)]) + " |")
        lines.append("")
    return "\n".join(lines)
