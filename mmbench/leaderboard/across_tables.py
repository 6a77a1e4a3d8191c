"""Methods compared across tables: Friedman test, Nemenyi critical difference, Holm-Wilcoxon vs the best.

Blocks are (dataset, protocol, scenario) cells of the board: one value per method (its mean over seeds
of that scenario's mIoU). A rank test needs the same methods in every block, so the board picks the
methods present in the most blocks and the blocks that have all of them (the choice maximising methods x
blocks, ties to more methods), and says which. A block that repeats another of the same dataset, scenario
and scoring settings is merged into it: every method with the same seeds in both has the same value within
`DUPLICATE_TOLERANCE` (the `minority` protocol re-scores `last1`'s scenarios with the same checkpoints, and
`subsets` contains them; a re-evaluation can differ by a few pixels' rounding, about 1e-6 mIoU, and a row
can have more seeds in one table than in the other, so neither equality nor the same method set is asked).
Demšar 2006 (JMLR 7) for the Friedman test and the CD; Benavoli, Corani & Mangili 2016 (JMLR 17) for why
the Holm-Wilcoxon comparison with the best is the reading to rely on.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mmbench.leaderboard import statistics as st

ALPHA = 0.05
MIN_METHODS, MIN_BLOCKS = 3, 2
DUPLICATE_TOLERANCE = 1e-4  # mIoU as a fraction: 0.01 points, far below any difference the board reports
# table settings that decide how a scenario is scored; protocol-only ones (a threshold, a drop rate) do not
SCORING = (
    "split",
    "part",
    "label_variant",
    "classes_scored",
    "ignore_index",
    "modalities",
    "window",
    "stride",
    "evaluation_unit",
    "conversion_tiling",
    "sliding_window",
)


def _blocks(tables: Sequence[Mapping[str, Any]]) -> tuple[list[tuple[str, dict[str, float]]], int]:
    """[(block name, {label: value})], and how many blocks repeating an earlier one were merged into it."""
    blocks: list[tuple[str, dict[str, float]]] = []
    seeds_of: list[dict[str, tuple]] = []  # per block: the seeds behind each label's value
    by_cell: dict[tuple, list[int]] = {}
    duplicates = 0
    names = [f"{t['dataset']['name']}/{t['protocol']['name']} v{t['protocol']['version']}" for t in tables]
    for table, name in zip(tables, names, strict=True):
        suffix = f" [{table['id'].rsplit('/', 1)[-1]}]" if names.count(name) > 1 else ""
        columns = [f"scenario:{s}" for s in table["scenarios"]] or [table["primary"]]
        scoring = json.dumps({key: (table.get("settings") or {}).get(key) for key in SCORING}, sort_keys=True)
        for column in columns:
            rows = [row for row in table["rows"] if (row["values"].get(column) or {}).get("mean") is not None]
            values = {row["label"]: row["values"][column]["mean"] for row in rows}
            seeds = {row["label"]: tuple(row.get("seeds") or ()) for row in rows}
            cell = by_cell.setdefault((table["dataset"]["fingerprint"], column, scoring), [])
            same = next((i for i in cell if _same_cell(values, seeds, blocks[i][1], seeds_of[i])), None)
            if same is None:
                cell.append(len(blocks))
                blocks.append((f"{name}{suffix}: {column.removeprefix('scenario:')}", values))
                seeds_of.append(seeds)
                continue
            duplicates += 1
            for label, value in values.items():  # a method only this table has, or with more seeds here
                if label not in blocks[same][1] or len(seeds[label]) > len(seeds_of[same][label]):
                    blocks[same][1][label], seeds_of[same][label] = value, seeds[label]
    return blocks, duplicates


def _same_cell(
    values: Mapping[str, float],
    seeds: Mapping[str, tuple],
    other: Mapping[str, float],
    other_seeds: Mapping[str, tuple],
) -> bool:
    """Whether two blocks of the same dataset, scenario and scoring are one evaluation: every method with the
    same seeds in both has the same value (within `DUPLICATE_TOLERANCE`), and there is at least one."""
    common = [label for label in values if label in other and seeds[label] == other_seeds[label]]
    return bool(common) and all(abs(values[label] - other[label]) <= DUPLICATE_TOLERANCE for label in common)


def _choose(blocks: list[tuple[str, dict[str, float]]]) -> tuple[list[str], list[int]]:
    """(methods, block indices): the methods in the most blocks, grown one at a time, and the blocks that
    hold every one of them; the largest methods x blocks with at least 3 methods and 2 blocks."""
    counts: dict[str, int] = {}
    for _, values in blocks:
        for label in values:
            counts[label] = counts.get(label, 0) + 1
    order = sorted(counts, key=lambda label: (-counts[label], label))
    best: tuple[int, int, list[str], list[int]] = (0, 0, [], [])
    for k in range(len(order), MIN_METHODS - 1, -1):
        methods = order[:k]
        chosen = [i for i, (_, values) in enumerate(blocks) if all(m in values for m in methods)]
        if len(chosen) >= MIN_BLOCKS and (k * len(chosen), k) > best[:2]:
            best = (k * len(chosen), k, methods, chosen)
    return best[2], best[3]


def across_tables(tables: Sequence[Mapping[str, Any]], alpha: float = ALPHA) -> dict[str, Any]:
    """The board's "across tables" section as plain data; `available` False with a `reason` otherwise."""
    blocks, duplicates = _blocks(tables)
    methods, chosen = _choose(blocks)
    if not methods:
        labels = {label for _, values in blocks for label in values}
        return {
            "available": False,
            "reason": f"a rank test needs at least {MIN_METHODS} methods that all appear in at least {MIN_BLOCKS} "
            f"(dataset, protocol, scenario) blocks; the board has {len(labels)} methods in {len(blocks)} blocks "
            "without such a set",
        }
    scores = np.array([[blocks[i][1][m] for m in methods] for i in chosen])
    with warnings.catch_warnings():  # scipy warns about ties and small samples; the docs state the limits
        warnings.simplefilter("ignore")
        result = st.friedman(scores)
        best, p_values, tied = st.wilcoxon_holm_vs_best(scores, methods, alpha)
    cd = st.nemenyi_critical_difference(len(methods), len(chosen), alpha)
    groups = [[methods[i] for i in group] for group in st.nemenyi_groups(result.average_ranks, cd)]
    return {
        "available": True,
        "alpha": alpha,
        "methods": methods,
        "blocks": [blocks[i][0] for i in chosen],
        "left_out_blocks": len(blocks) - len(chosen),
        "duplicate_blocks": duplicates,
        # methods whose mean in some table rests on fewer than 3 seeds: their average rank is less certain
        "few_seeds": sorted({row["label"] for t in tables for row in t["rows"] if row.get("few_seeds")} & set(methods)),
        "friedman": dataclasses.asdict(result),
        "nemenyi_cd": cd,
        "nemenyi_groups": groups,
        "wilcoxon_holm": {"best": best, "p_values": p_values, "not_distinguishable": tied},
    }


def friedman_result(section: Mapping[str, Any]) -> st.FriedmanResult:
    """The FriedmanResult back from the board's plain data (for the renderers)."""
    data = dict(section["friedman"])
    data["average_ranks"] = tuple(data["average_ranks"])
    return st.FriedmanResult(**data)
