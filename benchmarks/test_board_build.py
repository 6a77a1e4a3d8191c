"""Cost of a whole board (`build_board`) over ~1,000 schema-2 records with the default 2,000 bootstrap
replicates and permutations: decoding every record's per-unit matrices, per-row intervals for the mean
and every scenario, paired permutation tests against each table's best, joint rank intervals and the
Friedman section. Target: < 30 s on 2 cores (issue 17).

Run: `pytest benchmarks/test_board_build.py --benchmark-only --benchmark-columns=min,median,rounds`

The records are built in memory (tests/board_records.py: a committed record as template, synthetic
per-unit matrices encoded with mmbench/records/unit_confusion.py), never written: 48 tables (distinct
label variants) x 7 methods x 3 seeds = 1,008 records of 3 scenarios x 6 classes, with 8 or 100 tiles.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from board_records import ground_truth, schema2_record, template  # noqa: E402

from mmbench.leaderboard.board import build_board  # noqa: E402
from mmbench.leaderboard.collect import LoadedRecord  # noqa: E402

TABLES, METHODS, SEEDS = 48, 7, 3
N_BOOT = 2000


def _records(n_units: int) -> list[LoadedRecord]:
    rng = np.random.default_rng(0)
    base = template()
    records = []
    for table in range(TABLES):
        variant = dict(base)
        variant["protocol"] = {
            **base["protocol"],
            "settings": {**base["protocol"]["settings"], "label_variant": f"v{table}"},
        }
        truth = ground_truth(n_units, rng)
        for method in range(METHODS):
            quality = [0.5 + 0.04 * method + 0.01 * s for s in range(3)]
            for seed in range(SEEDS):
                record = schema2_record(variant, method=f"m{method}", seed=seed, quality=quality, truth=truth, rng=rng)
                records.append(LoadedRecord(Path(f"/mem/t{table}/m{method}/s{seed}.json"), record))
    return records


@pytest.mark.parametrize("n_units", [8, 100])
def test_board_of_1000_schema_2_records(benchmark, n_units: int) -> None:
    records = _records(n_units)
    board = benchmark.pedantic(build_board, args=(records,), kwargs={"n_boot": N_BOOT}, rounds=2, iterations=1)
    assert len(board["tables"]) == TABLES and board["records"] == TABLES * METHODS * SEEDS
    assert all(table["statistics"]["available"] for table in board["tables"])
    assert board["across_tables"]["available"]
    benchmark.extra_info["records"] = board["records"]
    benchmark.extra_info["n_boot"] = N_BOOT
