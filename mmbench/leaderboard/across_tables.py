"""Methods compared across tables: Friedman test, Nemenyi critical difference, Holm-Wilcoxon vs the best.

Blocks are (dataset, protocol, scenario) cells of the board: one value per method (its mean over seeds
of that scenario's mIoU). A rank test needs the same methods in every block, so the board picks the
methods present in the most blocks and the blocks that have all of them (the choice maximising methods x
blocks, ties to more methods), and says which. A block that repeats another block of the same dataset and
scenario is counted once: the same methods, each within `DUPLICATE_TOLERANCE` of its value there (the
`minority` protocol re-scores `last1`'s scenarios with the same checkpoints, and a re-evaluation can differ
from the first by a few pixels' rounding, about 1e-6 mIoU, so equality alone would count it twice).
Demšar 2006 (JMLR 7) for the Friedman test and the CD; Benavoli, Corani & Mangili 2016 (JMLR 17) for why
the Holm-Wilcoxon comparison with the best is the reading to rely on.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mmbench.leaderboard import statistics as st

ALPHA = 0.05
MIN_METHODS, MIN_BLOCKS = 3, 2
DUPLICATE_TOLERANCE = 1e-4  # mIoU as a fraction: 0.01 points, far below any difference the board reports


def _blocks(tables: Sequence[Mapping[str, Any]]) -> tuple[list[tuple[str, dict[str, float]]], int]:
    """[(block name, {label: value})], and how many duplicate blocks were dropped."""
    blocks: list[tuple[str, dict[str, float]]] = []
    seen: dict[tuple, list[dict[str, float]]] = {}
    duplicates = 0
    names = [f"{t['dataset']['name']}/{t['protocol']['name']} v{t['protocol']['version']}" for t in tables]
    for table, name in zip(tables, names, strict=True):
        suffix = f" [{table['id'].rsplit('/', 1)[-1]}]" if names.count(name) > 1 else ""
        columns = [f"scenario:{s}" for s in table["scenarios"]] or [table["primary"]]
        for column in columns:
            values = {
                row["label"]: row["values"][column]["mean"]
                for row in table["rows"]
                if column in row["values"] and row["values"][column]["mean"] is not None
            }
            earlier = seen.setdefault((table["dataset"]["fingerprint"], column, tuple(sorted(values))), [])
            if any(_same_values(values, other) for other in earlier):
                duplicates += 1
                continue
            earlier.append(values)
            blocks.append((f"{name}{suffix}: {column.removeprefix('scenario:')}", values))
    return blocks, duplicates


def _same_values(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    return all(abs(a[label] - b[label]) <= DUPLICATE_TOLERANCE for label in a)


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
