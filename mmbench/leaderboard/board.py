"""Group records into comparable tables, aggregate seeds, rank rows, and rank methods across tables.

Two records share a table only if every setting that can change a number is equal: dataset (name and
fingerprint), protocol name and version, and the protocol's resolved settings (split, part, label
variant, classes scored, window, stride, modalities, thresholds, probabilities...). Within a table,
records of the same method, method version and configuration (the resolved config without the run
section: seed, device and output folder do not define a method) are seeds of one row.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mmbench.leaderboard.across_tables import across_tables
from mmbench.leaderboard.budget import FINAL_STEP, row_budget, selected_final_step
from mmbench.leaderboard.collect import LoadedRecord, Skipped
from mmbench.leaderboard.table_statistics import annotate_table

# Settings that describe how a number was computed but not which number: never split tables on them.
NON_DEFINING_SETTINGS = ("batch_size", "accumulation", "absent_class_policy", "missing_input_fill", "minority_classes")
MAX_SCENARIO_COLUMNS = 16  # random draws (random-drop, pixel-drop) are summarised, not listed
MINORITY_CLASS = "car"  # the small-object class papers report separately (car F1)
# The column a protocol's table is ranked by (default: mean mIoU over its scenarios).
PRIMARY_COLUMNS = {"minority": "minority mean"}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


def table_key(record: Mapping[str, Any]) -> dict[str, Any]:
    settings = {
        key: value
        for key, value in (record["protocol"].get("settings") or {}).items()
        if key not in NON_DEFINING_SETTINGS
    }
    dataset = record["dataset"]
    return {
        "dataset": {"name": dataset["name"], "fingerprint": dataset["fingerprint"] or "unknown"},
        "protocol": {"name": record["protocol"]["name"], "version": record["protocol"]["version"]},
        "settings": settings,
    }


def config_id(record: Mapping[str, Any]) -> str:
    """Which configuration of the method: its name, version and resolved method config (the seed, the
    device and the protocol it is evaluated under do not define a method)."""
    return _digest(
        {
            "method": record["method"]["name"],
            "version": record["method"]["version"],
            "config": record["config"].get("method"),
        }
    )


def _mean_metric(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None and math.isfinite(v)]
    return sum(present) / len(present) if present else None


def record_values(record: Mapping[str, Any]) -> dict[str, float | None]:
    """The numbers of one record, by column key (fractions in [0, 1])."""
    scenarios = record["scenarios"]
    aggregate = record.get("aggregate") or {}
    values: dict[str, float | None] = {}
    if len(scenarios) <= MAX_SCENARIO_COLUMNS:
        for scenario in scenarios:
            values[f"scenario:{scenario['name']}"] = scenario["metrics"]["miou"]
    mean = aggregate.get("mean")
    worst = aggregate.get("worst")
    values["mean"] = (
        mean["miou"]
        if isinstance(mean, Mapping) and "miou" in mean
        else _mean_metric(s["metrics"]["miou"] for s in scenarios)
    )
    if isinstance(worst, Mapping) and "miou" in worst:
        values["worst"] = worst["miou"]
    else:
        present = [s["metrics"]["miou"] for s in scenarios if s["metrics"]["miou"] is not None]
        values["worst"] = min(present) if present else None
    for name, expectation in (aggregate.get("expectation") or {}).items():
        values[f"E({name})"] = expectation.get("miou")
    minority = aggregate.get("minority_miou")
    if isinstance(minority, Mapping):
        values["minority mean"] = minority.get("mean")
        values["minority worst"] = minority.get("worst")
    f1 = [(s["metrics"].get("per_class") or {}).get(MINORITY_CLASS, {}).get("f1") for s in scenarios]
    if any(value is not None for value in f1):
        values[f"{MINORITY_CLASS} F1"] = _mean_metric(f1)
    return values


def _summary(values: Sequence[float | None]) -> dict[str, Any]:
    present = [v for v in values if v is not None and math.isfinite(v)]
    if not present:
        return {"mean": None, "std": None, "n": 0}
    std = statistics.stdev(present) if len(present) > 1 else None
    return {"mean": sum(present) / len(present), "std": std, "n": len(present)}


def _ranks(scores: Sequence[float | None]) -> list[float | None]:
    """Competition ranks, best (highest) first; ties share the mean of their positions; None is unranked."""
    order = sorted((s for s in scores if s is not None), reverse=True)
    ranks: list[float | None] = []
    for score in scores:
        if score is None:
            ranks.append(None)
            continue
        first = order.index(score) + 1
        last = len(order) - order[::-1].index(score)
        ranks.append((first + last) / 2)
    return ranks


COMPLETE_DATA_ONLY = "trained on complete data only"


def _trained_for_missing(records: Sequence[LoadedRecord]) -> bool | None:
    """The rows' training regime from the records (`method.trained_for_missing`); None when no record
    says (records written before the field existed)."""
    values = {item.record["method"].get("trained_for_missing") for item in records} - {None}
    return None if not values else all(values)


def _flags(records: Sequence[LoadedRecord]) -> list[str]:
    """What a reader must know about a row: why its numbers may not be reproducible from one source tree,
    and a model that never saw a missing modality in training, ranked on missing-modality tables."""
    flags = []
    if _trained_for_missing(records) is False:
        flags.append(COMPLETE_DATA_ONLY)
    final = [item for item in records if selected_final_step(item.record)]
    if final:
        flags.append(
            FINAL_STEP if len(final) == len(records) else f"{FINAL_STEP} ({len(final)} of {len(records)} records)"
        )
    dirty = [item for item in records if item.record["git"]["dirty"]]
    if dirty:
        flags.append(f"dirty git tree ({len(dirty)} of {len(records)} records)")
    if any(item.record["git"]["commit"] is None or item.record["git"]["dirty"] is None for item in records):
        flags.append("unknown git state")
    versions = sorted({str(item.record["env"].get("mmbench")) for item in records})
    if len(versions) > 1:
        flags.append(f"mixed mmbench versions {', '.join(versions)}")
    commits = sorted({str(item.record["git"]["commit"])[:8] for item in records})
    if len(commits) > 1:
        flags.append(f"{len(commits)} git commits")
    seeds = [item.record["seed"] for item in records]
    if len(set(seeds)) < len(seeds):
        flags.append("repeated seed")
    return flags


def _row(records: list[LoadedRecord], columns: list[str], labels: Mapping[str, str]) -> dict[str, Any]:
    first = records[0].record
    values = {column: _summary([record_values(item.record).get(column) for item in records]) for column in columns}
    per_class_f1: dict[str, dict[str, float | None]] = {}
    for scenario in first["scenarios"][:MAX_SCENARIO_COLUMNS]:
        name = scenario["name"]
        per_class_f1[name] = {}
        for class_name in scenario["metrics"].get("per_class") or {}:
            f1s = []
            for item in records:
                match = next((s for s in item.record["scenarios"] if s["name"] == name), None)
                per_class = {} if match is None else match["metrics"].get("per_class") or {}
                f1s.append(per_class.get(class_name, {}).get("f1"))
            per_class_f1[name][class_name] = _summary(f1s)["mean"]
    return {
        "method": first["method"]["name"],
        "label": labels[config_id(first)],
        "version": first["method"]["version"],
        "config_id": config_id(first),
        "paper": first["method"].get("paper"),
        "params": first["method"].get("params"),
        "budget": row_budget(records),
        "trained_for_missing": _trained_for_missing(records),
        "seeds": sorted(item.record["seed"] for item in records),
        "n": len(records),
        "values": values,
        "per_class_f1": per_class_f1,
        "records": [str(item.path) for item in records],
        "commits": sorted({str(item.record["git"]["commit"]) for item in records}),
        "mmbench": sorted({str(item.record["env"].get("mmbench")) for item in records}),
        "flags": _flags(records),
    }


def _column_order(records: Sequence[LoadedRecord]) -> list[str]:
    seen: dict[str, None] = {}
    for item in records:
        for key in record_values(item.record):
            seen.setdefault(key, None)
    scenario = [key for key in seen if key.startswith("scenario:")]
    rest = [key for key in seen if not key.startswith("scenario:")]
    return scenario + rest


def _labels(records: Sequence[LoadedRecord]) -> dict[str, str]:
    """Row labels: the configuration's display name (`run.label`, which `mmbench sweep` sets from the suite)
    when all its records agree on one and no other configuration uses it; otherwise the method name, plus
    the config id when one method appears with several configs."""
    configs: dict[str, set[str]] = {}
    names: dict[str, set[str]] = {}
    for item in records:
        identifier = config_id(item.record)
        configs.setdefault(item.record["method"]["name"], set()).add(identifier)
        names.setdefault(identifier, set()).add(str((item.record["config"].get("run") or {}).get("label") or ""))
    chosen = {key: next(iter(given)) for key, given in names.items() if len(given) == 1 and "" not in given}
    taken = list(chosen.values())
    labels = {}
    for method, ids in configs.items():
        for identifier in ids:
            if identifier in chosen and taken.count(chosen[identifier]) == 1:
                labels[identifier] = chosen[identifier]
            else:
                labels[identifier] = method if len(ids) == 1 else f"{method} [{identifier}]"
    return labels


def _table(
    key: Mapping[str, Any],
    records: list[LoadedRecord],
    labels: Mapping[str, str],
    references: Sequence[Mapping[str, Any]],
    n_boot: int,
    bootstrap_seed: int,
) -> dict[str, Any]:
    columns = _column_order(records)
    groups: dict[str, list[LoadedRecord]] = {}
    for item in sorted(records, key=lambda item: (item.record["method"]["name"], item.record["seed"])):
        groups.setdefault(config_id(item.record), []).append(item)
    rows = [_row(group, columns, labels) for group in groups.values()]
    primary = PRIMARY_COLUMNS.get(key["protocol"]["name"], "mean")
    if primary not in columns:
        primary = "mean"
    ranks = _ranks([row["values"][primary]["mean"] for row in rows])
    for row, rank in zip(rows, ranks, strict=True):
        row["rank"] = rank
    rows.sort(key=lambda row: (row["rank"] is None, row["rank"] or 0.0, row["label"]))
    first = records[0].record
    scenario_names = [s["name"] for s in first["scenarios"]][:MAX_SCENARIO_COLUMNS]
    classes = list(first["scenarios"][0]["metrics"].get("per_class") or {}) if first["scenarios"] else []
    identifier = f"{key['dataset']['name']}/{key['protocol']['name']}/{_digest(key)}"
    table = {
        "id": identifier,
        "dataset": key["dataset"],
        "protocol": key["protocol"],
        "settings": key["settings"],
        "columns": [
            {
                "key": column,
                "label": column.removeprefix("scenario:"),
                "kind": "scenario" if column.startswith("scenario:") else "aggregate",
            }
            for column in columns
        ],
        "primary": primary,
        "scenarios": scenario_names if len(first["scenarios"]) <= MAX_SCENARIO_COLUMNS else [],
        "classes": classes,
        "rows": rows,
        "references": [
            dict(ref)
            for ref in references
            if ref["dataset"] == key["dataset"]["name"] and ref["protocol"] in (None, key["protocol"]["name"])
        ],
    }
    annotate_table(table, groups, n_boot=n_boot, rng_seed=bootstrap_seed)
    return table


def borda(tables: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Overall rank across tables (MTEB-style Borda count): in a table of n ranked rows a row at rank r
    earns n - r points; a method's points are summed over the tables it appears in."""
    points: dict[str, float] = {}
    appearances: dict[str, int] = {}
    for table in tables:
        ranked = [row for row in table["rows"] if row["rank"] is not None]
        for row in ranked:
            points[row["label"]] = points.get(row["label"], 0.0) + len(ranked) - row["rank"]
            appearances[row["label"]] = appearances.get(row["label"], 0) + 1
    labels = list(points)
    ranks = _ranks([points[label] for label in labels])
    overall = [
        {"label": label, "points": points[label], "tables": appearances[label], "rank": rank}
        for label, rank in zip(labels, ranks, strict=True)
    ]
    overall.sort(key=lambda entry: (entry["rank"], entry["label"]))
    return overall


