"""Metrics: one global confusion matrix, None for undefined values, nan-mean over scored classes.

Checked against two independent implementations (torchmetrics, and the textbook formulas written out
with plain loops here) and on the edge cases that make published numbers disagree (docs/protocols.md, "Metrics").
"""

from __future__ import annotations

import copy
import json
import math

import jsonschema
import numpy as np
import pytest
import torch
from record_helpers import minimal_record

from mmbench.evaluation.metrics import ConfusionMatrix, compute_metrics, recompute_matches
from mmbench.records import record_schema, validate_record

IGNORE = 255


# ---------------------------------------------------------------- independent reference implementations


def loop_confusion(prediction: np.ndarray, target: np.ndarray, k: int, ignore: int = IGNORE) -> np.ndarray:
    """Pixel by pixel, the obvious way."""
    counts = np.zeros((k, k), dtype=np.int64)
    for p, t in zip(prediction.ravel().tolist(), target.ravel().tolist(), strict=True):
        if t != ignore:
            counts[t, p] += 1
    return counts


def textbook(counts: np.ndarray) -> dict:
    """The formulas of docs/protocols.md ("Metrics") with loops; NaN marks an undefined value."""
    k = counts.shape[0]
    total = 0
    trace = 0
    iou, f1, precision, recall, pred_sums, label_sums = [], [], [], [], [], []
    for c in range(k):
        i = int(counts[c, c])
        p = sum(int(counts[r, c]) for r in range(k))
        lab = sum(int(counts[c, r]) for r in range(k))
        pred_sums.append(p)
        label_sums.append(lab)
        trace += i
        total += lab
        iou.append(i / (p + lab - i) if p + lab - i else math.nan)
        f1.append(2 * i / (p + lab) if p + lab else math.nan)
        precision.append(i / p if p else math.nan)
        recall.append(i / lab if lab else math.nan)
    oa = trace / total if total else math.nan
    p_e = sum(pred_sums[c] * label_sums[c] for c in range(k)) / total**2 if total else math.nan
    kappa = (oa - p_e) / (1 - p_e) if total and p_e != 1 else math.nan

    def nanmean(values: list[float]) -> float:
        kept = [v for v in values if not math.isnan(v)]
        return sum(kept) / len(kept) if kept else math.nan

    return {
        "iou": iou,
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "oa": oa,
        "kappa": kappa,
        "miou": nanmean(iou),
        "mf1": nanmean(f1),
    }


def assert_same(ours: float | None, reference: float, tol: float = 1e-12) -> None:
    if math.isnan(reference):
        assert ours is None
    else:
        assert ours is not None and type(ours) is float
        assert ours == pytest.approx(reference, abs=tol)


