"""Uncertainty on one board table: bootstrap intervals, "not distinguishable from the best", rank intervals.

The board (mmbench/leaderboard/board.py) builds a table's rows from the records' stored numbers; this
module adds what those numbers cannot say on their own, from the records' per-unit confusion matrices
(schema version 2, mmbench/records/unit_confusion.py) and the engine in mmbench/leaderboard/statistics.py:

- a 95 % hierarchical-bootstrap interval for the primary column and for every scenario column of a row;
- each row against the table's best, paired by seed and unit (permutation p-value, Holm-adjusted over the
  rows), and whether it is distinguishable from the best at alpha = 0.05;
- every row's rank interval from one joint resampling of the table.

All of it needs every record of the table to carry per-unit matrices on the same units; otherwise the
table says why once (`reason`) and every interval is null. docs/leaderboard.md ("Reading the board")
explains the columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmbench.errors import RecordError
from mmbench.leaderboard import statistics as st
from mmbench.leaderboard.collect import LoadedRecord
from mmbench.records.unit_confusion import UnitConfusionError, record_unit_confusion

LEVEL = 0.95
ALPHA = 0.05
SCHEMA_1 = "records carry no per-unit matrices (schema 1)"
MIN_SEEDS = 3  # fewer seeds: the seed level of the bootstrap sees too few values (docs/leaderboard.md)


@dataclass(frozen=True)
class TableUnits:
    """Every row's per-seed (S, U, K, K) matrices and the scored-class masks of one table."""

    rows: dict[str, dict[Any, np.ndarray]]  # row key (config id) -> seed -> counts
    scored: np.ndarray  # (S, K) classes scored per scenario
    minority: np.ndarray | None  # (S, K) scored minority classes, for the `minority` protocol's primary column
    unit_kind: str
    n_units: int


def decoded_unit_matrices(item: LoadedRecord) -> tuple[list[str], np.ndarray] | None:
    """(unit names, (S, U, K, K)) as stored, None when the record has none; an undecodable entry is a RecordError
    naming the file (the decoder does not know the path). `mmbench leaderboard --rerun-of` compares these as
    stored; the board also needs them consistent (`unit_matrices`)."""
    try:
        return record_unit_confusion(item.record)
    except (UnitConfusionError, RecordError) as exc:
        raise RecordError(
            f"{item.path}: per-unit confusion matrices unusable ({exc}); re-create the record with "
            "'mmbench eval CHECKPOINT' or remove it"
        ) from None


def unit_matrices(item: LoadedRecord) -> tuple[list[str], np.ndarray] | None:
    """(unit names, (S, U, K, K)) of a record, None when it has none; a corrupt or inconsistent entry is a
    RecordError naming the file (the decoder and the statistics engine do not know the path)."""
    decoded = decoded_unit_matrices(item)
    if decoded is None:
        return None
    names, counts = decoded
    for scenario, summed in zip(item.record["scenarios"], counts.sum(axis=1), strict=True):
        stored = np.asarray(scenario.get("confusion_matrix"), dtype=np.int64)
        if stored.shape != summed.shape or not np.array_equal(stored, summed):
            raise RecordError(
                f"{item.path}: scenario {scenario.get('name')!r}: unit_confusion does not sum to confusion_matrix; "
                "the record was edited or is corrupt: re-create it with 'mmbench eval CHECKPOINT'"
            )
    return names, counts


def scored_classes(record: Mapping[str, Any], wanted: Sequence[str] | None, k: int) -> np.ndarray | None:
    """(S, K) bool: per scenario, the classes in `wanted` (default: the scenario's classes_scored) that it
    scored; the class order is the order of `per_class` (every class, in index order: metrics.py)."""
    rows = []
    for scenario in record["scenarios"]:
        metrics = scenario["metrics"]
        names = list(metrics.get("per_class") or {})
        if len(names) != k:
            return None
        scored = set(metrics.get("classes_scored") or names)
        chosen = scored if wanted is None else scored & set(wanted)
        rows.append([name in chosen for name in names])
    return np.array(rows, dtype=bool)


