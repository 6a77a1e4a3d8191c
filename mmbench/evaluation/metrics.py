"""Segmentation metrics from one global confusion matrix.

Why this module is strict (docs/protocols.md, "Metrics"): published numbers for the same method differ
because codebases average per image instead of per data set, score absent classes as 0 instead of skipping
them, or silently count label values that should never occur. mmbench therefore

* accumulates a single int64 confusion matrix over the whole test set (rows = ground truth, columns =
  prediction), with the ignore label removed before counting, and stores that matrix in every run record,
  so every number can be recomputed later (`recompute_matches`);
* derives every metric from that matrix alone, in float64 (exact integer arithmetic where it matters);
* reports a value whose denominator is zero as ``None`` (JSON null), never 0 and never NaN, and takes
  mIoU / mF1 as the mean over the scored classes whose value is defined (nan-mean, as mmsegmentation's
  ``IoUMetric``), so a class absent from a test split neither drags the mean down nor inflates it;
* treats an out-of-range label or prediction as a bug in a method or a data set, and raises.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["PER_CLASS_KEYS", "SUMMARY_KEYS", "ConfusionMatrix", "compute_metrics", "recompute_matches"]

SUMMARY_KEYS = ("miou", "mf1", "oa", "kappa")
PER_CLASS_KEYS = ("iou", "f1", "precision", "recall")
_MAX_LISTED_VALUES = 10


def _check_int(name: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _is_integer_dtype(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


def _listed(values: torch.Tensor) -> str:
    """The distinct offending values, sorted and capped, for an error message."""
    unique = torch.unique(values).tolist()
    shown = ", ".join(str(v) for v in unique[:_MAX_LISTED_VALUES])
    more = f", ... ({len(unique)} distinct)" if len(unique) > _MAX_LISTED_VALUES else ""
    return f"[{shown}{more}]"


class ConfusionMatrix:
    """int64 confusion matrix accumulated globally over a test set (rows = ground truth, columns = prediction).

    Accumulating counts (not per-image scores) is what makes mmbench's mIoU the data-set-level mIoU of
    DELIVER, GeoSeg and mmsegmentation; per-image averaging gives different, usually higher, numbers.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: str | torch.device = "cpu") -> None:
        self._num_classes = _check_int("num_classes", num_classes, minimum=1)
        self._ignore_index = _check_int("ignore_index", ignore_index)
        self._matrix = torch.zeros((self._num_classes, self._num_classes), dtype=torch.int64, device=device)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def ignore_index(self) -> int:
        return self._ignore_index

    @property
    def device(self) -> torch.device:
        return self._matrix.device

    @property
    def matrix(self) -> torch.Tensor:
        """(K, K) int64 on the accumulation device; a copy, so callers cannot alter the accumulated counts."""
        return self._matrix.clone()

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix(num_classes={self._num_classes}, ignore_index={self._ignore_index}, "
            f"device={str(self.device)!r}, total={int(self._matrix.sum())})"
        )

    def reset(self) -> None:
        """Zero the counts (reuse one instance across scenarios)."""
        self._matrix.zero_()

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add the pixels of one batch; pixels whose target is `ignore_index` are not counted.

        Counting is one ``torch.bincount`` on the inputs' device. Ignored pixels go to an extra bin and
        out-of-range pixels to a second extra bin, instead of being removed with a boolean mask, because
        masking has a data-dependent size and would force a device-to-host sync of its own. An
        out-of-range pixel makes ``bincount``'s output one bin longer, and that length is known on the host
        once ``bincount`` returns, so validation costs no additional sync; only the error path inspects values.
        """
        if not isinstance(prediction, torch.Tensor) or not isinstance(target, torch.Tensor):
            raise TypeError(
                f"prediction and target must be torch tensors, got {type(prediction).__name__} and "
                f"{type(target).__name__}"
            )
        for name, tensor in (("prediction", prediction), ("target", target)):
            if not _is_integer_dtype(tensor.dtype):
                raise TypeError(f"{name} must hold integer class ids, not {tensor.dtype}")
        if prediction.shape != target.shape:
            raise ValueError(
                f"prediction and target must have the same shape, got {tuple(prediction.shape)} and "
                f"{tuple(target.shape)}"
            )
        if prediction.device != target.device:
            raise ValueError(f"prediction is on {prediction.device} but target is on {target.device}")

        k = self._num_classes
        ignored_bin, invalid_bin = k * k, k * k + 1
        # int64 before any arithmetic: target * k would overflow int8/uint8 inputs.
        t = target.reshape(-1).to(torch.int64)
        p = prediction.reshape(-1).to(torch.int64)
        ignored = t == self._ignore_index
        bad_target = ((t < 0) | (t >= k)) & ~ignored
        bad_prediction = ((p < 0) | (p >= k)) & ~ignored
        key = torch.where(ignored, ignored_bin, t * k + p)
        key = torch.where(bad_target | bad_prediction, invalid_bin, key)
        counts = torch.bincount(key, minlength=ignored_bin + 1)
        if counts.numel() > ignored_bin + 1:
            problems = []
            if bool(bad_target.any()):
                problems.append(
                    f"target values {_listed(t[bad_target])} are outside [0, {k}) and are not the ignore index "
                    f"{self._ignore_index}"
                )
            if bool(bad_prediction.any()):
                problems.append(f"prediction values {_listed(p[bad_prediction])} are outside [0, {k})")
            raise ValueError("; ".join(problems) + " (a bug in the method or the data set; nothing was counted)")
        self._matrix += counts[: k * k].reshape(k, k).to(self._matrix.device)

    def update_from_logits(self, logits: torch.Tensor, target: torch.Tensor, backend: str = "auto") -> None:
        """`update(logits.max(1).indices, target)`, with one fused Triton pass on CUDA.

        `backend`: "auto" (Triton for CUDA tensors when triton is installed), "torch" or "triton". Both
        use torch.max's first-maximum rule, so they count exactly the same pixels; on an invalid target
        the eager path raises its detailed error and nothing is counted.
        """
        if backend not in ("auto", "torch", "triton"):
            raise ValueError(f"backend must be auto, torch or triton, got {backend!r}")
        if backend == "auto":
            from mmbench.kernels.triton_runtime import triton_available

            backend = "triton" if logits.device.type == "cuda" and triton_available() else "torch"
        if backend == "torch":
            self.update(logits.max(1).indices, target)
            return
        from mmbench.kernels.confusion_triton import confusion_counts

        if not _is_integer_dtype(target.dtype):
            raise TypeError(f"target must hold integer class ids, not {target.dtype}")
        k = self._num_classes
        counts = confusion_counts(logits, target, k, self._ignore_index)
        if int(counts[k * k + 1]):
            self.update(logits.max(1).indices, target)  # raises the reference's message; nothing counted
        self._matrix += counts[: k * k].reshape(k, k).to(self._matrix.device, torch.int64)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another matrix's counts (from another process, shard or device)."""
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"can only merge a ConfusionMatrix, not {type(other).__name__}")
        if other.num_classes != self._num_classes:
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix into a {self._num_classes}-class one")
        if other.ignore_index != self._ignore_index:
            raise ValueError(
                f"cannot merge matrices counted with different ignore indices ({other.ignore_index} into "
                f"{self._ignore_index})"
            )
        self._matrix += other._matrix.to(self._matrix.device)

    def as_lists(self) -> list[list[int]]:
        """Plain Python ints, for JSON run records."""
        return self._matrix.cpu().tolist()

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]], ignore_index: int = 255) -> ConfusionMatrix:
        """Rebuild a matrix from a run record's ``confusion_matrix`` (on the CPU)."""
        array = _as_count_array(rows)
        result = cls(array.shape[0], ignore_index=ignore_index)
        result._matrix += torch.from_numpy(array)
        return result