def random_batch(seed: int, k: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Class k-1 never appears; class k-2 only in predictions; class 3 never predicted; ~10% ignored."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, k - 2, (3, 12, 10), generator=g)
    prediction = torch.where(
        torch.rand(target.shape, generator=g) < 0.6, target, torch.randint(0, k - 1, target.shape, generator=g)
    )
    prediction[prediction == 3] = 0
    target[torch.rand(target.shape, generator=g) < 0.1] = IGNORE
    return prediction, target


def names(k: int) -> list[str]:
    return [f"c{i}" for i in range(k)]


# ---------------------------------------------------------------- agreement with independent implementations


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_agrees_with_textbook_formulas(seed):
    prediction, target = random_batch(seed)
    cm = ConfusionMatrix(7)
    cm.update(prediction, target)
    counts = loop_confusion(prediction.numpy(), target.numpy(), 7)
    assert cm.as_lists() == counts.tolist()

    ours = compute_metrics(cm.matrix, names(7))
    ref = textbook(counts)
    for key in ("miou", "mf1", "oa", "kappa"):
        assert_same(ours[key], ref[key])
    for c, name in enumerate(names(7)):
        for key in ("iou", "f1", "precision", "recall"):
            assert_same(ours["per_class"][name][key], ref[key][c])
    # The designed-in cases really occur in the random data.
    assert ours["per_class"]["c6"] == {"iou": None, "f1": None, "precision": None, "recall": None}
    assert ours["per_class"]["c5"]["iou"] == 0.0 and ours["per_class"]["c5"]["recall"] is None
    assert ours["per_class"]["c3"]["precision"] is None and ours["per_class"]["c3"]["recall"] == 0.0


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_agrees_with_torchmetrics_where_both_are_defined(seed):
    tmc = pytest.importorskip("torchmetrics.classification")
    k = 7
    prediction, target = random_batch(seed, k)
    cm = ConfusionMatrix(k)
    cm.update(prediction, target)
    ours = compute_metrics(cm.matrix, names(k))
    counts = cm.matrix.numpy()

    per_class = {
        "iou": tmc.MulticlassJaccardIndex(num_classes=k, average="none", ignore_index=IGNORE),
        "f1": tmc.MulticlassF1Score(num_classes=k, average="none", ignore_index=IGNORE),
        "precision": tmc.MulticlassPrecision(num_classes=k, average="none", ignore_index=IGNORE),
        "recall": tmc.MulticlassRecall(num_classes=k, average="none", ignore_index=IGNORE),
    }
    # Denominators that make a value undefined, from the matrix: then ours must be None (torchmetrics
    # reports 0 for some of these, which is exactly the convention mmbench avoids).
    pred_sums, label_sums, diag = counts.sum(0), counts.sum(1), np.diag(counts)
    undefined = {
        "iou": pred_sums + label_sums - diag == 0,
        "f1": pred_sums + label_sums == 0,
        "precision": pred_sums == 0,
        "recall": label_sums == 0,
    }
    for key, metric in per_class.items():
        theirs = metric(prediction, target).double().tolist()
        for c, name in enumerate(names(k)):
            value = ours["per_class"][name][key]
            if undefined[key][c]:
                assert value is None, (key, name)
            else:
                assert value == pytest.approx(theirs[c], abs=1e-6), (key, name)
    assert any(undefined["precision"]) and any(undefined["recall"]) and any(undefined["iou"])

    kappa = tmc.MulticlassCohenKappa(num_classes=k, ignore_index=IGNORE)(prediction, target).item()
    oa = tmc.MulticlassAccuracy(num_classes=k, average="micro", ignore_index=IGNORE)(prediction, target).item()
    assert ours["kappa"] == pytest.approx(kappa, abs=1e-6)
    assert ours["oa"] == pytest.approx(oa, abs=1e-6)


# ---------------------------------------------------------------- edge cases


def test_absent_class_is_none_everywhere_and_left_out_of_the_means():
    counts = [[3, 1, 0], [1, 2, 0], [0, 0, 0]]
    metrics = compute_metrics(counts, ["a", "b", "absent"])
    assert metrics["per_class"]["absent"] == {"iou": None, "f1": None, "precision": None, "recall": None}
    assert metrics["miou"] == pytest.approx((3 / 5 + 2 / 4) / 2)
    assert metrics["mf1"] == pytest.approx((6 / 8 + 4 / 6) / 2)
    assert metrics["classes_scored"] == ["a", "b", "absent"]


def test_class_present_only_in_predictions_scores_zero_iou_and_counts_in_the_mean():
    counts = [[2, 2], [0, 0]]  # class b predicted twice, never labelled
    metrics = compute_metrics(counts, ["a", "b"])
    assert metrics["per_class"]["b"] == {"iou": 0.0, "f1": 0.0, "precision": 0.0, "recall": None}
    assert metrics["per_class"]["a"] == {"iou": 0.5, "f1": pytest.approx(2 / 3), "precision": 1.0, "recall": 0.5}
    assert metrics["miou"] == 0.25


def test_all_ignored_batches_leave_the_matrix_zero_and_every_metric_none():
    cm = ConfusionMatrix(3)
    cm.update(torch.randint(0, 3, (2, 4, 4)), torch.full((2, 4, 4), IGNORE))
    cm.update(torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64))
    assert cm.as_lists() == [[0] * 3] * 3
    metrics = compute_metrics(cm.matrix, ["a", "b", "c"])
    assert [metrics[key] for key in ("miou", "mf1", "oa", "kappa")] == [None] * 4
    assert all(value is None for scores in metrics["per_class"].values() for value in scores.values())


def test_single_class():
    cm = ConfusionMatrix(1)
    cm.update(torch.zeros(2, 3, 3, dtype=torch.int64), torch.tensor([0, 0, 0, IGNORE] * 4 + [0, 0]).reshape(2, 3, 3))
    assert cm.as_lists() == [[14]]
    metrics = compute_metrics(cm.matrix, ["only"])
    assert metrics["miou"] == metrics["mf1"] == metrics["oa"] == 1.0
    assert metrics["kappa"] is None  # p_e == 1: chance agreement is perfect, kappa undefined


def test_kappa_can_be_negative_and_is_none_only_when_chance_agreement_is_certain():
    assert compute_metrics([[0, 5], [5, 0]], ["a", "b"])["kappa"] == -1.0
    assert compute_metrics([[0, 5], [0, 0]], ["a", "b"])["kappa"] == 0.0
    assert compute_metrics([[5, 0], [0, 0]], ["a", "b"])["kappa"] is None


