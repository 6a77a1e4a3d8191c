"""mmbench/leaderboard/statistics.py and cd_diagram.py: metric definition, bootstrap coverage, null
distribution of the paired permutation test, rank intervals, and Friedman / Nemenyi against Demšar (2006).

The simulations use a known generative model (below) with fixed seeds, so every assertion is
deterministic; the tolerances are binomial bands justified where they are used.
"""

from __future__ import annotations

import math
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from scipy import stats

from mmbench.errors import RecordError
from mmbench.leaderboard import statistics as st
from mmbench.leaderboard.cd_diagram import cd_diagram

K = 4
ACCURACY = np.array([0.55, 0.65, 0.75, 0.85])  # per-class probability of a correct prediction
ALL = np.ones(K, bool)


# ------------------------------------------------------------------------------------ generative model
def _labels(rng: np.random.Generator, n_units: int, pixels: int = 400) -> np.ndarray:
    """(U, K) labelled pixels per unit; class mix varies by unit (Dirichlet(2))."""
    mix = rng.dirichlet(np.full(K, 2.0), size=n_units)
    return np.array([rng.multinomial(pixels, p) for p in mix])


def _predict(rng: np.random.Generator, labels: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """(U, K, K) confusion matrices: class c correct with accuracy[u, c], errors spread evenly."""
    probs = np.repeat(((1 - accuracy) / (K - 1))[:, :, None], K, axis=2)
    probs[:, np.arange(K), np.arange(K)] = accuracy
    return rng.multinomial(labels, probs)


def _experiment(
    rng: np.random.Generator, n_seeds: int, n_units: int, sd_seed: float, sd_unit: float, shift: float = 0.0
) -> list[np.ndarray]:
    """One method, `n_seeds` seeds evaluated on the SAME `n_units` units (one scenario): accuracy =
    ACCURACY - shift + seed effect (N(0, sd_seed)) + unit effect (N(0, sd_unit), shared by all seeds)."""
    labels = _labels(rng, n_units)
    unit_effect = rng.normal(0, sd_unit, size=(n_units, 1))
    seeds = []
    for _ in range(n_seeds):
        accuracy = np.clip(ACCURACY - shift + rng.normal(0, sd_seed) + unit_effect, 0.01, 0.99)
        seeds.append(_predict(rng, labels, np.broadcast_to(accuracy, (n_units, K)))[None])
    return seeds


def _truth(sd_seed: float) -> float:
    """The estimand: E over the seed effect of the mIoU of the expected (infinitely many units) matrix.
    Class mixes average to 1/K and unit effects to 0, so the expected matrix is diag(a) with the errors
    spread evenly, scaled by 1/K; the seed effect is integrated by 60-point Gauss-Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    values = []
    for delta in nodes * sd_seed:
        a = ACCURACY + delta
        matrix = np.tile(((1 - a) / (K - 1))[:, None], (1, K))
        matrix[np.arange(K), np.arange(K)] = a
        values.append(st.miou(matrix / K))
    return float(np.dot(weights / weights.sum(), values))


# --------------------------------------------------------------------------------------------- metric
def test_statistics_module_imports_without_torch() -> None:
    code = "import sys, mmbench.leaderboard.statistics, mmbench.leaderboard.cd_diagram; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_numpy_miou_agrees_with_evaluation_metrics() -> None:
    pytest.importorskip("torch")
    from mmbench.evaluation.metrics import compute_metrics

    rng = np.random.default_rng(7)
    names = [f"c{i}" for i in range(6)]
    checked = 0
    for trial in range(200):
        matrix = rng.integers(0, 50, size=(6, 6))
        # empty rows/columns and whole classes absent, so the "no union" rule is exercised
        matrix[rng.random(6) < 0.3, :] = 0
        matrix[:, rng.random(6) < 0.3] = 0
        if trial % 17 == 0:
            matrix[:] = 0
        scored_mask = rng.random(6) < 0.7
        if not scored_mask.any():
            scored_mask[trial % 6] = True
        expected = compute_metrics(matrix, names, [n for n, s in zip(names, scored_mask, strict=True) if s])["miou"]
        got = st.miou(matrix, scored_mask)
        if expected is None:
            assert got is None
        else:
            assert got == pytest.approx(expected, abs=1e-12)
            checked += 1
    assert checked > 100  # most trials have a defined mIoU, so the comparison is not vacuous


def test_miou_is_from_summed_matrices_not_mean_of_unit_mious() -> None:
    # Unit 0: 90 px of class 0, all right; 10 px of class 1 predicted as 0. Unit 1: 10 px of class 1, right.
    unit0 = np.array([[90, 0], [10, 0]])
    unit1 = np.array([[0, 0], [0, 10]])
    counts = np.stack([unit0, unit1])[None]  # (S=1, U=2, 2, 2)
    summed = st.miou(unit0 + unit1)
    per_unit = np.mean([st.miou(unit0), st.miou(unit1)])
    assert summed == pytest.approx((0.9 + 0.5) / 2)  # IoU0 = 90/100, IoU1 = 10/20
    assert per_unit == pytest.approx((0.45 + 1.0) / 2)  # unit 0: (0.9 + 0)/2, unit 1: class 1 only = 1
    assert st.miou_per_scenario(counts, [True, True]) == [pytest.approx(summed)]
    assert st.point_estimate([counts], [True, True]).mean == pytest.approx(summed)
    assert abs(summed - per_unit) > 0.02  # 0.700 (what mmbench reports) vs 0.725


def test_aggregate_is_mean_over_scenarios_and_scenario_statistic() -> None:
    good = np.array([[[10, 0], [0, 10]]])  # mIoU 1
    half = np.array([[[10, 0], [10, 0]]])  # IoU 0.5, 0 -> mIoU 0.25
    counts = np.stack([good, half])  # (S=2, U=1, 2, 2)
    assert st.point_estimate([counts], [True, True]).mean == pytest.approx(0.625)
    assert st.point_estimate([counts], [True, True], statistic=1).mean == pytest.approx(0.25)
    # per-scenario class masks: scenario 1 scores class 0 only
    assert st.point_estimate([counts], np.array([[True, True], [True, False]])).mean == pytest.approx(0.75)


# ------------------------------------------------------------------------------------ degenerate inputs
def test_degenerate_inputs_give_values_or_none_never_nan() -> None:
    one = np.array([[[[5, 1], [2, 7]]]])  # 1 scenario, 1 unit
    estimate = st.point_estimate([one], [True, True])
    assert estimate.n == 1 and estimate.std is None and estimate.mean is not None
    ci = st.hierarchical_bootstrap_ci([one], [True, True], n_boot=50)
    assert ci.low == ci.high == pytest.approx(estimate.mean)  # nothing to resample: a point interval

    never = np.array([[[[5, 0, 0], [2, 7, 0], [0, 0, 0]]]])  # class 2 never labelled nor predicted: skipped
    assert st.miou(never[0, 0]) == pytest.approx((5 / 7 + 7 / 9) / 2)

    zero = np.zeros((2, 3, 3, 3), dtype=np.int64)
    assert st.miou(zero[0, 0]) is None
    assert st.point_estimate([zero, zero], np.ones(3, bool)) == st.PointEstimate(None, None, 0, (None, None))
    ci = st.hierarchical_bootstrap_ci([zero], np.ones(3, bool), n_boot=20)
    assert (ci.estimate, ci.low, ci.high) == (None, None, None)
    comparison = st.paired_comparison([zero], [zero], np.ones(3, bool), n_boot=20, n_permutations=20)
    assert (comparison.difference, comparison.low, comparison.high, comparison.p_value) == (None, None, None, None)
    values = [*estimate.per_seed, ci.n_boot]
    assert not any(isinstance(v, float) and math.isnan(v) for v in values)


def test_bad_inputs_raise_one_line_record_errors() -> None:
    good = np.zeros((1, 2, 3, 3), dtype=np.int64)
    with pytest.raises(RecordError, match="same units"):
        st.point_estimate([good, np.zeros((1, 3, 3, 3), dtype=np.int64)], np.ones(3, bool))
    with pytest.raises(RecordError, match="integer counts"):
        st.point_estimate([good.astype(float)], np.ones(3, bool))
    with pytest.raises(RecordError, match="no seed in common"):
        st.paired_comparison({0: good}, {1: good}, np.ones(3, bool))
    with pytest.raises(ValueError, match="classes mask"):
        st.point_estimate([good], np.ones(4, bool))


# ------------------------------------------------------------------------------------- bootstrap coverage
def _coverage(units: str) -> float:
    rng = np.random.default_rng(1234)
    truth = _truth(0.01)
    hits = 0
    for experiment in range(200):
        seeds = _experiment(rng, n_seeds=5, n_units=40, sd_seed=0.01, sd_unit=0.05)
        ci = st.hierarchical_bootstrap_ci(seeds, ALL, n_boot=1000, rng_seed=experiment, units=units)
        assert ci.low is not None and ci.high is not None
        hits += ci.low <= truth <= ci.high
    return hits / 200


def test_bootstrap_interval_covers_the_truth_at_its_nominal_rate() -> None:
    # 200 independent experiments: coverage ~ Binomial(200, 0.95)/200, sd = 0.0154. Accept 3 sd either side
    # (0.904 .. 0.996); measured 0.94 with these seeds. The percentile bootstrap runs slightly narrow with
    # few seeds (5 here), which the lower band allows.
    assert 0.904 <= _coverage("shared") <= 0.996


def test_per_seed_unit_resampling_undercovers_when_units_are_shared() -> None:
    # Why "shared" is the default: every seed is evaluated on the same units, so the units' sampling error
    # does not average out over seeds; drawing units afresh per seed pretends it does (measured 0.755).
    assert _coverage("per-seed") < 0.88


# --------------------------------------------------------------------------------------- paired tests
def _null_pair(rng: np.random.Generator, n_seeds: int = 2, n_units: int = 10, shift: float = 0.0):
    labels = _labels(rng, n_units)
    unit_effect = rng.normal(0, 0.05, size=(n_units, 1))

    def method(offset: float) -> list[np.ndarray]:
        accuracy = np.clip(ACCURACY - offset + unit_effect, 0.01, 0.99)
        return [_predict(rng, labels, np.broadcast_to(accuracy, (n_units, K)))[None] for _ in range(n_seeds)]

    return method(0.0), method(shift)


def test_permutation_p_values_are_uniform_under_the_null() -> None:
    rng = np.random.default_rng(99)
    p_values = []
    for draw in range(200):
        a, b = _null_pair(rng)
        p_values.append(st.paired_comparison(a, b, ALL, n_boot=1, n_permutations=499, rng_seed=draw).p_value)
    # KS against U(0, 1); the 1/500 grid of permutation p-values is far below the KS resolution at n = 200.
    assert stats.kstest(p_values, "uniform").pvalue > 0.01
    # and the test's size: P(p <= 0.05) ~ Binomial(200, 0.05)/200, sd 0.0154; 3 sd above 0.05.
    assert np.mean(np.asarray(p_values) <= 0.05) <= 0.05 + 3 * 0.0154


def test_paired_comparison_detects_a_real_difference_and_reports_dropped_seeds() -> None:
    rng = np.random.default_rng(5)
    a, b = _null_pair(rng, n_seeds=3, n_units=10, shift=0.1)  # b is 10 points less accurate
    result = st.paired_comparison({0: a[0], 1: a[1], 2: a[2]}, {1: b[1], 2: b[2], 7: b[0]}, ALL, n_boot=500)
    assert result.seeds == (1, 2) and result.dropped_a == (0,) and result.dropped_b == (7,)
    assert result.difference is not None and result.difference > 0.05
    assert result.low is not None and result.low > 0
    assert result.p_value is not None and result.p_value < 0.01


def test_difference_of_differences_is_the_change_of_a_paired_gain_between_two_conditions() -> None:
    """x: a and b equally good; y: b 10 points worse. The estimate is exactly the two paired differences'
    difference, and its interval excludes 0; with the same gain in both conditions it includes 0."""
    rng = np.random.default_rng(8)
    x = [dict(enumerate(side)) for side in _null_pair(rng, n_seeds=3, n_units=12)]
    y = [dict(enumerate(side)) for side in _null_pair(rng, n_seeds=3, n_units=12, shift=0.1)]
    y_again = [dict(enumerate(side)) for side in _null_pair(rng, n_seeds=3, n_units=12, shift=0.1)]
    grown = st.difference_of_differences(tuple(x), tuple(y), ALL, ALL, n_boot=400)
    gain_x = st.paired_comparison(*x, ALL, n_boot=1, n_permutations=1).difference
    gain_y = st.paired_comparison(*y, ALL, n_boot=1, n_permutations=1).difference
    assert grown.estimate == pytest.approx(gain_y - gain_x, abs=1e-12)
    assert grown.low is not None and 0 < grown.low < grown.estimate < grown.high
    same = st.difference_of_differences(tuple(y), tuple(y_again), ALL, ALL, n_boot=400)
    assert same.low is not None and same.low < 0 < same.high
    assert abs(same.estimate) < 0.03  # two draws of the same 10-point gain
    # the p is the test each interval inverts: below 0.05 where the interval excludes 0, above where it does not
    assert grown.p_value is not None and grown.p_value < 0.05
    assert same.p_value is not None and same.p_value > 0.05


def test_bootstrap_p_is_twice_the_smaller_share_of_replicates_beside_0() -> None:
    """All of 1,999 replicates above 0: the smallest p, 2 / 2,000, never 0. Replicates centred on 0: p near 1.
    A percentile interval at level 1 − p reaches 0, so it is the interval's own test; NaN replicates (a resample
    scoring no class) are left out as `percentile_bounds` leaves them out."""
    above = np.linspace(0.1, 2.0, 1999)
    assert st.bootstrap_p(above) == pytest.approx(2 / 2000)
    assert st.bootstrap_p(-above) == pytest.approx(2 / 2000)
    centred = np.random.default_rng(3).normal(0.0, 1.0, 1999)
    assert st.bootstrap_p(centred) > 0.8
    shifted = np.random.default_rng(4).normal(1.0, 1.0, 4999)
    p = st.bootstrap_p(shifted)
    assert 0.2 < p < 0.45  # 2 * P(N(1, 1) <= 0) = 0.317
    low, _ = st.percentile_bounds(shifted, 1 - p + 0.01)
    assert low < 0  # a slightly wider interval than 1 - p includes 0 ...
    low, _ = st.percentile_bounds(shifted, 1 - p - 0.01)
    assert low > 0  # ... a slightly narrower one excludes it
    assert st.bootstrap_p(np.concatenate([above, [np.nan] * 50])) == pytest.approx(2 / 2000)
    assert st.bootstrap_p(np.array([np.nan, np.inf])) is None


def test_a_permutation_with_an_undefined_statistic_leaves_the_reference_set() -> None:
    """Only class 1 is scored and no unit has it in the ground truth: a predicts it on unit 0, b on unit 1,
    so T = 0 - 0; a permutation that gives a neither prediction leaves a's IoU undefined. Every defined
    permutation is as extreme as T = 0, so p is exactly 1 (counting the undefined ones would halve it)."""

    def unit(false_class_1: int) -> np.ndarray:
        return np.array([[100 - false_class_1, false_class_1], [0, 0]])

    a = {0: np.stack([unit(10), unit(0)])[None]}
    b = {0: np.stack([unit(0), unit(10)])[None]}
    scored = np.array([False, True])
    assert st.paired_comparison(a, b, scored, n_boot=1, n_permutations=200).p_value == 1.0


def test_paired_intervals_are_paired_comparisons_intervals_computed_together() -> None:
    rng = np.random.default_rng(6)
    a, b = _null_pair(rng, n_seeds=3, n_units=10, shift=0.05)  # every seed on the same units
    best = dict(enumerate(a))
    others = {"b": dict(enumerate(b)), "c": {0: b[2], 1: b[0], 2: b[1]}, "two seeds": {1: b[1], 2: b[0]}}
    others["none"] = {9: b[0]}
    intervals = st.paired_intervals(best, others, ALL, n_boot=300, rng_seed=4)
    assert intervals["none"] is None  # no seed in common: no pair
    for name in ("b", "c", "two seeds"):
        one = st.paired_comparison(best, others[name], ALL, n_boot=300, n_permutations=1, rng_seed=4)
        assert intervals[name] == pytest.approx((one.low, one.high), abs=1e-12)


def test_a_row_is_worse_than_the_best_only_when_the_test_and_the_seed_interval_both_say_so() -> None:
    """Per-seed differences +5, -1, -1 points on many units: the permutation test (seeds held fixed) is
    sure of the mean's +1; resampling the seeds, a replicate of seeds 1 and 2 only gives -1, so the interval
    includes 0 and the row stays tied with the best."""
    rng = np.random.default_rng(8)
    labels = _labels(rng, 60)
    shifts = [0.05, -0.01, -0.01]
    best, other = {}, {}
    for seed, shift in enumerate(shifts):
        best[seed] = _predict(rng, labels, np.broadcast_to(ACCURACY, (60, K)))[None]
        other[seed] = _predict(rng, labels, np.broadcast_to(np.clip(ACCURACY - shift, 0, 1), (60, K)))[None]
    one = st.paired_comparison(best, other, ALL, n_boot=1000, n_permutations=500)
    assert one.p_value is not None and one.p_value < 0.01  # the test alone would call it worse
    assert one.low is not None and one.high is not None and one.low < 0 < one.high
    assert not st.worse_than_best(one.p_value, (one.low, one.high))
    _, group, _ = st.tied_with_best({"best": best, "other": other}, ALL, n_permutations=500)
    assert sorted(group) == ["best", "other"]
    assert st.worse_than_best(0.01, (0.01, 0.03)) and st.worse_than_best(0.01, (-0.03, -0.01))
    assert not st.worse_than_best(0.06, (0.01, 0.03)) and not st.worse_than_best(None, (0.01, 0.03))
    assert not st.worse_than_best(0.01, None) and not st.worse_than_best(0.01, (None, None))


# ------------------------------------------------------------------------------------- ranks in a table
def test_rank_intervals_and_tie_group_with_the_best() -> None:
    rng = np.random.default_rng(11)
    labels = _labels(rng, 12)

    def method(offset: float) -> list[np.ndarray]:
        accuracy = np.clip(ACCURACY - offset, 0.01, 0.99)
        return [_predict(rng, labels, np.broadcast_to(accuracy, (12, K)))[None] for _ in range(3)]

    methods = {"best": method(0.0), "twin": method(0.0), "worse": method(0.2), "worst": method(0.4)}
    replicates, seeds = st.table_replicates(methods, ALL, n_boot=500)
    assert seeds == (0, 1, 2)
    estimates = {name: st.point_estimate(s, ALL).mean for name, s in methods.items()}
    intervals = {r.method: r for r in st.rank_intervals(replicates, estimates)}
    assert (intervals["worse"].low, intervals["worse"].high) == (3, 3)
    assert (intervals["worst"].low, intervals["worst"].high) == (4, 4)
    assert intervals["best"].low == intervals["twin"].low == 1 and intervals["best"].high == intervals["twin"].high == 2
    best, group, p_values = st.tied_with_best(methods, ALL, n_permutations=500)
    assert best in ("best", "twin")
    assert sorted(group) == ["best", "twin"]
    assert p_values["worst"] is not None and p_values["worst"] < 0.05


def test_holm_adjustment_matches_a_hand_computation() -> None:
    # sorted p: 0.01 (x3), 0.02 (x2), 0.04 (x1) -> 0.03, 0.04, 0.04 (monotone), None stays None
    assert st.holm([0.04, 0.01, None, 0.02]) == [pytest.approx(0.04), pytest.approx(0.03), None, pytest.approx(0.04)]


# --------------------------------------------------------------------------------- across many tables
# Demšar (2006), JMLR 7, Table 6: AUC of C4.5, C4.5+m, C4.5+cf, C4.5+m+cf on 14 data sets, given here by
# the ranks the paper prints (higher score = better, so scores = -rank reproduce its ties exactly; the
# printed AUCs of voting tie at 0.975 but the paper ranks them 2 and 3, so ranks are the faithful input).
DEMSAR_RANKS = np.array(
    [
        [4, 3, 2, 1],  # adult (sample)
        [1, 2, 3, 4],  # breast cancer
        [4, 1, 2, 3],  # breast cancer wisconsin
        [4, 1, 3, 2],  # cmc
        [4, 2, 3, 1],  # ionosphere
        [1, 2.5, 4, 2.5],  # iris
        [3, 2, 4, 1],  # liver disorders
        [2.5, 2.5, 4, 1],  # lung cancer
        [4, 3, 2, 1],  # lymphography
        [2.5, 2.5, 2.5, 2.5],  # mushroom
        [4, 2.5, 1, 2.5],  # primary tumor
        [3, 2, 4, 1],  # rheum
        [4, 1, 2, 3],  # voting
        [3, 1, 4, 2],  # wine
    ]
)


def test_friedman_reproduces_demsar_table_6() -> None:
    result = st.friedman(-DEMSAR_RANKS)
    assert result.average_ranks == pytest.approx((3.143, 2.000, 2.893, 1.964), abs=5e-4)
    assert result.statistic_uncorrected == pytest.approx(9.28, abs=5e-3)  # Demšar: chi2_F = 9.28
    # scipy divides by the tie correction 1 - sum(t^3 - t) / (N k (k^2 - 1)) = 1 - 78/840 (ties: iris,
    # lung cancer, primary tumor (pairs), mushroom (all four))
    assert result.statistic == pytest.approx(result.statistic_uncorrected / (1 - 78 / 840))
    assert result.statistic == pytest.approx(stats.friedmanchisquare(*(-DEMSAR_RANKS).T).statistic)
    uncorrected_f = 13 * result.statistic_uncorrected / (14 * 3 - result.statistic_uncorrected)
    assert uncorrected_f == pytest.approx(3.69, abs=5e-3)  # Demšar: F_F = 3.69 (ties uncorrected)
    assert result.iman_davenport is not None and result.iman_davenport > uncorrected_f


def test_friedman_textbook_example_without_ties() -> None:
    # Friedman (1937)-style check by hand: 3 blocks, 3 methods, identical rankings -> R = (1, 2, 3),
    # chi2 = 12 N / (k (k+1)) * sum(R_j^2) - 3 N (k+1) = 12*3/12 * 14 - 36 = 6 (scipy: p = exp(-3)).
    result = st.friedman([[3, 2, 1], [30, 20, 10], [0.3, 0.2, 0.1]])
    assert result.statistic == pytest.approx(6.0)
    assert result.p_value == pytest.approx(math.exp(-3))
    assert result.iman_davenport is None  # perfectly consistent rankings: F_F is infinite


def test_friedman_requires_three_methods_and_two_blocks() -> None:
    with pytest.raises(ValueError, match="at least 3 methods"):
        st.friedman([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="at least 2 blocks"):
        st.friedman([[1, 2, 3]])


def test_nemenyi_critical_difference_matches_demsar() -> None:
    # Demšar (2006), section 3.2.4 / Table 5(a): k = 4, N = 14, q_0.05 = 2.569, CD = 1.25
    assert nemenyi_q(4) == pytest.approx(2.569, abs=5e-4)
    assert st.nemenyi_critical_difference(4, 14) == pytest.approx(1.25, abs=5e-3)
    # ... and at alpha = 0.10: q_0.10 = 2.291, CD = 1.12
    assert st.nemenyi_critical_difference(4, 14, alpha=0.10) == pytest.approx(1.12, abs=5e-3)
    # Table 5(a) also lists q_0.05 for k = 10: 3.164
    assert nemenyi_q(10) == pytest.approx(3.164, abs=5e-4)


def nemenyi_q(k: int) -> float:
    return st.nemenyi_critical_difference(k, 1) / math.sqrt(k * (k + 1) / 6)


def test_nemenyi_groups_and_markdown() -> None:
    ranks = (3.143, 2.000, 2.893, 1.964)
    cd = st.nemenyi_critical_difference(4, 14)
    assert st.nemenyi_groups(ranks, cd) == [(3, 1, 2, 0)]  # Demšar: no pair differs by >= CD
    assert st.nemenyi_groups((1.0, 2.0, 3.5), 1.2) == [(0, 1)]
    names = ["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"]
    text = st.render_friedman_markdown(names, st.friedman(-DEMSAR_RANKS), cd)
    assert "N = 14 tables, k = 4 methods" in text and "CD = 1.254" in text
    assert text.splitlines()[5].startswith("| 1 | C4.5+m+cf | 1.96 | a |")


def test_wilcoxon_holm_vs_best() -> None:
    rng = np.random.default_rng(3)
    base = rng.random(20)
    scores = np.stack([base + 0.1, base + 0.1 + rng.normal(0, 0.01, 20), base, base - 0.2], axis=1)
    best, adjusted, tied = st.wilcoxon_holm_vs_best(scores, ["a", "b", "c", "d"])
    assert best in ("a", "b")
    assert set(tied) == {"a", "b"}
    assert all(adjusted[name] < 0.001 for name in ("c", "d"))


# ------------------------------------------------------------------------------------------ CD diagram
def test_cd_diagram_svg() -> None:
    names = ["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf <x>"]
    svg = cd_diagram(names, [3.143, 2.0, 2.893, 1.964], 1.25, title="Demšar 2006")
    root = ET.fromstring(svg)
    assert float(root.get("width")) >= 640 and float(root.get("height")) > 100
    methods = root.findall(".//*[@class='method']")
    assert sorted(m.get("data-method") for m in methods) == sorted(names)
    assert len(root.findall(".//*[@class='group']")) == 1
    assert "C4.5+m+cf &lt;x&gt; (1.96)" in svg and "CD = 1.25" in svg
    split = cd_diagram(names, [1.0, 1.5, 3.5, 4.0], 1.25)
    assert len(ET.fromstring(split).findall(".//*[@class='group']")) == 2
    no_test = cd_diagram(names, [1.0, 1.5, 3.5, 4.0], None)
    assert "CD =" not in no_test and not ET.fromstring(no_test).findall(".//*[@class='group']")


def test_joint_table_replicates_equal_each_methods_own_replicates() -> None:
    rng = np.random.default_rng(21)
    methods = {name: [rng.integers(0, 50, size=(2, 5, K, K)) for _ in range(3)] for name in "abc"}
    joint, _ = st.table_replicates(methods, ALL, n_boot=300, rng_seed=4)
    for units in ("shared", "per-seed"):
        resampling = st.draw_resampling(3, 5, n_boot=300, rng_seed=4, units=units)
        alone = {name: st.bootstrap_replicates(seeds, ALL, resampling) for name, seeds in methods.items()}
        if units == "shared":
            for name in methods:
                np.testing.assert_allclose(joint[name], alone[name], rtol=1e-12)
        # the replicates are real resamples: they vary, and centre near the point estimate
        for name, seeds in methods.items():
            assert np.std(alone[name]) > 0
            assert abs(np.mean(alone[name]) - st.point_estimate(seeds, ALL).mean) < 3 * np.std(alone[name])
