"""Uncertainty and significance for leaderboard numbers: bootstrap intervals, paired tests, rank intervals,
and Friedman / Nemenyi / Holm-Wilcoxon across tables (docs/leaderboard.md, "Statistics").

Pure functions on arrays (numpy + scipy.stats; no torch, no I/O), so the board can call them on
confusion matrices read from run records. The data of one method in one table is a set of seeds, each
an integer array of shape (S, U, K, K): S scenarios, U evaluation units (tiles or areas, the same units
in the same order for every seed and every method of a table), K classes, rows = ground truth. The
classes scored are a bool mask of shape (K,) or (S, K).

The headline number is the project's mIoU (mmbench/evaluation/metrics.py): per class
IoU = I / (P + L - I) from the confusion matrix SUMMED over the units, a class whose union is zero has no
IoU and is skipped, mIoU is the mean over the scored classes whose IoU is defined, and a matrix with no
defined scored class has no mIoU. It is re-implemented here in vectorised numpy because metrics.py
imports torch; tests/test_statistics.py checks that both agree. A protocol's aggregate is the mean over
scenarios of the per-scenario mIoU (scenarios without an mIoU skipped), and a method's number is the mean
over its seeds, as in mmbench/leaderboard/board.py.

Every mIoU is a ratio of sums, and sums are linear in the counts, so a resampled matrix never needs to
be built: each unit is reduced once to its per-class (intersection, predicted, labelled) totals, and a
bootstrap or permutation replicate is a weighted sum of those, one matrix product for all replicates.

Undefined values are ``None`` in everything this module returns, never NaN (inside, NaN marks them).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

from mmbench.errors import RecordError

__all__ = [
    "BootstrapInterval",
    "FriedmanResult",
    "PairedComparison",
    "PointEstimate",
    "RankInterval",
    "Resampling",
    "Statistic",
    "average_ranks",
    "bootstrap_replicates",
    "bootstrap_table",
    "draw_resampling",
    "friedman",
    "hierarchical_bootstrap_ci",
    "hierarchical_bootstrap_cis",
    "holm",
    "miou",
    "miou_per_scenario",
    "nemenyi_critical_difference",
    "nemenyi_groups",
    "paired_comparison",
    "permutation_p_values",
    "point_estimate",
    "rank_intervals",
    "render_friedman_markdown",
    "table_replicates",
    "tied_with_best",
    "wilcoxon_holm_vs_best",
]

Seeds = Mapping[Hashable, np.ndarray] | Sequence[np.ndarray]
# "mean": the protocol's aggregate (mean over scenarios); an int: that scenario's mIoU.
Statistic = Literal["mean"] | int
UnitScheme = Literal["shared", "per-seed"]


# --------------------------------------------------------------------------------------------------- inputs
def _seed_items(seeds: Seeds) -> list[tuple[Hashable, np.ndarray]]:
    """(seed id, array) pairs; a plain sequence is numbered 0..n-1 (its position is its id)."""
    if isinstance(seeds, Mapping):
        return list(seeds.items())
    return list(enumerate(seeds))  # a list of arrays, or one (R, S, U, K, K) array


def _as_counts(seed: Hashable, value: object) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 4 or array.shape[-1] != array.shape[-2] or 0 in array.shape:
        raise RecordError(
            f"seed {seed!r}: confusion matrices must have shape (scenarios, units, K, K) with every size >= 1, "
            f"got {array.shape}; re-run the evaluation with per-unit confusion matrices"
        )
    if array.dtype.kind not in "iu":
        raise RecordError(f"seed {seed!r}: confusion matrices hold integer counts, not {array.dtype} values")
    if (array < 0).any():
        raise RecordError(f"seed {seed!r}: a confusion matrix holds negative counts; the record is corrupt")
    return array


def _stack(seeds: Seeds) -> tuple[list[Hashable], np.ndarray]:
    """Seed ids and one float64 array (R, S, U, K, K); every seed must have the same shape."""
    items = _seed_items(seeds)
    if not items:
        raise RecordError("no seeds: a row needs at least one record with per-unit confusion matrices")
    arrays = [_as_counts(seed, value) for seed, value in items]
    shapes = {array.shape for array in arrays}
    if len(shapes) > 1:
        raise RecordError(
            f"seeds disagree on (scenarios, units, K, K): {sorted(shapes)}; records of one row must be evaluated "
            "on the same units and scenarios"
        )
    return [seed for seed, _ in items], np.stack(arrays).astype(np.float64)


def _scored_mask(classes: np.ndarray | Sequence[bool], n_scenarios: int, n_classes: int) -> np.ndarray:
    mask = np.asarray(classes)
    if mask.dtype != bool:
        raise ValueError(f"classes must be a bool mask of shape (K,) or (S, K), not {mask.dtype}")
    if mask.shape == (n_classes,):
        mask = np.broadcast_to(mask, (n_scenarios, n_classes))
    if mask.shape != (n_scenarios, n_classes):
        raise ValueError(
            f"classes mask has shape {mask.shape}; expected ({n_classes},) or ({n_scenarios}, {n_classes})"
        )
    return mask


def _none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# ------------------------------------------------------------------------------------------------- metrics
def _features(counts: np.ndarray) -> np.ndarray:
    """(..., K, K) counts -> (..., 3, K): intersection, predicted total, labelled total, per class."""
    inter = np.diagonal(counts, axis1=-2, axis2=-1)
    return np.stack([inter, counts.sum(axis=-2), counts.sum(axis=-1)], axis=-2)


def _miou_from_features(features: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """(..., S, 3, K) summed features -> (..., S) mIoU, NaN where no scored class has a union."""
    inter, predicted, labelled = features[..., 0, :], features[..., 1, :], features[..., 2, :]
    union = predicted + labelled - inter
    valid = scored & (union > 0)
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=valid)
    n = valid.sum(axis=-1)
    return np.divide(iou.sum(axis=-1), n, out=np.full(n.shape, np.nan), where=n > 0)


def miou(
    matrix: np.ndarray | Sequence[Sequence[int]], classes: np.ndarray | Sequence[bool] | None = None
) -> float | None:
    """The project's mIoU of one (K, K) confusion matrix over the scored classes (default: all); None when
    no scored class has a non-zero union (the value metrics.compute_metrics reports as null)."""
    counts = np.asarray(matrix, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"a confusion matrix must be (K, K), got shape {counts.shape}")
    k = counts.shape[0]
    mask = np.ones(k, bool) if classes is None else np.asarray(classes, dtype=bool)
    return _none(float(_miou_from_features(_features(counts)[None], mask[None])[0]))


def miou_per_scenario(counts: np.ndarray, classes: np.ndarray | Sequence[bool]) -> list[float | None]:
    """Per-scenario mIoU of one seed (S, U, K, K), from each scenario's matrix summed over the units
    (never the mean of per-unit mIoU: a unit without some class would score it as skipped there and the
    unit-level ratios would be weighted equally, not by pixels)."""
    array = _as_counts(0, counts).astype(np.float64)
    scored = _scored_mask(classes, array.shape[0], array.shape[-1])
    return [_none(v) for v in _miou_from_features(_features(array.sum(axis=1)), scored)]


def _reduce(per_scenario: np.ndarray, statistic: Statistic) -> np.ndarray:
    """(..., S) -> (...): the nan-mean over scenarios, or one scenario."""
    if statistic == "mean":
        defined = np.isfinite(per_scenario)
        n = defined.sum(axis=-1)
        total = np.where(defined, per_scenario, 0.0).sum(axis=-1)
        return np.divide(total, n, out=np.full(n.shape, np.nan), where=n > 0)
    if isinstance(statistic, bool) or not isinstance(statistic, (int, np.integer)):
        raise ValueError(f"statistic must be 'mean' or a scenario index, not {statistic!r}")
    if not -per_scenario.shape[-1] <= statistic < per_scenario.shape[-1]:
        raise ValueError(f"scenario index {statistic} out of range for {per_scenario.shape[-1]} scenarios")
    return per_scenario[..., statistic]


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    defined = np.isfinite(values)
    n = defined.sum(axis=axis)
    return np.divide(np.where(defined, values, 0.0).sum(axis=axis), n, out=np.full(n.shape, np.nan), where=n > 0)


# ------------------------------------------------------------------------------------------ point estimate
@dataclass(frozen=True)
class PointEstimate:
    """Mean and sample standard deviation (ddof 1) of the per-seed values; None where undefined."""

    mean: float | None
    std: float | None
    n: int
    per_seed: tuple[float | None, ...]


def _per_seed(stack: np.ndarray, scored: np.ndarray, statistic: Statistic) -> np.ndarray:
    return _reduce(_miou_from_features(_features(stack.sum(axis=2)), scored), statistic)


def point_estimate(seeds: Seeds, classes: np.ndarray | Sequence[bool], statistic: Statistic = "mean") -> PointEstimate:
    """Per-seed metric (matrices summed over units), then mean ± std over the seeds that have one."""
    _, stack = _stack(seeds)
    values = _per_seed(stack, _scored_mask(classes, stack.shape[1], stack.shape[-1]), statistic)
    present = values[np.isfinite(values)]
    mean = float(present.mean()) if present.size else None
    std = float(present.std(ddof=1)) if present.size > 1 else None
    return PointEstimate(mean, std, int(present.size), tuple(_none(v) for v in values))


# --------------------------------------------------------------------------------------------- resampling
@dataclass(frozen=True)
class Resampling:
    """The indices of a hierarchical bootstrap, drawn once and shared by every method of a table.

    seed_draws[b, j]: the seed (position) drawn j-th in replicate b. unit_counts[b, j, u]: how often unit
    u is drawn for that seed ("per-seed": shape (B, R, U)) or for every seed of the replicate ("shared":
    shape (B, 1, U), the same units for all seeds, as in the evaluation itself).
    """

    seed_draws: np.ndarray
    unit_counts: np.ndarray
    rng_seed: int
    units: UnitScheme

    @property
    def n_boot(self) -> int:
        return int(self.seed_draws.shape[0])

    @property
    def n_seeds(self) -> int:
        return int(self.seed_draws.shape[1])

    @property
    def n_units(self) -> int:
        return int(self.unit_counts.shape[2])


def _check_positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def draw_resampling(
    n_seeds: int, n_units: int, n_boot: int = 2000, rng_seed: int = 0, units: UnitScheme = "shared"
) -> Resampling:
    """Draw `n_boot` replicates: `n_seeds` seeds with replacement, then `n_units` units with replacement
    (once per replicate for "shared", once per drawn seed for "per-seed"). Unit multiplicities are
    counted with one bincount, never a loop over replicates."""
    n_seeds, n_units, n_boot = (
        _check_positive(n, v) for n, v in (("n_seeds", n_seeds), ("n_units", n_units), ("n_boot", n_boot))
    )
    if units not in ("shared", "per-seed"):
        raise ValueError(f"units must be 'shared' or 'per-seed', not {units!r}")
    rng = np.random.default_rng(rng_seed)
    seed_draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    groups = n_boot * (n_seeds if units == "per-seed" else 1)
    unit_draws = rng.integers(0, n_units, size=(groups, n_units))
    flat = (np.arange(groups)[:, None] * n_units + unit_draws).ravel()
    counts = np.bincount(flat, minlength=groups * n_units).astype(np.float64)
    return Resampling(seed_draws, counts.reshape(n_boot, -1, n_units), int(rng_seed), units)


def bootstrap_replicates(
    seeds: Seeds, classes: np.ndarray | Sequence[bool], resampling: Resampling, statistic: Statistic = "mean"
) -> np.ndarray:
    """(B,) replicates of the mean-over-seeds statistic under `resampling` (NaN where undefined)."""
    _, stack = _stack(seeds)
    return _replicates(stack, _scored_mask(classes, stack.shape[1], stack.shape[-1]), resampling, statistic)


def _replicates(stack: np.ndarray, scored: np.ndarray, resampling: Resampling, statistic: Statistic) -> np.ndarray:
    """(B,) replicates of one method (R, S, U, K, K)."""
    return _replicates_many(stack[None], scored, resampling, statistic)[0]


def _replicates_many(
    stacks: np.ndarray, scored: np.ndarray, resampling: Resampling, statistic: Statistic
) -> np.ndarray:
    """(M, B) replicates of M methods (M, R, S, U, K, K) under one resampling.

    All methods and seeds go through one matrix product (B, U) @ (U, M*R*S*3K): many small products are
    slow where BLAS threads compete for few cores (about 10x slower on a loaded 2-core machine;
    benchmarks/test_board_statistics.py).
    """
    n_methods, n_seeds, n_scen, n_units, k, _ = stacks.shape
    if (resampling.n_seeds, resampling.n_units) != (n_seeds, n_units):
        raise ValueError(
            f"resampling drawn for {resampling.n_seeds} seeds x {resampling.n_units} units, data has "
            f"{n_seeds} x {n_units}"
        )
    # (U, M, R, S*3K): each unit reduced once to its per-class sums; a replicate is a weighted sum of them.
    features = np.ascontiguousarray(_features(stacks).transpose(3, 0, 1, 2, 4, 5))
    features = features.reshape(n_units, n_methods, n_seeds, n_scen * 3 * k)
    draws = resampling.seed_draws
    b = resampling.n_boot
    shape = (b, n_methods, n_seeds, n_scen, 3, k)
    if resampling.units == "shared":
        counts = resampling.unit_counts[:, 0, :]  # (B, U)
        summed = (counts @ features.reshape(n_units, -1)).reshape(shape)  # every seed, every replicate
        values = _reduce(_miou_from_features(summed, scored), statistic)  # (B, M, R)
        per_draw = np.take_along_axis(values, draws[:, None, :], axis=2)  # the drawn seeds' values
    else:
        counts = resampling.unit_counts.reshape(b * n_seeds, n_units)
        flat_draws = draws.reshape(-1)
        summed = np.empty((b * n_seeds, n_methods, n_scen * 3 * k))
        for r in range(n_seeds):  # a loop over the seeds only; replicates and units are one product
            rows = flat_draws == r
            summed[rows] = (counts[rows] @ features[:, :, r].reshape(n_units, -1)).reshape(
                -1, n_methods, n_scen * 3 * k
            )
        summed = summed.reshape(b, n_seeds, n_methods, n_scen, 3, k).transpose(0, 2, 1, 3, 4, 5)
        per_draw = _reduce(_miou_from_features(summed, scored), statistic)  # (B, M, R)
    return _nanmean(per_draw, axis=2).T


@dataclass(frozen=True)
class PercentileInterval:
    """A point estimate with a percentile bootstrap interval and how it was drawn; None where undefined."""

    estimate: float | None
    low: float | None
    high: float | None
    n_boot: int
    rng_seed: int
    level: float


@dataclass(frozen=True)
class BootstrapInterval(PercentileInterval):
    """A percentile bootstrap interval around the point estimate (mean over seeds); None if undefined."""

    n_seeds: int
    n_units: int


def _check_level(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return float(level)


def percentile_bounds(replicates: np.ndarray, level: float) -> tuple[float | None, float | None]:
    """The central `level` percentile interval of bootstrap `replicates`, ignoring non-finite ones (a replicate
    whose resampled units score no class); (None, None) when none is finite. Public because the study scripts
    in benchmarks/ build their own replicates and must read them the same way the board does."""
    finite = replicates[np.isfinite(replicates)]
    if not finite.size:
        return None, None
    tail = (1.0 - level) / 2
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return float(low), float(high)


def hierarchical_bootstrap_ci(
    seeds: Seeds,
    classes: np.ndarray | Sequence[bool],
    n_boot: int = 2000,
    level: float = 0.95,
    rng_seed: int = 0,
    statistic: Statistic = "mean",
    units: UnitScheme = "shared",
) -> BootstrapInterval:
    """Percentile interval of the mean-over-seeds metric: resample seeds with replacement, then units with
    replacement (see `draw_resampling`; "shared" is the default because every seed was evaluated on the
    same units, docs/leaderboard.md "Statistics"), and recompute mIoU from the re-summed matrices."""
    level = _check_level(level)
    _, stack = _stack(seeds)
    scored = _scored_mask(classes, stack.shape[1], stack.shape[-1])
    estimate = _per_seed(stack, scored, statistic)
    resampling = draw_resampling(stack.shape[0], stack.shape[2], n_boot, rng_seed, units)
    low, high = percentile_bounds(_replicates(stack, scored, resampling, statistic), level)
    mean = _nanmean(estimate, axis=0)
    return BootstrapInterval(_none(float(mean)), low, high, n_boot, rng_seed, level, stack.shape[0], stack.shape[2])


def hierarchical_bootstrap_cis(
    seeds: Seeds,
    classes: np.ndarray | Sequence[bool],
    statistics: Sequence[Statistic],
    n_boot: int = 2000,
    level: float = 0.95,
    rng_seed: int = 0,
) -> list[BootstrapInterval]:
    """`hierarchical_bootstrap_ci` for several statistics of one row (the mean and every scenario) on ONE
    shared resampling: the matrix product, the costly part, is done once instead of once per statistic
    (a board asks for 1 + S intervals per row). Same draws as `hierarchical_bootstrap_ci` with the same
    `rng_seed`, so each interval equals the one it would return."""
    level = _check_level(level)
    _, stack = _stack(seeds)
    n_seeds, n_scen, n_units, k, _ = stack.shape
    scored = _scored_mask(classes, n_scen, k)
    resampling = draw_resampling(n_seeds, n_units, n_boot, rng_seed, "shared")
    features = np.ascontiguousarray(_features(stack).transpose(2, 0, 1, 3, 4)).reshape(n_units, -1)
    summed = (resampling.unit_counts[:, 0, :] @ features).reshape(n_boot, n_seeds, n_scen, 3, k)
    per_scenario = _miou_from_features(summed, scored)  # (B, R, S)
    point = _miou_from_features(_features(stack.sum(axis=2)), scored)  # (R, S)
    out = []
    for statistic in statistics:
        values = np.take_along_axis(_reduce(per_scenario, statistic), resampling.seed_draws, axis=1)
        low, high = percentile_bounds(_nanmean(values, axis=1), level)
        mean = _nanmean(_reduce(point, statistic), axis=0)
        out.append(BootstrapInterval(_none(float(mean)), low, high, n_boot, rng_seed, level, n_seeds, n_units))
    return out


_CHUNK = 4_000_000  # floats per (B, methods, R, S, 3K) block: bounds memory when a table has many scenarios


def bootstrap_table(
    methods: Mapping[str, Seeds],
    classes: np.ndarray | Sequence[bool],
    statistics: Sequence[Statistic],
    n_boot: int = 2000,
    level: float = 0.95,
    rng_seed: int = 0,
) -> tuple[dict[str, list[BootstrapInterval]], dict[str, np.ndarray]]:
    """`hierarchical_bootstrap_cis` for every method of a table at once: ({method: intervals, one per
    statistic}, {method: (B,) replicates of the first statistic}).

    Each method gets exactly the draws `hierarchical_bootstrap_ci` would give it (they depend only on the
    number of seeds, the number of units and `rng_seed`), so methods with as many seeds share one
    resampling and one matrix product. When every method has the same seed ids, the returned replicates
    are therefore joint (the same seeds and units in each replicate) and `rank_intervals` can use them
    as it would `table_replicates`'."""
    level = _check_level(level)
    stacks = {name: _stack(seeds)[1] for name, seeds in methods.items()}
    by_shape: dict[tuple[int, ...], list[str]] = {}
    for name, stack in stacks.items():
        by_shape.setdefault(stack.shape, []).append(name)
    intervals: dict[str, list[BootstrapInterval]] = {}
    replicates: dict[str, np.ndarray] = {}
    for (n_seeds, n_scen, n_units, k, _), names in by_shape.items():
        scored = _scored_mask(classes, n_scen, k)
        resampling = draw_resampling(n_seeds, n_units, n_boot, rng_seed, "shared")
        counts = resampling.unit_counts[:, 0, :]
        chunk = max(1, _CHUNK // (n_boot * n_seeds * n_scen * 3 * k))
        for start in range(0, len(names), chunk):
            part = names[start : start + chunk]
            block = np.stack([stacks[name] for name in part])  # (M, R, S, U, K, K)
            m = len(part)
            features = np.ascontiguousarray(_features(block).transpose(3, 0, 1, 2, 4, 5)).reshape(n_units, -1)
            summed = (counts @ features).reshape(n_boot, m, n_seeds, n_scen, 3, k)
            per_scenario = _miou_from_features(summed, scored)  # (B, M, R, S)
            point = _miou_from_features(_features(block.sum(axis=3)), scored)  # (M, R, S)
            draws = resampling.seed_draws[:, None, :]
            for number, statistic in enumerate(statistics):
                values = _nanmean(np.take_along_axis(_reduce(per_scenario, statistic), draws, axis=2), axis=2)
                means = _nanmean(_reduce(point, statistic), axis=1)  # (M,)
                for i, name in enumerate(part):
                    low, high = percentile_bounds(values[:, i], level)
                    interval = BootstrapInterval(
                        _none(float(means[i])), low, high, n_boot, rng_seed, level, n_seeds, n_units
                    )
                    intervals.setdefault(name, []).append(interval)
                    if number == 0:
                        replicates[name] = values[:, i]
    return {name: intervals[name] for name in methods}, {name: replicates[name] for name in methods}


# -------------------------------------------------------------------------------------- paired comparison
@dataclass(frozen=True)
class PairedComparison:
    """a − b on the seeds both have: the difference of the means over those seeds, the paired-bootstrap
    percentile interval, and the two-sided paired-permutation p-value. None where undefined."""

    difference: float | None
    low: float | None
    high: float | None
    p_value: float | None
    seeds: tuple[Hashable, ...]
    dropped_a: tuple[Hashable, ...]
    dropped_b: tuple[Hashable, ...]
    n_boot: int
    n_permutations: int
    rng_seed: int
    level: float


def _paired_stacks(a_seeds: Seeds, b_seeds: Seeds) -> tuple[list[Hashable], np.ndarray, np.ndarray, list, list]:
    a_items, b_items = dict(_seed_items(a_seeds)), dict(_seed_items(b_seeds))
    common = [seed for seed in a_items if seed in b_items]
    dropped_a = [seed for seed in a_items if seed not in b_items]
    dropped_b = [seed for seed in b_items if seed not in a_items]
    if not common:
        raise RecordError(
            f"no seed in common (a: {list(a_items)}, b: {list(b_items)}); a paired comparison needs runs of both "
            "methods with the same seeds"
        )
    _, a = _stack({seed: a_items[seed] for seed in common})
    _, b = _stack({seed: b_items[seed] for seed in common})
    if a.shape != b.shape:
        raise RecordError(
            f"the two methods were evaluated on different (scenarios, units, K, K): {a.shape[1:]} vs {b.shape[1:]}"
        )
    if not np.array_equal(a.sum(axis=-1), b.sum(axis=-1)):
        raise RecordError(
            "the two methods' matrices have different ground-truth row sums: they were not evaluated on the same units"
        )
    return common, a, b, dropped_a, dropped_b


def _permutation_p(
    a: np.ndarray,
    b: np.ndarray,
    scored: np.ndarray,
    statistic: Statistic,
    n_permutations: int,
    rng: np.random.Generator,
) -> float | None:
    """Two-sided p = (1 + #{|T*| >= |T|}) / (1 + #{T* defined}), T = mean over seeds of the metric of a
    minus that of b, T* with a and b swapped at random within every (seed, unit) pair."""
    return _permutation_ps(a, b[None], scored, statistic, n_permutations, rng)[0]


def _permutation_ps(
    a: np.ndarray,
    bs: np.ndarray,
    scored: np.ndarray,
    statistic: Statistic,
    n_permutations: int,
    rng: np.random.Generator,
) -> list[float | None]:
    """`_permutation_p` of a against each of M methods bs (M, R, S, U, K, K) with ONE draw of the swaps,
    which is the draw each single comparison makes (same generator state, same shape): the same p-values
    for a fraction of the cost (one product per chunk of methods, not one per method)."""
    n_seeds, n_scen, n_units, k, _ = a.shape
    m = bs.shape[0]
    fa = _features(a).transpose(0, 2, 1, 3, 4).reshape(n_seeds, n_units, -1)  # (R, U, F)
    fb = _features(bs).transpose(0, 1, 3, 2, 4, 5).reshape(m, n_seeds, n_units, -1)  # (M, R, U, F)
    f = fa.shape[-1]
    total_a, total_b = fa.sum(axis=1), fb.sum(axis=2)  # (R, F), (M, R, F)

    def statistic_of(sa: np.ndarray, sb: np.ndarray) -> np.ndarray:
        shape = (*sa.shape[:-1], n_scen, 3, k)
        ma = _reduce(_miou_from_features(sa.reshape(shape), scored), statistic)
        mb = _reduce(_miou_from_features(sb.reshape(shape), scored), statistic)
        return _nanmean(ma, axis=-1) - _nanmean(mb, axis=-1)

    observed = statistic_of(np.broadcast_to(total_a, total_b.shape), total_b)  # (M,)
    if not np.isfinite(observed).any():
        return [None] * m
    swaps = rng.integers(0, 2, size=(n_permutations, n_seeds, n_units)).astype(np.float64)
    swaps = np.ascontiguousarray(swaps.transpose(1, 0, 2))  # (R, P, U), contiguous for BLAS
    null = np.empty((n_permutations, m))
    chunk = max(1, _CHUNK // (n_permutations * n_seeds * f))
    for start in range(0, m, chunk):
        stop = min(m, start + chunk)
        # swapping unit u moves delta[u] = fa[u] - fb[u] from a to b: (R, P, U) @ (R, U, m*F), batched BLAS
        delta = np.ascontiguousarray((fa[None] - fb[start:stop]).transpose(1, 2, 0, 3))
        moved = np.matmul(swaps, delta.reshape(n_seeds, n_units, -1))
        moved = moved.reshape(n_seeds, n_permutations, stop - start, f).transpose(1, 2, 0, 3)  # (P, m, R, F)
        null[:, start:stop] = statistic_of(total_a - moved, total_b[start:stop] + moved)
    out: list[float | None] = []
    for i in range(m):
        if not math.isfinite(observed[i]):
            out.append(None)
            continue
        # Exactly-equal statistics (e.g. all swaps of identical units) must count as "as extreme": compare
        # with a relative tolerance so float summation order cannot decide it.
        extreme = (np.abs(null[:, i]) >= abs(observed[i]) * (1 - 1e-12) - 1e-15) & np.isfinite(null[:, i])
        # A permutation whose statistic is undefined (every scored class empty for some seed) is neither
        # extreme nor not: it leaves the reference set instead of lowering p from the denominator.
        defined = int(np.isfinite(null[:, i]).sum())
        out.append(float((1 + extreme.sum()) / (1 + defined)))
    return out


def _pairs_by_common_seeds(
    a_seeds: Seeds, others: Mapping[str, Seeds]
) -> tuple[list[list[tuple[str, np.ndarray, np.ndarray]]], dict[str, Any]]:
    """a paired with each other method ((name, a stack, other stack)), grouped by the seeds the pair shares
    (a group can share one draw and one product), and {name: None} for those no pair can be formed with
    (no seed in common, other units)."""
    groups: dict[tuple, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    unpaired: dict[str, Any] = {}
    for name, seeds in others.items():
        try:
            common, a, b, _, _ = _paired_stacks(a_seeds, seeds)
        except RecordError:
            unpaired[name] = None
            continue
        groups.setdefault(tuple(common), []).append((name, a, b))
    return list(groups.values()), unpaired


def permutation_p_values(
    a_seeds: Seeds,
    others: Mapping[str, Seeds],
    classes: np.ndarray | Sequence[bool],
    n_permutations: int = 2000,
    rng_seed: int = 0,
    statistic: Statistic = "mean",
) -> dict[str, float | None]:
    """`paired_comparison(a_seeds, other, ..., rng_seed=rng_seed).p_value` for every other method, the same
    values, computed together: methods paired with a on the same seeds share one draw of the swaps and one
    product. None where the p-value is undefined or the pair cannot be formed (no seed in common, other
    units): the board shows no mark then."""
    _check_positive("n_permutations", n_permutations)
    groups, out = _pairs_by_common_seeds(a_seeds, others)
    for members in groups:
        a = members[0][1]
        scored = _scored_mask(classes, a.shape[1], a.shape[-1])
        bs = np.stack([b for _, _, b in members])
        values = _permutation_ps(a, bs, scored, statistic, n_permutations, np.random.default_rng([rng_seed, 1]))
        out.update((name, value) for (name, _, _), value in zip(members, values, strict=True))
    return {name: out[name] for name in others}


def paired_intervals(
    a_seeds: Seeds,
    others: Mapping[str, Seeds],
    classes: np.ndarray | Sequence[bool],
    n_boot: int = 2000,
    level: float = 0.95,
    rng_seed: int = 0,
    statistic: Statistic = "mean",
) -> dict[str, tuple[float | None, float | None] | None]:
    """`paired_comparison(a_seeds, other, ...)`'s interval of a − other for every other method, computed
    together: methods paired with a on the same seeds share one resampling (the same draws `paired_comparison`
    makes) and one product. None where the pair cannot be formed (no seed in common, other units).

    Why the board needs it beside the permutation p-value: the permutation test holds the trained seeds
    fixed, so with 3 seeds it can call a difference significant that one seed more could reverse; this
    interval resamples the seeds too (docs/leaderboard.md, "Not distinguishable from the best")."""
    level = _check_level(level)
    groups, out = _pairs_by_common_seeds(a_seeds, others)
    for members in groups:
        a = members[0][1]
        scored = _scored_mask(classes, a.shape[1], a.shape[-1])
        resampling = draw_resampling(a.shape[0], a.shape[2], n_boot, rng_seed)
        replicates = _replicates_many(np.stack([a, *(b for _, _, b in members)]), scored, resampling, statistic)
        for i, (name, _, _) in enumerate(members, start=1):
            out[name] = percentile_bounds(replicates[0] - replicates[i], level)
    return {name: out[name] for name in others}


def _paired_difference(
    a: np.ndarray, b: np.ndarray, scored: np.ndarray, n_boot: int, rng_seed: int, statistic: Statistic
) -> tuple[float, np.ndarray]:
    """a − b over paired stacks (R, S, U, K, K): the point difference and its (B,) paired-bootstrap
    replicates (the same seed and unit draws for both)."""
    difference = _nanmean(_per_seed(a, scored, statistic), 0) - _nanmean(_per_seed(b, scored, statistic), 0)
    resampling = draw_resampling(a.shape[0], a.shape[2], n_boot, rng_seed)
    both = _replicates_many(np.stack([a, b]), scored, resampling, statistic)
    return float(difference), both[0] - both[1]


@dataclass(frozen=True)
class DifferenceOfDifferences(PercentileInterval):
    """(a_y − b_y) − (a_x − b_x): how much a's gain on b changes from condition x to condition y (e.g. two
    redundancy levels), with a percentile bootstrap interval and the two-sided p of the test that interval
    inverts (`bootstrap_p`); None where undefined."""

    p_value: float | None = None


def bootstrap_p(replicates: np.ndarray) -> float | None:
    """Two-sided p of "the statistic is 0" read off its bootstrap replicates: twice the smaller share of
    replicates on either side of 0 (each count + 1 over B + 1, so p is never 0), capped at 1; None when no
    replicate is finite. It is the test the central percentile interval inverts: the interval at level
    1 − p just reaches 0, so p < 0.05 where the 95 % interval excludes 0 (up to the 1 / (B + 1) grid). A
    number to adjust for multiplicity (`holm`), which an interval alone cannot be."""
    finite = replicates[np.isfinite(replicates)]
    if not finite.size:
        return None
    below, above = int(np.sum(finite <= 0)), int(np.sum(finite >= 0))
    return min(1.0, 2 * (min(below, above) + 1) / (finite.size + 1))


def difference_of_differences(
    pair_x: tuple[Seeds, Seeds],
    pair_y: tuple[Seeds, Seeds],
    classes_x: np.ndarray | Sequence[bool],
    classes_y: np.ndarray | Sequence[bool],
    n_boot: int = 2000,
    level: float = 0.95,
    rng_seed: int = 0,
    statistic: Statistic = "mean",
) -> DifferenceOfDifferences:
    """Does a's gain on b differ between two conditions? Within a condition a and b are paired by seed and
    unit (`paired_comparison`'s bootstrap); the two conditions are different trainings on different test
    units, so they are resampled independently (draws seeded rng_seed and rng_seed + 1) and the interval is
    the percentiles of the differences of their replicates, its p `bootstrap_p` of the same replicates.
    Overlapping per-condition intervals are not a test of this; the interval of the difference is."""
    level = _check_level(level)
    gains = []
    for offset, ((a_seeds, b_seeds), classes) in enumerate(((pair_x, classes_x), (pair_y, classes_y))):
        _, a, b, _, _ = _paired_stacks(a_seeds, b_seeds)
        scored = _scored_mask(classes, a.shape[1], a.shape[-1])
        gains.append(_paired_difference(a, b, scored, n_boot, rng_seed + offset, statistic))
    (gain_x, reps_x), (gain_y, reps_y) = gains
    low, high = percentile_bounds(reps_y - reps_x, level)
    return DifferenceOfDifferences(
        _none(gain_y - gain_x), low, high, n_boot, rng_seed, level, bootstrap_p(reps_y - reps_x)
    )


def paired_comparison(
    a_seeds: Seeds,
    b_seeds: Seeds,
    classes: np.ndarray | Sequence[bool],
    n_boot: int = 2000,
    n_permutations: int = 2000,
    level: float = 0.95,
    rng_seed: int = 0,
    statistic: Statistic = "mean",
) -> PairedComparison:
    """Compare method a with method b, paired by seed id and unit.

    Only seeds both methods have are used; the others are listed in `dropped_a` / `dropped_b` (a seed run
    for one method only has no partner to pair with). The interval is a paired hierarchical bootstrap
    (the same seed and unit draws for both methods); the p-value is a paired permutation test (a and b
    swapped within each (seed, unit) pair with probability 1/2, which keeps the ground truth fixed). The
    permutation test is exact under exchangeability, so its p-values are uniform under the null (up to
    the 1/(n_permutations+1) grid) -- the board uses it for "distinguishable from the best".
    """
    level = _check_level(level)
    _check_positive("n_permutations", n_permutations)
    common, a, b, dropped_a, dropped_b = _paired_stacks(a_seeds, b_seeds)
    scored = _scored_mask(classes, a.shape[1], a.shape[-1])
    difference, diffs = _paired_difference(a, b, scored, n_boot, rng_seed, statistic)
    low, high = percentile_bounds(diffs, level)
    p_value = _permutation_p(a, b, scored, statistic, n_permutations, np.random.default_rng([rng_seed, 1]))
    return PairedComparison(
        _none(float(difference)),
        low,
        high,
        p_value,
        tuple(common),
        tuple(dropped_a),
        tuple(dropped_b),
        n_boot,
        n_permutations,
        rng_seed,
        level,
    )


# ----------------------------------------------------------------------------------- ranks within a table
@dataclass(frozen=True)
class RankInterval:
    """A method's rank (1 = best) on the point estimates and the percentile interval of its rank over the
    joint bootstrap replicates."""

    method: str
    rank: float | None
    low: float
    high: float


def table_replicates(
    methods: Mapping[str, Seeds],
    classes: np.ndarray | Sequence[bool],
    n_boot: int = 2000,
    rng_seed: int = 0,
    statistic: Statistic = "mean",
) -> tuple[dict[str, np.ndarray], tuple[Hashable, ...]]:
    """(B,) replicates per method on ONE shared resampling (same seed and unit draws for every method, so
    their ranks in a replicate are joint). Uses the seeds every method has (returned); a seed missing from
    some method is left out of the joint replicates for all."""
    items = {name: dict(_seed_items(seeds)) for name, seeds in methods.items()}
    if not items:
        return {}, ()
    names = list(items)
    common = [seed for seed in items[names[0]] if all(seed in items[n] for n in names[1:])]
    if not common:
        raise RecordError(f"the methods {names} share no seed; rank intervals need runs with common seeds")
    stacks = {name: _stack({seed: items[name][seed] for seed in common})[1] for name in names}
    shapes = {stack.shape[1:] for stack in stacks.values()}
    if len(shapes) > 1:
        raise RecordError(f"methods of one table have different (scenarios, units, K, K): {sorted(shapes)}")
    first = next(iter(stacks.values()))
    scored = _scored_mask(classes, first.shape[1], first.shape[-1])
    resampling = draw_resampling(len(common), first.shape[2], n_boot, rng_seed)
    replicates = _replicates_many(np.stack(list(stacks.values())), scored, resampling, statistic)
    return dict(zip(stacks, replicates, strict=True)), tuple(common)


def _rank_rows(scores: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, 1 = highest, ties averaged; an undefined score ranks below all others."""
    filled = np.where(np.isfinite(scores), scores, -np.inf)
    return stats.rankdata(-filled, axis=-1, method="average")


def rank_intervals(
    replicates: Mapping[str, np.ndarray], estimates: Mapping[str, float | None] | None = None, level: float = 0.95
) -> list[RankInterval]:
    """Each method's `level` rank interval from joint replicates (see `table_replicates`): the lower and
    upper percentiles of its rank over the replicates. `estimates` (the point estimates) give the rank
    shown; without them the median replicate rank is used."""
    level = _check_level(level)
    names = list(replicates)
    if not names:
        return []
    matrix = np.stack([np.asarray(replicates[name], dtype=np.float64) for name in names], axis=1)  # (B, M)
    ranks = _rank_rows(matrix)
    tail = (1.0 - level) / 2
    low = np.quantile(ranks, tail, axis=0, method="lower")
    high = np.quantile(ranks, 1.0 - tail, axis=0, method="higher")
    if estimates is not None:
        point = np.array([np.nan if estimates.get(n) is None else float(estimates[n]) for n in names])  # type: ignore[arg-type]
        shown = _rank_rows(point)
        shown_ranks: list[float | None] = [
            None if not np.isfinite(point[i]) else float(shown[i]) for i in range(len(names))
        ]
    else:
        shown_ranks = [float(v) for v in np.median(ranks, axis=0)]
    return [RankInterval(name, shown_ranks[i], float(low[i]), float(high[i])) for i, name in enumerate(names)]


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm (1979) step-down adjusted p-values (monotone, capped at 1); None stays None."""
    indexed = [(p, i) for i, p in enumerate(p_values) if p is not None]
    indexed.sort()
    m = len(indexed)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for position, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - position) * p))
        adjusted[i] = running
    return adjusted


def tied_with_best(
    methods: Mapping[str, Seeds],
    classes: np.ndarray | Sequence[bool],
    alpha: float = 0.05,
    n_permutations: int = 2000,
    rng_seed: int = 0,
    statistic: Statistic = "mean",
    adjust: Literal["holm", "none"] = "holm",
) -> tuple[str | None, list[str], dict[str, float | None]]:
    """(best, tie group, p-values): the best method by point estimate, and every method not shown to be
    worse: its paired permutation test against the best is not significant at `alpha` (Holm-adjusted over
    the m-1 comparisons by default, so that "worse than the best" is claimed at family-wise level alpha),
    or the paired bootstrap interval of the difference (which resamples seeds, where the permutation test
    holds them fixed) at level 1 - alpha includes 0. The best is in its own tie group; a method whose
    comparison is undefined (no p-value) is kept in the group. The board applies the same rule
    (mmbench/leaderboard/table_statistics.py)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    estimates = {name: point_estimate(seeds, classes, statistic).mean for name, seeds in methods.items()}
    ranked = [name for name in methods if estimates[name] is not None]
    if not ranked:
        return None, [], {}
    best = max(ranked, key=lambda name: estimates[name])  # type: ignore[arg-type,return-value]
    others = [name for name in methods if name != best]
    comparisons = [
        paired_comparison(
            methods[best], methods[name], classes, n_permutations, n_permutations, 1 - alpha, rng_seed, statistic
        )
        for name in others
    ]
    raw = [comparison.p_value for comparison in comparisons]
    adjusted = holm(raw) if adjust == "holm" else raw
    p_values = dict(zip(others, adjusted, strict=True))
    group = [best] + [
        name
        for name, comparison in zip(others, comparisons, strict=True)
        if not worse_than_best(p_values[name], (comparison.low, comparison.high), alpha)
    ]
    return best, group, p_values


def worse_than_best(
    p_value: float | None, interval: tuple[float | None, float | None] | None, alpha: float = 0.05
) -> bool:
    """Whether a row is shown to be worse than the best: its (adjusted) permutation p-value is below `alpha`
    AND the paired bootstrap interval of best − row excludes 0. Both must hold: the test sees the test set's
    noise with the seeds fixed, the interval the seeds' noise too; undefined either way is not shown."""
    if p_value is None or p_value >= alpha or interval is None:
        return False
    low, high = interval
    return low is not None and high is not None and (low > 0 or high < 0)


# ------------------------------------------------------------------------------------ across many tables
@dataclass(frozen=True)
class FriedmanResult:
    """Friedman test over N blocks (tables) x k methods, higher score = better.

    statistic / p_value: scipy's chi-square (corrected for ties); statistic_uncorrected: Friedman's
    chi-square_F without the tie correction (Demšar 2006, eq. for chi2_F); iman_davenport / its p-value:
    F_F = (N-1) chi2_F / (N(k-1) - chi2_F) on (k-1, (k-1)(N-1)) degrees of freedom, less conservative.
    """

    statistic: float
    p_value: float
    statistic_uncorrected: float
    iman_davenport: float | None
    iman_davenport_p: float | None
    average_ranks: tuple[float, ...]
    n_blocks: int
    n_methods: int


def _as_scores(scores: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"scores must be a (blocks, methods) table, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError("scores must be finite: drop the tables where a method has no value before testing")
    return matrix


def average_ranks(scores: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """(k,) mean rank of each method over the blocks; rank 1 = highest score, ties share average ranks."""
    return _rank_rows(_as_scores(scores)).mean(axis=0)


def friedman(scores: np.ndarray | Sequence[Sequence[float]]) -> FriedmanResult:
    """Friedman's test that all k methods are equivalent, over N blocks (scipy.stats.friedmanchisquare).

    Needs k >= 3 methods (for two, use the Wilcoxon signed-rank test) and N >= 2 blocks; the chi-square
    approximation is reasonable for N > 10 and k > 5 (Demšar 2006, section 3.2.2), below that the p-value is
    approximate and the Iman-Davenport F is the better choice.
    """
    matrix = _as_scores(scores)
    n, k = matrix.shape
    if k < 3:
        raise ValueError(f"the Friedman test needs at least 3 methods, got {k}; compare two with wilcoxon_holm_vs_best")
    if n < 2:
        raise ValueError(f"the Friedman test needs at least 2 blocks (tables), got {n}")
    ranks = average_ranks(matrix)
    uncorrected = 12 * n / (k * (k + 1)) * (float(np.sum(ranks**2)) - k * (k + 1) ** 2 / 4)
    result = stats.friedmanchisquare(*matrix.T)
    chi2 = float(result.statistic)
    if not math.isfinite(chi2):  # every block a complete tie: scipy divides 0 by 0
        chi2, p_value = 0.0, 1.0
    else:
        p_value = float(result.pvalue)
    # Iman-Davenport from the tie-corrected chi-square (scipy's); without ties it is Demšar's uncorrected one
    denominator = n * (k - 1) - chi2
    if denominator > 0:
        f_stat = (n - 1) * chi2 / denominator
        f_p = float(stats.f.sf(f_stat, k - 1, (k - 1) * (n - 1)))
    else:  # perfectly consistent rankings: F is infinite
        f_stat, f_p = None, None
    return FriedmanResult(chi2, p_value, float(uncorrected), f_stat, f_p, tuple(float(r) for r in ranks), n, k)


def nemenyi_critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical difference of average ranks, CD = q_alpha sqrt(k(k+1)/(6N)), with q_alpha the
    studentized range quantile over sqrt(2) (Demšar 2006, Table 5a; k=4, N=14: q=2.569, CD=1.25)."""
    _check_positive("n", n)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k must be an int >= 2, got {k!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    q = float(stats.studentized_range.ppf(1 - alpha, k, math.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6 * n))


def nemenyi_groups(ranks: Sequence[float], cd: float) -> list[tuple[int, ...]]:
    """Maximal groups of methods (indices, best rank first) whose average ranks differ by less than `cd`:
    the thick bars of a critical-difference diagram. Singletons are not listed."""
    order = sorted(range(len(ranks)), key=lambda i: ranks[i])
    groups: list[tuple[int, ...]] = []
    for start in range(len(order)):
        end = start
        while end + 1 < len(order) and ranks[order[end + 1]] - ranks[order[start]] < cd:
            end += 1
        group = tuple(order[start : end + 1])
        if len(group) > 1 and not any(set(group) <= set(g) for g in groups):
            groups.append(group)
    return groups


def wilcoxon_holm_vs_best(
    scores: np.ndarray | Sequence[Sequence[float]], names: Sequence[str], alpha: float = 0.05
) -> tuple[str, dict[str, float | None], list[str]]:
    """The method with the best average rank vs each other method: Wilcoxon signed-rank tests over the
    blocks (scipy.stats.wilcoxon, two-sided), Holm-adjusted (Benavoli et al. 2016 recommend this over
    mean-rank post-hoc tests). Returns (best, adjusted p per other method, methods not distinguishable
    from the best at `alpha`, the best included). A comparison with all differences zero has p = 1."""
    matrix = _as_scores(scores)
    if len(names) != matrix.shape[1]:
        raise ValueError(f"{len(names)} names for {matrix.shape[1]} methods")
    ranks = average_ranks(matrix)
    best = int(np.argmin(ranks))
    raw: list[float | None] = []
    others = [i for i in range(len(names)) if i != best]
    for i in others:
        differences = matrix[:, best] - matrix[:, i]
        if not np.any(differences):
            raw.append(1.0)
            continue
        raw.append(float(stats.wilcoxon(matrix[:, best], matrix[:, i]).pvalue))
    adjusted = dict(zip((names[i] for i in others), holm(raw), strict=True))
    tied = [names[best]] + [names[i] for i in others if (adjusted[names[i]] or 0.0) >= alpha]
    return names[best], adjusted, tied


def render_friedman_markdown(names: Sequence[str], result: FriedmanResult, cd: float, alpha: float = 0.05) -> str:
    """Markdown for the board: the Friedman line, the Nemenyi CD, and methods by average rank with the
    groups that are not significantly different."""
    if len(names) != result.n_methods:
        raise ValueError(f"{len(names)} names for {result.n_methods} methods")
    lines = [
        f"Friedman test over N = {result.n_blocks} tables, k = {result.n_methods} methods: "
        f"χ²({result.n_methods - 1}) = {result.statistic:.3f}, p = {result.p_value:.3g}"
        + (
            f"; Iman–Davenport F = {result.iman_davenport:.3f}, p = {result.iman_davenport_p:.3g}"
            if result.iman_davenport is not None
            else ""
        )
        + ".",
        f"Nemenyi critical difference at α = {alpha:g}: CD = {cd:.3f} (average ranks closer than CD are not "
        "significantly different).",
        "",
        "| rank | method | average rank | group |",
        "|---:|---|---:|---|",
    ]
    groups = nemenyi_groups(result.average_ranks, cd)
    letters = {i: "".join(chr(ord("a") + g) for g, group in enumerate(groups) if i in group) for i in range(len(names))}
    order = sorted(range(len(names)), key=lambda i: result.average_ranks[i])
    for position, i in enumerate(order, start=1):
        name = names[i].replace("|", "\\|")
        lines.append(f"| {position} | {name} | {result.average_ranks[i]:.2f} | {letters[i] or '–'} |")
    return "\n".join(lines) + "\n"