def test_several_updates_equal_one_update_on_the_concatenation():
    batches = [random_batch(seed) for seed in range(3)]
    several = ConfusionMatrix(7)
    for prediction, target in batches:
        several.update(prediction, target)
    once = ConfusionMatrix(7)
    once.update(torch.cat([p for p, _ in batches]), torch.cat([t for _, t in batches]))
    assert torch.equal(several.matrix, once.matrix)


def test_accumulation_is_global_not_per_image_averaged():
    # Image A is perfect (mIoU 1); image B predicts mostly class 1 where class 0 is (mIoU 0.125).
    image_a = (torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 1]))
    image_b = (torch.tensor([1, 1, 1, 0]), torch.tensor([0, 0, 0, 0]))
    cm = ConfusionMatrix(2)
    per_image = []
    for prediction, target in (image_a, image_b):
        cm.update(prediction, target)
        single = ConfusionMatrix(2)
        single.update(prediction, target)
        per_image.append(compute_metrics(single.matrix, ["a", "b"])["miou"])
    assert per_image == [1.0, 0.125]
    assert cm.as_lists() == [[3, 3], [0, 2]]
    # Global: IoU_a = 3/6, IoU_b = 2/5 -> 0.45, not the per-image average 0.5625.
    assert compute_metrics(cm.matrix, ["a", "b"])["miou"] == pytest.approx(0.45)
    assert sum(per_image) / 2 == pytest.approx(0.5625)


def test_merge_adds_counts_and_refuses_incompatible_matrices():
    (p1, t1), (p2, t2) = random_batch(0), random_batch(1)
    left, right, both = ConfusionMatrix(7), ConfusionMatrix(7), ConfusionMatrix(7)
    left.update(p1, t1)
    right.update(p2, t2)
    both.update(p1, t1)
    both.update(p2, t2)
    left.merge(right)
    assert torch.equal(left.matrix, both.matrix)
    with pytest.raises(ValueError, match="3-class matrix into a 7-class"):
        left.merge(ConfusionMatrix(3))
    with pytest.raises(ValueError, match="different ignore indices"):
        left.merge(ConfusionMatrix(7, ignore_index=-1))


def test_lists_round_trip_through_json():
    prediction, target = random_batch(5)
    cm = ConfusionMatrix(7, ignore_index=IGNORE)
    cm.update(prediction, target)
    rows = json.loads(json.dumps(cm.as_lists()))
    assert all(type(value) is int for row in rows for value in row)
    again = ConfusionMatrix.from_lists(rows, ignore_index=IGNORE)
    assert again.matrix.dtype == torch.int64 and torch.equal(again.matrix, cm.matrix)
    assert again.num_classes == 7 and again.ignore_index == IGNORE
    assert again.as_lists() == rows


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[1, 2]], "square"),
        ([[1, -2], [0, 1]], "negative"),
        ([[1.5, 0], [0, 1]], "integer"),
        ([], "square"),
        ([[True, False], [False, True]], "integer"),
        ([[1, 2], [3]], "square"),
    ],
)
def test_from_lists_rejects_malformed_matrices(rows, message):
    with pytest.raises(ValueError, match=message):
        ConfusionMatrix.from_lists(rows)


def test_matrix_property_is_a_copy():
    cm = ConfusionMatrix(2)
    cm.matrix[0, 0] = 99
    assert cm.as_lists() == [[0, 0], [0, 0]]


def test_classes_scored_changes_only_the_means():
    counts = [[5, 1, 2], [1, 4, 0], [3, 0, 1]]
    every = compute_metrics(counts, ["road", "car", "clutter"])
    scored = compute_metrics(counts, ["road", "car", "clutter"], classes_scored=["car", "road"])
    assert scored["classes_scored"] == ["road", "car"]  # canonical order
    assert scored["per_class"] == every["per_class"]
    assert scored["oa"] == every["oa"] and scored["kappa"] == every["kappa"]
    iou = {name: value["iou"] for name, value in every["per_class"].items()}
    f1 = {name: value["f1"] for name, value in every["per_class"].items()}
    assert scored["miou"] == pytest.approx((iou["road"] + iou["car"]) / 2) != every["miou"]
    assert scored["mf1"] == pytest.approx((f1["road"] + f1["car"]) / 2) != every["mf1"]
    assert counts == [[5, 1, 2], [1, 4, 0], [3, 0, 1]]


def test_scored_classes_without_defined_values_give_none_means():
    metrics = compute_metrics([[4, 0], [0, 0]], ["a", "b"], classes_scored=["b"])
    assert metrics["miou"] is None and metrics["mf1"] is None and metrics["oa"] == 1.0