def table_units(groups: Mapping[str, Sequence[LoadedRecord]]) -> tuple[TableUnits | None, str | None]:
    """The table's matrices, or None and the one-line reason the table has no intervals."""
    decoded = {key: [(item, unit_matrices(item)) for item in items] for key, items in groups.items()}
    every = [(item, units) for pairs in decoded.values() for item, units in pairs]
    lacking = [item for item, units in every if units is None]
    if lacking:
        if all(item.record.get("schema_version") == 1 for item in lacking):
            return None, SCHEMA_1
        return None, f"{len(lacking)} of {len(every)} records carry no per-unit matrices"
    names = {tuple(units[0]) for _, units in every}  # type: ignore[index]
    if len(names) > 1:
        return None, "records were evaluated on different units (unit names differ)"
    shapes = {units[1].shape[:1] + units[1].shape[2:] for _, units in every}  # type: ignore[index]
    if len(shapes) > 1:
        return None, f"records disagree on (scenarios, classes): {sorted(shapes)}"
    first = every[0][0].record
    k = every[0][1][1].shape[-1]  # type: ignore[index]
    scored = scored_classes(first, None, k)
    if scored is None:
        return None, "the records' class names do not match their confusion matrices"
    minority_classes = (first.get("aggregate") or {}).get("minority_classes")
    minority = scored_classes(first, minority_classes, k) if isinstance(minority_classes, list) else None
    rows: dict[str, dict[Any, np.ndarray]] = {}
    for key, pairs in decoded.items():
        seeds: dict[Any, np.ndarray] = {}
        for item, units in pairs:
            if item.record["seed"] in seeds:
                return None, f"a row repeats seed {item.record['seed']}; pairing by seed is ambiguous"
            seeds[item.record["seed"]] = units[1]  # type: ignore[index]
        rows[key] = seeds
    kind = str((first["scenarios"][0].get("unit_confusion") or {}).get("unit", "unit"))
    return TableUnits(rows, scored, minority, kind, len(next(iter(names)))), None


def _statistic_mask(units: TableUnits, primary: str) -> np.ndarray | None:
    if primary == "mean":
        return units.scored
    if primary == "minority mean":
        return units.minority
    return None


def annotate_table(
    table: dict[str, Any],
    groups: Mapping[str, Sequence[LoadedRecord]],
    *,
    n_boot: int,
    rng_seed: int,
) -> None:
    """Add intervals, p-values vs the best, tie marks and rank intervals to `table` (rows keyed by
    `config_id`, as `groups`), in place; `table["statistics"]` says what was done or why not."""
    rows = table["rows"]
    for row in rows:
        row["few_seeds"] = row["n"] < MIN_SEEDS
        row["rank_interval"] = None
        row["p_vs_best"] = None
        row["ci_vs_best"] = None
        row["tied_with_best"] = None
        for value in row["values"].values():
            value["ci"] = None
    info: dict[str, Any] = {
        "available": False,
        "reason": None,
        "level": LEVEL,
        "alpha": ALPHA,
        "n_boot": n_boot,
        "n_permutations": n_boot,
        "rng_seed": rng_seed,
        "test": "paired permutation test vs the best row (by seed and unit), Holm-adjusted",
    }
    table["statistics"] = info
    units, reason = table_units(groups)
    if units is None:
        info["reason"] = reason
        return
    primary = table["primary"]
    mask = _statistic_mask(units, primary)
    info.update(available=True, units=units.n_units, unit_kind=units.unit_kind)
    scenario_columns = [f"scenario:{name}" for name in table["scenarios"]]
    methods = {row["config_id"]: units.rows[row["config_id"]] for row in rows}
    # one resampling and one matrix product per table (statistics.bootstrap_table), not per row and column
    intervals, replicates = st.bootstrap_table(
        methods, units.scored, ["mean", *range(len(scenario_columns))], n_boot, LEVEL, rng_seed
    )
    if primary != "mean" and mask is not None:
        primary_intervals, replicates = st.bootstrap_table(methods, mask, ["mean"], n_boot, LEVEL, rng_seed)
    for row in rows:
        for key, interval in zip(["mean", *scenario_columns], intervals[row["config_id"]], strict=True):
            if key in row["values"] and interval.low is not None:
                row["values"][key]["ci"] = [interval.low, interval.high]
        if primary != "mean" and mask is not None and primary in row["values"]:
            (interval,) = primary_intervals[row["config_id"]]
            if interval.low is not None:
                row["values"][primary]["ci"] = [interval.low, interval.high]
    if table.get("custom_aggregate"):
        # the bootstrap resamples the mean over scenarios as mmbench defines it; a protocol whose own mean is
        # another statistic gets its value shown (board.record_values) and no interval that belongs to another
        for row in rows:
            if "mean" in row["values"]:
                row["values"]["mean"]["ci"] = None
        if primary == "mean":
            info["reason"] = "the protocol computes its own mean: no interval or test for the mean column"
            return
    if mask is None:
        info["reason"] = f"no interval for the primary column {primary!r}; the scenario columns have them"
        return
    ranked = [row for row in rows if row["rank"] is not None]
    if len(ranked) < 2:
        return
    _versus_best(ranked, units, mask, n_boot, rng_seed, info)
    _rank_intervals(ranked, units, mask, primary, n_boot, rng_seed, info, replicates)