def _as_count_array(matrix: Any) -> np.ndarray:
    """A validated square, non-negative int64 matrix of counts, from any of the accepted forms."""
    if isinstance(matrix, ConfusionMatrix):
        matrix = matrix.matrix
    if isinstance(matrix, torch.Tensor):
        if not _is_integer_dtype(matrix.dtype):
            raise ValueError(f"a confusion matrix holds integer counts, not {matrix.dtype}")
        array = matrix.detach().cpu().to(torch.int64).numpy()
    else:
        try:
            array = np.asarray(matrix)
        except ValueError as error:  # ragged nested lists
            raise ValueError(f"a confusion matrix must be a square table of integer counts: {error}") from None
        if array.size and array.dtype.kind not in "iu":
            raise ValueError(f"a confusion matrix holds integer counts, not {array.dtype} values")
        if array.dtype.kind == "u" and array.size and int(array.max()) > np.iinfo(np.int64).max:
            raise ValueError("confusion matrix counts do not fit in int64")
        array = array.astype(np.int64)
    if array.ndim != 2 or array.shape[0] != array.shape[1] or array.shape[0] == 0:
        raise ValueError(f"a confusion matrix must be square (K, K) with K >= 1, got shape {array.shape}")
    if (array < 0).any():
        raise ValueError("a confusion matrix cannot hold negative counts")
    return array