def test_unknown_scored_class_names_are_named_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown classes \['Clutter'\]; valid classes are \['road', 'clutter'\]"):
        compute_metrics([[1, 0], [0, 1]], ["road", "clutter"], classes_scored=["road", "Clutter"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"class_names": ["a"]}, "1 class names for a 2x2"),
        ({"class_names": ["a", "a"]}, "unique"),
        ({"class_names": ["a", "b"], "classes_scored": []}, "empty"),
        ({"class_names": ["a", "b"], "classes_scored": ["a", "a"]}, "more than once"),
    ],
)
def test_inconsistent_class_lists_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        compute_metrics([[1, 0], [0, 1]], **kwargs)


def test_out_of_range_values_raise_naming_them_and_count_nothing():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"target values \[3, 7\] are outside \[0, 3\)"):
        cm.update(torch.tensor([0, 1, 2, 0]), torch.tensor([0, 3, 7, IGNORE]))
    with pytest.raises(ValueError, match=r"prediction values \[-1, 4\] are outside \[0, 3\)"):
        cm.update(torch.tensor([-1, 4, 2]), torch.tensor([0, 1, 2]))
    assert cm.as_lists() == [[0] * 3] * 3
    # A prediction at an ignored pixel is never looked at.
    cm.update(torch.tensor([9, 1]), torch.tensor([IGNORE, 1]))
    assert cm.as_lists() == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]


def test_ignore_index_inside_the_class_range_drops_that_label():
    cm = ConfusionMatrix(3, ignore_index=2)
    cm.update(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 2, 2, 1]))
    assert cm.as_lists() == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64])
def test_integer_dtypes_count_the_same(dtype):
    prediction, target = random_batch(7)
    reference = ConfusionMatrix(7)
    reference.update(prediction, target)
    if dtype == torch.int8:  # int8 cannot hold 255: use -1 as the ignore label
        target = torch.where(target == IGNORE, -1, target)
        cm = ConfusionMatrix(7, ignore_index=-1)
    else:
        cm = ConfusionMatrix(7)
    cm.update(prediction.to(dtype), target.to(dtype))
    assert torch.equal(cm.matrix, reference.matrix)


def test_int8_products_do_not_overflow():
    cm = ConfusionMatrix(20)  # 19 * 20 + 19 = 399 does not fit in int8
    cm.update(torch.tensor([19], dtype=torch.int8), torch.tensor([19], dtype=torch.int8))
    assert cm.matrix[19, 19] == 1 and cm.matrix.sum() == 1


