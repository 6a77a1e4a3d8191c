"""Cheap schema-2 run records for board tests and benchmarks: a committed record as the template, with
synthetic per-unit confusion matrices (mmbench/records/unit_confusion.py) of a chosen quality.

Every method and seed of one "table" shares the ground truth of each unit (`ground_truth`), as real records
of one store and protocol do, so paired comparisons by seed and unit are valid. A unit's row for class c
keeps a fraction `quality` of its pixels on the diagonal (binomially) and spreads the rest uniformly over
the other classes. Scenario metrics (mIoU) and the aggregate are recomputed from the matrices, so the
board's stored numbers and its bootstrap agree.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from mmbench.leaderboard import statistics as st
from mmbench.records.unit_confusion import encode_unit_confusion

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "docs" / "results" / "records" / "synthetic"


def template(protocol: str = "last1") -> dict[str, Any]:
    """A committed schema-1 record of stars (3 scenarios x 6 classes) under `protocol`."""
    return json.loads((RECORDS / f"stars-{protocol}.json").read_text())


def ground_truth(n_units: int, rng: np.random.Generator, n_scenarios: int = 3, k: int = 6) -> np.ndarray:
    """(U, K) labelled pixels per unit and class (every scenario scores the same pixels)."""
    del n_scenarios
    return rng.integers(200, 2000, size=(n_units, k))


def unit_counts(truth: np.ndarray, quality: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(S, U, K, K) counts: per scenario s a diagonal fraction quality[s] of every labelled row."""
    n_scen = len(quality)
    n_units, k = truth.shape
    rows = np.broadcast_to(truth, (n_scen, n_units, k))
    q = np.clip(np.asarray(quality, dtype=float), 0.0, 1.0)[:, None, None]
    hits = rng.binomial(rows, q)
    misses = rows - hits
    spread = rng.multinomial(misses.reshape(-1), np.full(k - 1, 1.0 / (k - 1))).reshape(n_scen, n_units, k, k - 1)
    counts = np.zeros((n_scen, n_units, k, k), dtype=np.int64)
    for c in range(k):
        others = [j for j in range(k) if j != c]
        counts[:, :, c, c] = hits[:, :, c]
        counts[:, :, c, others] = spread[:, :, c, :]
    return counts


def schema2_record(
    base: dict[str, Any],
    *,
    method: str,
    seed: int,
    quality: float | list[float],
    truth: np.ndarray,
    rng: np.random.Generator,
    variant: Any = None,
    budget: dict[str, int] | None = None,
    selected_step: int = 1000,
    total_steps: int = 1500,
) -> dict[str, Any]:
    """`base` (a schema-1 record of 3 scenarios x 6 classes) turned into a schema-2 record of `method`."""
    record = copy.deepcopy(base)
    record["schema_version"] = 2
    record["method"]["name"] = method
    record["seed"] = seed
    record["config"]["run"]["seed"] = seed
    if variant is not None:
        record["config"]["method"]["variant"] = variant
    scenarios = record["scenarios"]
    qualities = [quality] * len(scenarios) if isinstance(quality, (int, float)) else list(quality)
    counts = unit_counts(truth, np.array(qualities), rng)
    names = [f"tile-{u}" for u in range(truth.shape[0])]
    classes = list(scenarios[0]["metrics"]["per_class"])
    mious = st.miou_per_scenario(counts, np.ones(len(classes), bool))
    for index, scenario in enumerate(scenarios):
        scenario["unit_confusion"] = encode_unit_confusion("tile", names, counts[index])
        scenario["confusion_matrix"] = counts[index].sum(axis=0).tolist()
        scenario["metrics"]["miou"] = mious[index]
    present = [value for value in mious if value is not None]
    aggregate = record["aggregate"]
    if "mean" in aggregate:
        aggregate["mean"]["miou"] = sum(present) / len(present)
        aggregate["worst"]["miou"] = min(present)
    if "minority_miou" in aggregate:  # the `minority` protocol: mIoU over its minority classes only
        mask = np.array([name in aggregate["minority_classes"] for name in classes])
        minority = [value for value in st.miou_per_scenario(counts, mask) if value is not None]
        aggregate["minority_miou"] = {"mean": sum(minority) / len(minority), "worst": min(minority)}
    if "per_scenario_miou" in record["aggregate"]:
        record["aggregate"]["per_scenario_miou"] = {s["name"]: m for s, m in zip(scenarios, mious, strict=True)}
    checkpoint = record["method"]["checkpoint"]
    checkpoint.update(
        selected_step=selected_step,
        total_steps=total_steps,
        validation_curve=[{"step": selected_step, "score": 0.5}],
    )
    record["method"]["budget"] = {
        "trainable": 2_000_000,
        "adversary": 0,
        "used_at_inference": budget or {s["name"]: 1_000_000 + 1000 * i for i, s in enumerate(scenarios)},
    }
    record["method"]["trained_for_missing"] = True
    record["timing"]["steps_per_s"] = 4.0
    record["timing"]["train_s"] = 375.0
    record["git"]["dirty"] = False
    return record


def real(name: str) -> dict[str, Any]:
    """A committed synthetic record (docs/results/records/synthetic/NAME.json)."""
    return json.loads((RECORDS / f"{name}.json").read_text())


def write(root: Path, name: str, record: dict[str, Any]) -> Path:
    path = root / name / "result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path