def _ratio(numerator: int, denominator: int) -> float | None:
    """Exact-integer division rounded once to float64; ``None`` when undefined (denominator 0)."""
    return None if denominator == 0 else numerator / denominator


def _nan_mean(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return math.fsum(defined) / len(defined) if defined else None


def _resolve_scored(class_names: list[str], classes_scored: Sequence[str] | None) -> list[str]:
    if classes_scored is None:
        return list(class_names)
    if isinstance(classes_scored, str):
        raise TypeError("classes_scored must be a sequence of class names, not a single string")
    scored = list(classes_scored)
    unknown = [name for name in scored if name not in class_names]
    if unknown:
        raise ValueError(f"classes_scored names unknown classes {unknown}; valid classes are {class_names}")
    duplicates = sorted({name for name in scored if scored.count(name) > 1})
    if duplicates:
        raise ValueError(f"classes_scored lists {duplicates} more than once")
    if not scored:
        raise ValueError(f"classes_scored is empty; name at least one of {class_names}")
    # Canonical order (that of class_names), so equal policies give equal records.
    wanted = set(scored)
    return [name for name in class_names if name in wanted]


def compute_metrics(
    matrix: torch.Tensor | np.ndarray | list[list[int]],
    class_names: Sequence[str],
    classes_scored: Sequence[str] | None = None,
) -> dict[str, Any]:
    """mIoU, mF1, OA, Cohen's kappa and per-class IoU/F1/precision/recall from a confusion matrix.

    Per class c, with I = C[c, c], P = column sum (predicted as c) and L = row sum (labelled c):
    IoU = I / (P + L - I), F1 = 2I / (P + L), precision = I / P, recall = I / L; an undefined value is
    ``None``. mIoU and mF1 average the defined values over ``classes_scored`` (default: every class);
    ``classes_scored`` changes only these two means. OA = trace / total and kappa = (p_o - p_e) / (1 - p_e)
    use the whole matrix. Sums are taken as exact Python integers and each ratio is rounded once, so the
    result does not depend on summation order and cannot overflow for any realistic pixel count.

    Returns ``{"miou", "mf1", "oa", "kappa", "per_class": {name: {"iou", "f1", "precision", "recall"}},
    "classes_scored": [...]}`` with Python floats or ``None``; ``classes_scored`` is listed in the order
    of ``class_names``.
    """
    counts = _as_count_array(matrix)
    if isinstance(class_names, str):
        raise TypeError("class_names must be a sequence of names, not a single string")
    names = [str(name) for name in class_names]
    if len(names) != counts.shape[0]:
        raise ValueError(f"{len(names)} class names for a {counts.shape[0]}x{counts.shape[0]} confusion matrix")
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique, got {names}")
    scored = _resolve_scored(names, classes_scored)

    rows = counts.tolist()  # Python ints: exact sums and products
    k = len(rows)
    label_totals = [sum(row) for row in rows]
    predicted_totals = [sum(rows[r][c] for r in range(k)) for c in range(k)]
    correct = [rows[c][c] for c in range(k)]

    per_class: dict[str, dict[str, float | None]] = {}
    for c, name in enumerate(names):
        i, p, lab = correct[c], predicted_totals[c], label_totals[c]
        per_class[name] = {
            "iou": _ratio(i, p + lab - i),
            "f1": _ratio(2 * i, p + lab),
            "precision": _ratio(i, p),
            "recall": _ratio(i, lab),
        }

    total = sum(label_totals)
    trace = sum(correct)
    chance = sum(p * lab for p, lab in zip(predicted_totals, label_totals, strict=True))  # total**2 * p_e
    # kappa = (p_o - p_e) / (1 - p_e) = (total * trace - chance) / (total**2 - chance), exactly.
    kappa = None if total == 0 else _ratio(total * trace - chance, total * total - chance)

    return {
        "miou": _nan_mean([per_class[name]["iou"] for name in scored]),
        "mf1": _nan_mean([per_class[name]["f1"] for name in scored]),
        "oa": _ratio(trace, total),
        "kappa": kappa,
        "per_class": per_class,
        "classes_scored": scored,
    }


def _compare(where: str, stored: Any, fresh: float | None, tolerance: float) -> str | None:
    """A mismatch message, or None when the stored value agrees with the recomputed one."""
    if stored is not None and (isinstance(stored, bool) or not isinstance(stored, (int, float))):
        return f"{where}: stored {stored!r} is not a number or null (recomputed {fresh!r})"
    if stored is None or fresh is None:
        return None if stored is fresh else f"{where}: stored {stored!r}, recomputed {fresh!r}"
    if not math.isfinite(stored):
        return f"{where}: stored {stored!r} is not finite (recomputed {fresh!r})"
    difference = abs(stored - fresh)
    if difference > tolerance:
        return f"{where}: stored {stored!r}, recomputed {fresh!r} (difference {difference:.3g} > {tolerance:g})"
    return None


def recompute_matches(
    stored: Mapping[str, Any],
    matrix: torch.Tensor | np.ndarray | list[list[int]],
    class_names: Sequence[str],
    classes_scored: Sequence[str] | None,
    tolerance: float = 1e-9,
) -> list[str]:
    """Recompute the metrics from ``matrix`` and list every disagreement with a stored metrics dict.

    Used by the leaderboard's ``--check``: a record is trusted only if its numbers follow from its own
    confusion matrix. Returns human-readable mismatches (empty when everything agrees within the absolute
    ``tolerance``). A matrix or class list from which nothing can be recomputed is itself reported as a
    mismatch rather than raised, so one bad record does not stop a check of many.
    """
    if not isinstance(stored, Mapping):
        return [f"stored metrics must be an object, not {type(stored).__name__}"]
    try:
        fresh = compute_metrics(matrix, class_names, classes_scored)
    except (TypeError, ValueError) as error:
        return [f"cannot recompute metrics: {error}"]

    mismatches: list[str] = []
    for key in SUMMARY_KEYS:
        if key not in stored:
            mismatches.append(f"{key}: missing from the stored metrics (recomputed {fresh[key]!r})")
            continue
        message = _compare(key, stored[key], fresh[key], tolerance)
        if message:
            mismatches.append(message)

    stored_per_class = stored.get("per_class")
    if not isinstance(stored_per_class, Mapping):
        mismatches.append("per_class: missing from the stored metrics or not an object")
    else:
        for name, fresh_values in fresh["per_class"].items():
            stored_values = stored_per_class.get(name)
            if not isinstance(stored_values, Mapping):
                mismatches.append(f"per_class/{name}: missing from the stored metrics")
                continue
            for key in PER_CLASS_KEYS:
                where = f"per_class/{name}/{key}"
                if key not in stored_values:
                    mismatches.append(f"{where}: missing from the stored metrics (recomputed {fresh_values[key]!r})")
                    continue
                message = _compare(where, stored_values[key], fresh_values[key], tolerance)
                if message:
                    mismatches.append(message)
        extra = sorted(set(stored_per_class) - set(fresh["per_class"]))
        if extra:
            mismatches.append(f"per_class: stored classes {extra} are not among {list(fresh['per_class'])}")

    # Optional in the record schema (older records lack it); when present it must state the same policy.
    if "classes_scored" in stored:
        stored_scored = stored["classes_scored"]
        if not isinstance(stored_scored, list) or set(map(str, stored_scored)) != set(fresh["classes_scored"]):
            mismatches.append(f"classes_scored: stored {stored_scored!r}, expected {fresh['classes_scored']!r}")
    return mismatches
