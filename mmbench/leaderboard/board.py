"""Group records into comparable tables, aggregate seeds, rank rows, and rank methods across tables.

Two records share a table only if every setting that can change a number is equal: dataset (name and
fingerprint), protocol name and version, and the protocol's resolved settings (split, part, label
variant, classes scored, window, stride, modalities, thresholds, probabilities...). Within a table,
records of the same method, method version, configuration (the resolved config without the run
section: seed, device and output folder do not define a method) and training store are seeds of one row.

The training store (issue 18): a checkpoint trained on one store and evaluated on another
(`mmbench eval CHECKPOINT --dataset OTHER.h5`) is a transfer, never a seed of the model trained on the
evaluated store; its row is labelled "(trained on NAME)" and flagged. Records name their training store in
`method.trained_on` ({name, fingerprint}); older `mmbench eval` records in `method.checkpoint.trained_on`
(name) and `trained_on_fingerprint`; records without either are taken to be trained on the evaluated store.
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
from mmbench.leaderboard.budget import final_step_flag, row_budget, validation_curves
from mmbench.leaderboard.collect import LoadedRecord, Skipped
from mmbench.leaderboard.table_statistics import annotate_table
from mmbench.records.environment import cpu_signature

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


def store_summary(record: Mapping[str, Any]) -> str:
    """Which store a record was evaluated on, in words: name, fingerprint prefix and the dataset config's scalar
    settings (e.g. the synthetic benchmark's `redundancy`). Two tables of one dataset name differ by store
    (table_key); without this a reader of `--compare` cannot tell which table is which level."""
    dataset = record["dataset"]
    settings = (record.get("config") or {}).get("dataset") or {}
    shown = ", ".join(
        f"{key}={value}"
        for key, value in sorted(settings.items())
        if isinstance(value, (bool, int, float, str)) and key not in ("path", "root")
    )
    fingerprint = (dataset.get("fingerprint") or "unknown")[:15]
    return f"{dataset['name']}" + (f" ({shown})" if shown else "") + f" {fingerprint}…"


def training_store(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The store the evaluated weights were trained on, {name, fingerprint}; None when the record does not
    say (records written before issue 18 by `mmbench run`, or a checkpoint without dataset metadata)."""
    method = record["method"]
    trained = method.get("trained_on")
    if isinstance(trained, Mapping) and trained.get("fingerprint"):
        return {"name": trained.get("name"), "fingerprint": trained["fingerprint"]}
    checkpoint = method.get("checkpoint")
    if isinstance(checkpoint, Mapping) and checkpoint.get("trained_on_fingerprint"):
        name = checkpoint.get("trained_on")
        return {"name": name if isinstance(name, str) else None, "fingerprint": checkpoint["trained_on_fingerprint"]}
    return None


def transfer_source(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The training store when it is not the evaluated one (by fingerprint; by name when the evaluated store
    has none), else None."""
    trained = training_store(record)
    if trained is None:
        return None
    evaluated = record["dataset"]
    if evaluated.get("fingerprint"):
        return trained if trained["fingerprint"] != evaluated["fingerprint"] else None
    return trained if trained["name"] is not None and trained["name"] != evaluated.get("name") else None


def config_id(record: Mapping[str, Any], *, training: bool = True) -> str:
    """Which configuration of the method: its name, version, resolved method config and training store (the
    seed, the device and the protocol it is evaluated under do not define a method).

    The training store's fingerprint enters only for a transfer: otherwise it is the evaluated store's,
    the same for every record of a table, so leaving it out keeps the identifiers of older records (and of
    the committed boards) and still separates what must be separate. `training=False`: the configuration
    alone (row labels name a transfer by its configuration)."""
    identity: dict[str, Any] = {
        "method": record["method"]["name"],
        "version": record["method"]["version"],
        "config": record["config"].get("method"),
    }
    transfer = transfer_source(record) if training else None
    if transfer is not None:
        identity["trained_on"] = transfer["fingerprint"]
    return _digest(identity)


def custom_aggregate(record: Mapping[str, Any]) -> float | None:
    """The protocol's stored `aggregate.mean.miou` when it is not the plain mean over the record's scenarios
    (a protocol with its own aggregate, e.g. weighted scenarios), else None."""
    mean = (record.get("aggregate") or {}).get("mean")
    stored = mean.get("miou") if isinstance(mean, Mapping) else None
    plain = _mean_metric(s["metrics"]["miou"] for s in record["scenarios"])
    if stored is None or plain is None or math.isclose(stored, plain, rel_tol=1e-9, abs_tol=1e-12):
        return None
    return float(stored)


def _mean_metric(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None and math.isfinite(v)]
    return sum(present) / len(present) if present else None


def record_values(record: Mapping[str, Any]) -> dict[str, float | None]:
    """The numbers of one record, by column key (fractions in [0, 1]). Where the protocol's own `aggregate`
    has the number (its code computed it: docs/plugins.md), the board takes it from there: `mean.miou` (or
    `miou.mean`, repeated draws), `worst.miou`, `expectation.NAME.miou`, `per_KEY.GROUP.mean.miou` (a column
    `mean GROUP`, e.g. pixel-drop's `mean r=0.5`), `minority_miou.mean/worst`; only
    when the protocol stores none is it computed here from the scenarios."""
    scenarios = record["scenarios"]
    aggregate = record.get("aggregate") or {}
    values: dict[str, float | None] = {}
    if len(scenarios) <= MAX_SCENARIO_COLUMNS:
        for scenario in scenarios:
            values[f"scenario:{scenario['name']}"] = scenario["metrics"]["miou"]
    mean = aggregate.get("mean")
    worst = aggregate.get("worst")
    repeated = aggregate.get("miou")  # protocols of repeated random draws: {mean, std, n} per metric
    if isinstance(mean, Mapping) and "miou" in mean:
        values["mean"] = mean["miou"]
    elif isinstance(repeated, Mapping) and "mean" in repeated:
        values["mean"] = repeated["mean"]
    else:
        values["mean"] = _mean_metric(s["metrics"]["miou"] for s in scenarios)
    if isinstance(worst, Mapping) and "miou" in worst:
        values["worst"] = worst["miou"]
    else:
        present = [s["metrics"]["miou"] for s in scenarios if s["metrics"]["miou"] is not None]
        values["worst"] = min(present) if present else None
    for name, expectation in (aggregate.get("expectation") or {}).items():
        values[f"E({name})"] = expectation.get("miou")
    for key, groups in aggregate.items():  # per-group means, e.g. pixel-drop's per_ratio: a column "mean r=0.5"
        if key.startswith("per_") and isinstance(groups, Mapping):
            for group, summary in groups.items():
                group_mean = summary.get("mean") if isinstance(summary, Mapping) else None
                if isinstance(group_mean, Mapping) and "miou" in group_mean:
                    values[f"mean {group}"] = group_mean["miou"]
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
    training = final_step_flag([item.record for item in records])
    if training is not None:
        flags.append(training)
    transfer = transfer_source(records[0].record)
    if transfer is not None:
        digest = str(transfer["fingerprint"]).removeprefix("sha256:")[:12]
        flags.append(f"transfer: trained on {transfer['name']} (sha256:{digest}…)")
    dirty = [item for item in records if item.record["git"]["dirty"]]
    if dirty:
        reasons = sorted({reason for item in dirty if (reason := dirty_reason(item.record["git"]))})
        shown = f": {'; '.join(reasons[:2])}{' …' if len(reasons) > 2 else ''}" if reasons else ""
        flags.append(f"dirty git tree ({len(dirty)} of {len(records)} records){shown}")
    if any(item.record["git"]["commit"] is None or item.record["git"]["dirty"] is None for item in records):
        flags.append("unknown git state")
    versions = sorted({str(item.record["env"].get("mmbench")) for item in records})
    if len(versions) > 1:
        flags.append(f"mixed mmbench versions {', '.join(versions)}")
    commits = sorted({str(item.record["git"]["commit"])[:8] for item in records})
    if len(commits) > 1:
        flags.append(f"{len(commits)} git commits")
    cpus = {signature for item in records if (signature := cpu_signature(item.record.get("env") or {}))}
    if len(cpus) > 1:
        flags.append(f"trained on {len(cpus)} kinds of CPU (same seed, different rounding: docs/run-record.md)")
    seeds = [item.record["seed"] for item in records]
    if len(set(seeds)) < len(seeds):
        flags.append("repeated seed")
    return flags


def dirty_reason(git: Mapping[str, Any]) -> str | None:
    """What made a record's tree dirty, from `git.dirty_paths` ({count, paths}: mmbench/records/environment.py);
    None for records that do not say (written before issue 18)."""
    reason = git.get("dirty_paths")
    if not isinstance(reason, Mapping) or not reason.get("count"):
        return None
    count, paths = int(reason["count"]), [str(path) for path in reason.get("paths") or []]
    listed = ", ".join(paths[:3]) + (", ..." if count > len(paths[:3]) else "")
    return f"{count} changed file{'s' if count != 1 else ''} ({listed})"


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
        "validation_curves": validation_curves(records),
        "trained_for_missing": _trained_for_missing(records),
        "trained_on": transfer_source(first),
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
    the config id when one method appears with several configs. A transfer's row is its configuration's
    label plus "(trained on NAME)"; the configuration is named as without the transfer."""
    configs: dict[str, set[str]] = {}
    names: dict[str, set[str]] = {}
    rows: dict[str, tuple[str, str]] = {}  # row id -> (configuration id, transfer suffix)
    for item in records:
        identifier = config_id(item.record, training=False)
        configs.setdefault(item.record["method"]["name"], set()).add(identifier)
        names.setdefault(identifier, set()).add(str((item.record["config"].get("run") or {}).get("label") or ""))
        source = transfer_source(item.record)
        shown = None if source is None else source["name"] or str(source["fingerprint"]).removeprefix("sha256:")[:12]
        suffix = "" if source is None else f" (trained on {shown})"
        rows[config_id(item.record)] = (identifier, suffix)
    chosen = {key: next(iter(given)) for key, given in names.items() if len(given) == 1 and "" not in given}
    taken = list(chosen.values())
    base = {}
    for method, ids in configs.items():
        for identifier in ids:
            if identifier in chosen and taken.count(chosen[identifier]) == 1:
                base[identifier] = chosen[identifier]
            else:
                base[identifier] = method if len(ids) == 1 else f"{method} [{identifier}]"
    return {row: base[identifier] + suffix for row, (identifier, suffix) in rows.items()}


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
    custom = [item for item in records if custom_aggregate(item.record) is not None]
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
        "custom_aggregate": (
            f"the protocol's own mean ({len(custom)} of {len(records)} records) differs from the mean over its "
            "scenarios: the mean column shows the protocol's value, without an interval"
            if custom
            else None
        ),
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