def _versus_best(
    ranked: list[dict[str, Any]], units: TableUnits, mask: np.ndarray, n_boot: int, rng_seed: int, info: dict
) -> None:
    """Each row vs the best (rows come sorted by rank): the paired permutation p-value, Holm-adjusted over
    the m - 1 comparisons, and the paired bootstrap interval of row − best; a row is marked worse than the
    best only when both say so (statistics.worse_than_best, the rule of statistics.tied_with_best). A row
    without a common seed has neither."""
    best, others = ranked[0], ranked[1:]
    best_seeds = units.rows[best["config_id"]]
    other_seeds = {row["config_id"]: units.rows[row["config_id"]] for row in others}
    # a row without a seed in common with the best has neither
    p_values = st.permutation_p_values(best_seeds, other_seeds, mask, n_boot, rng_seed)
    intervals = st.paired_intervals(best_seeds, other_seeds, mask, n_boot, 1 - ALPHA, rng_seed)
    raw = [p_values[row["config_id"]] for row in others]
    best["tied_with_best"] = True
    for row, p in zip(others, st.holm(raw), strict=True):
        interval = intervals[row["config_id"]]
        row["p_vs_best"] = p
        row["ci_vs_best"] = None if interval is None else [_negate(interval[1]), _negate(interval[0])]
        row["tied_with_best"] = None if p is None else not st.worse_than_best(p, interval, ALPHA)
    info["best"] = best["label"]


def _negate(value: float | None) -> float | None:
    return None if value is None else -value


def _rank_intervals(
    ranked: list[dict[str, Any]],
    units: TableUnits,
    mask: np.ndarray,
    primary: str,
    n_boot: int,
    rng_seed: int,
    info: dict,
    replicates: dict[str, np.ndarray],
) -> None:
    """Joint replicates on one resampling of the seeds every ranked row has; their rank percentiles. When
    every ranked row has the same seeds, the primary column's bootstrap replicates already are those
    (same draws: statistics.bootstrap_table), so they are reused instead of drawn again."""
    seed_lists = {tuple(units.rows[row["config_id"]]) for row in ranked}
    if len(seed_lists) == 1:
        replicates = {row["config_id"]: replicates[row["config_id"]] for row in ranked}
        common: tuple = next(iter(seed_lists))
    estimates = {row["config_id"]: row["values"][primary]["mean"] for row in ranked}
    fixed: list[dict[str, Any]] = []
    if len(seed_lists) > 1:
        resampled, fixed = _rows_to_resample(ranked, units)
        try:
            replicates, common = st.table_replicates(
                {row["config_id"]: units.rows[row["config_id"]] for row in resampled}, mask, n_boot, rng_seed
            )
        except RecordError as exc:
            info["rank_intervals"] = f"none: {exc}"
            return
        for row in fixed:  # in every replicate at its point estimate: the others' ranks stay the table's
            replicates[row["config_id"]] = np.full(
                n_boot, np.nan if estimates[row["config_id"]] is None else estimates[row["config_id"]]
            )
    for interval in st.rank_intervals(replicates, estimates, LEVEL):
        row = next(row for row in ranked if row["config_id"] == interval.method)
        row["rank_interval"] = None if row in fixed else [interval.low, interval.high]
    info["rank_interval_seeds"] = list(common)
    info["rank_interval_seed_subset"] = len(seed_lists) > 1  # some row has other seeds: only shared ones used
    info["rank_interval_fixed"] = [row["label"] for row in fixed]


def _rows_to_resample(ranked: list[dict[str, Any]], units: TableUnits) -> tuple[list[dict], list[dict]]:
    """(rows resampled, rows held at their point estimate) for rank intervals when rows have different
    seeds. Resampling only the seeds every row has would let one row with a single seed shrink every
    interval to that seed's test-set noise; so the seeds shared by the rows with at least 3 seeds are
    resampled, and a row lacking one of them (a row still being trained) is held at its estimate and gets
    no interval. With fewer than two such rows, every row is resampled on the seeds all share."""
    full = [row for row in ranked if not row.get("few_seeds")]
    if len(full) < 2:
        return ranked, []
    shared = set.intersection(*(set(units.rows[row["config_id"]]) for row in full))
    resampled = [row for row in ranked if shared <= set(units.rows[row["config_id"]])]
    return resampled, [row for row in ranked if row not in resampled]
