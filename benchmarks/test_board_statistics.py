"""Cost of the leaderboard's bootstrap (mmbench/leaderboard/statistics.py) on 1,000 records' worth of data.

Run: `pytest benchmarks/test_board_statistics.py --benchmark-only --benchmark-columns=min,median,rounds`

A record is one seed of one method in one table. The board's work per table is one shared resampling
(`table_replicates`, 2,000 replicates) and the rank intervals from it. Shapes: 48 tables x 7 methods x 3
seeds = 1,008 records of 3 scenarios x 6 classes, with 8 evaluation units (tiles) or 100 units (areas).
The target is < 30 s for the whole board on 2 cores.
"""

from __future__ import annotations

import numpy as np
import pytest

from mmbench.leaderboard import statistics as st

TABLES, METHODS, SEEDS, SCENARIOS, CLASSES = 48, 7, 3, 3, 6
N_BOOT = 2000


def _tables(n_units: int) -> list[dict[str, list[np.ndarray]]]:
    rng = np.random.default_rng(0)
    return [
        {
            f"m{m}": [rng.integers(0, 2000, size=(SCENARIOS, n_units, CLASSES, CLASSES)) for _ in range(SEEDS)]
            for m in range(METHODS)
        }
        for _ in range(TABLES)
    ]


def _board(tables: list[dict[str, list[np.ndarray]]]) -> int:
    classes = np.ones(CLASSES, bool)
    ranked = 0
    for number, methods in enumerate(tables):
        replicates, _ = st.table_replicates(methods, classes, n_boot=N_BOOT, rng_seed=number)
        ranked += len(st.rank_intervals(replicates))
    return ranked


def _rows(tables: list[dict[str, list[np.ndarray]]]) -> int:
    """The other call pattern: one `hierarchical_bootstrap_ci` per row (its own resampling)."""
    classes = np.ones(CLASSES, bool)
    return sum(
        st.hierarchical_bootstrap_ci(seeds, classes, n_boot=N_BOOT, rng_seed=number).high is not None
        for number, methods in enumerate(tables)
        for seeds in methods.values()
    )


@pytest.mark.parametrize("n_units", [8, 100])
def test_row_intervals_for_1000_records(benchmark, n_units: int) -> None:
    tables = _tables(n_units)
    assert benchmark.pedantic(_rows, args=(tables,), rounds=3, iterations=1) == TABLES * METHODS


@pytest.mark.parametrize("n_units", [8, 100])
def test_bootstrap_for_1000_records(benchmark, n_units: int) -> None:
    tables = _tables(n_units)
    ranked = benchmark.pedantic(_board, args=(tables,), rounds=3, iterations=1)
    assert ranked == TABLES * METHODS
    benchmark.extra_info["records"] = TABLES * METHODS * SEEDS
    benchmark.extra_info["n_boot"] = N_BOOT