def build_board(
    records: Sequence[LoadedRecord],
    skipped: Sequence[Skipped] = (),
    *,
    dataset: str | None = None,
    protocol: str | None = None,
    references: Sequence[Mapping[str, Any]] = (),
    n_boot: int = 2000,
    bootstrap_seed: int = 0,
) -> dict[str, Any]:
    """The whole leaderboard as plain data (what `--format json` writes and every renderer reads).

    `n_boot` bootstrap replicates (and as many permutations) drawn from `bootstrap_seed`: the same records
    give the same board, byte for byte. A record whose per-unit matrices are corrupt raises RecordError
    naming its file."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    skipped = [
        *skipped,
        *(
            Skipped(item.path, "smoke run (a pipeline check on 3 steps, not a result)")
            for item in records
            if item.record.get("smoke")
        ),
    ]
    chosen = [
        item
        for item in records
        if not item.record.get("smoke")
        and (dataset is None or item.record["dataset"]["name"] == dataset)
        and (protocol is None or item.record["protocol"]["name"] == protocol)
    ]
    labels = _labels(chosen)
    grouped: dict[str, tuple[dict[str, Any], list[LoadedRecord]]] = {}
    for item in chosen:
        key = table_key(item.record)
        grouped.setdefault(json.dumps(key, sort_keys=True, default=str), (key, []))[1].append(item)
    tables = [_table(key, items, labels, references, n_boot, bootstrap_seed) for key, items in grouped.values()]
    tables.sort(key=lambda table: (table["dataset"]["name"], table["protocol"]["name"], table["id"]))
    return {
        "tables": tables,
        "overall": borda(tables),
        "overall_note": "descriptive: a Borda count of the per-table ranks, not a test",
        "across_tables": across_tables(tables),
        "statistics": {"n_boot": n_boot, "n_permutations": n_boot, "rng_seed": bootstrap_seed, "level": 0.95},
        "skipped": [{"path": str(item.path), "reason": item.reason} for item in skipped],
        "filters": {"dataset": dataset, "protocol": protocol},
        "records": len(chosen),
    }


def relative_record_paths(board: dict[str, Any], base: Path) -> None:
    """Rewrite record paths relative to `base` (the output file's folder), so committed boards link."""
    import os

    for table in board["tables"]:
        for row in table["rows"]:
            row["records"] = [os.path.relpath(path, base) for path in row["records"]]