def test_bad_inputs_to_update_raise():
    cm = ConfusionMatrix(3)
    with pytest.raises(TypeError, match="integer class ids"):
        cm.update(torch.zeros(4), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(TypeError, match="integer class ids"):
        cm.update(torch.zeros(4, dtype=torch.int64), torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="same shape"):
        cm.update(torch.zeros(2, 2, dtype=torch.int64), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        ConfusionMatrix(0)


def test_matrix_forms_give_identical_results_as_python_floats():
    counts = [[50, 3, 0], [7, 20, 1], [2, 0, 9]]
    results = [
        compute_metrics(form, ["a", "b", "c"])
        for form in (
            counts,
            np.array(counts, dtype=np.uint32),
            torch.tensor(counts),
            ConfusionMatrix.from_lists(counts),
        )
    ]
    assert all(result == results[0] for result in results)
    values = [results[0][key] for key in ("miou", "mf1", "oa", "kappa")]
    values += [v for scores in results[0]["per_class"].values() for v in scores.values()]
    assert all(type(value) is float for value in values)
    with pytest.raises(ValueError, match="integer counts"):
        compute_metrics(torch.tensor(counts, dtype=torch.float64), ["a", "b", "c"])


def test_huge_counts_do_not_overflow():
    big = 3 * 10**12  # total**2 would overflow int64
    metrics = compute_metrics([[big, big], [0, 2 * big]], ["a", "b"])
    assert metrics["oa"] == pytest.approx(0.75)
    # p_o = 3/4, p_e = (1/4 * 2/4) + (3/4 * 2/4) = 1/2 -> kappa = 1/2
    assert metrics["kappa"] == pytest.approx(0.5)


# ---------------------------------------------------------------- recompute_matches


def test_recompute_matches_accepts_faithful_records_and_flags_tampered_ones():
    counts = [[50, 3, 0], [7, 20, 1], [0, 0, 0]]
    class_names, scored = ["a", "b", "c"], ["a", "b"]
    stored = json.loads(json.dumps(compute_metrics(counts, class_names, scored)))
    assert recompute_matches(stored, counts, class_names, scored) == []
    assert recompute_matches(stored, torch.tensor(counts), class_names, scored) == []

    tampered = copy.deepcopy(stored)
    tampered["miou"] += 1e-6
    tampered["per_class"]["c"]["recall"] = 0.0  # c is predicted once, never labelled: recall undefined
    tampered["per_class"]["b"]["recall"] = None
    problems = recompute_matches(tampered, counts, class_names, scored)
    assert len(problems) == 3
    assert problems[0].startswith("miou: stored") and "difference 1e-06" in problems[0]
    assert "per_class/c/recall: stored 0.0, recomputed None" in problems
    assert any(p.startswith("per_class/b/recall: stored None, recomputed 0.7") for p in problems)

    # The same record checked against the all-classes policy: both means and the policy disagree.
    every = compute_metrics(counts, class_names)
    assert recompute_matches(stored, counts, class_names, None) == [
        f"{key}: stored {stored[key]!r}, recomputed {every[key]!r} "
        f"(difference {abs(stored[key] - every[key]):.3g} > 1e-09)"
        for key in ("miou", "mf1")
    ] + ["classes_scored: stored ['a', 'b'], expected ['a', 'b', 'c']"]


def test_recompute_matches_reports_missing_and_malformed_values():
    counts = [[3, 1], [0, 2]]
    stored = compute_metrics(counts, ["a", "b"])
    missing = copy.deepcopy(stored)
    del missing["kappa"]
    del missing["per_class"]["b"]
    missing["per_class"]["z"] = {"iou": 1.0, "f1": 1.0, "precision": 1.0, "recall": 1.0}
    missing["oa"] = float("nan")
    problems = recompute_matches(missing, counts, ["a", "b"], None)
    assert any(p.startswith("kappa: missing") for p in problems)
    assert "per_class/b: missing from the stored metrics" in problems
    assert any(p.startswith("per_class: stored classes ['z']") for p in problems)
    assert any(p.startswith("oa: stored nan is not finite") for p in problems)
    assert recompute_matches(stored, [[3, 1]], ["a", "b"], None)[0].startswith("cannot recompute metrics:")
    assert recompute_matches(stored, counts, ["a", "b"], ["x"])[0].startswith("cannot recompute metrics:")
    assert recompute_matches(stored, counts, ["a", "b"], None, tolerance=0.0) == []


# ---------------------------------------------------------------- record schema


def scenario_with(metrics: dict, counts: list[list[int]]) -> dict:
    return {"name": "optical only", "available": ["optical"], "metrics": metrics, "confusion_matrix": counts}


def test_results_validate_against_the_record_schema():
    schema = record_schema()
    scenario_schema = {"$defs": schema["$defs"], "$ref": "#/$defs/scenario"}
    validator = jsonschema.Draft202012Validator(scenario_schema)
    prediction, target = random_batch(3)
    cm = ConfusionMatrix(7)
    cm.update(prediction, target)
    for metrics in (compute_metrics(cm.matrix, names(7)), compute_metrics([[0, 0], [0, 0]], ["a", "b"])):
        scenario = json.loads(json.dumps(scenario_with(metrics, cm.as_lists()), allow_nan=False))
        validator.validate(scenario)

    record = minimal_record()
    record["scenarios"] = [scenario_with(compute_metrics(cm.matrix, names(7), ["c0", "c1"]), cm.as_lists())]
    validate_record(record)
    broken = copy.deepcopy(record)
    broken["scenarios"][0]["metrics"]["miou"] = "0.5"
    with pytest.raises(Exception, match="scenarios/0/metrics/miou"):
        validate_record(broken)


# ---------------------------------------------------------------- devices


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_counts_on_the_inputs_device_and_accumulates_on_its_own():
    prediction, target = random_batch(4)
    reference = ConfusionMatrix(7)
    reference.update(prediction, target)
    on_gpu = ConfusionMatrix(7, device="cuda")
    on_gpu.update(prediction.cuda(), target.cuda())
    assert on_gpu.matrix.device.type == "cuda"
    on_cpu = ConfusionMatrix(7)
    on_cpu.update(prediction.cuda(), target.cuda())
    assert torch.equal(on_gpu.matrix.cpu(), reference.matrix) and torch.equal(on_cpu.matrix, reference.matrix)
    on_cpu.merge(on_gpu)
    assert torch.equal(on_cpu.matrix, 2 * reference.matrix)
    with pytest.raises(ValueError, match=r"prediction values \[9\]"):
        on_gpu.update(torch.tensor([9], device="cuda"), torch.tensor([0], device="cuda"))
