"""A row's compute budget and training facts, read from its records (docs/run-record.md, schema 2).

Why on the board: a method that wins with ten times the parameters or a tenth of the training is a
different claim from one that wins at equal cost, and a checkpoint selected at the last step may still
have been improving. Every field is optional in older records, so every value here may be None.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from mmbench.leaderboard.collect import LoadedRecord

FINAL_STEP = "selected checkpoint is the final step (may be under-trained)"
# A row whose checkpoints were selected at the last step is flagged as still improving when validation rose
# at least this much (points of the selection score, mean over those records) over the last quarter of
# training. Under the recipe's poly schedule, which decays the learning rate to zero, the last checkpoint is
# the expected choice once training has converged, so "final step" alone does not say "under-trained";
# a curve that still climbs does. Why one point: on the seed-0 version-2 curves at 3,000 and 6,000 steps
# (docs/results/records/synthetic-v2, docs/results/records/budget-check), neighbouring validations in the
# second half of training differ by a median 0.8 points (0.6 without early-fusion and ShaSpec, whose curves
# jump by up to 10). One point is just above that wobble, not far above it: on one seed the flag can fire on
# noise, and a row's mean over seeds narrows it (docs/leaderboard.md).
LATE_GAIN_POINTS = 1.0


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def inference_params(record: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """(parameters used at inference, scenario) on the full modality set: the scenario whose available
    modalities are all the record's modalities, else the scenario using the most parameters."""
    used = ((record["method"].get("budget") or {}).get("used_at_inference")) or {}
    used = {name: value for name, value in used.items() if _number(value) is not None}
    if not used:
        return None, None
    available = {s["name"]: set(s.get("available") or ()) for s in record.get("scenarios", [])}
    everything = set().union(*available.values()) if available else set()
    full = [name for name in used if everything and available.get(name) == everything]
    name = full[0] if full else max(used, key=lambda key: (used[key], key))
    return int(used[name]), name


def _median(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def _checkpoint(record: Mapping[str, Any]) -> Mapping[str, Any]:
    return record["method"].get("checkpoint") or {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def row_budget(records: Sequence[LoadedRecord]) -> dict[str, Any]:
    """Parameters used at inference on the full set, seconds per training step, total training time and
    training steps (medians over the row's records; None when no record says), and the step each seed's
    evaluated checkpoint was selected at (in seed order), so a matched budget and an under-trained row
    are both visible beside the numbers."""
    params = [inference_params(item.record) for item in records]
    per_step = []
    for item in records:
        rate = _number((item.record.get("timing") or {}).get("steps_per_s"))
        per_step.append(1.0 / rate if rate else None)
    train = [whole_training_seconds(item.record) for item in records]
    known = [value for value, _ in params if value is not None]
    steps = [value for item in records if (value := _int(_checkpoint(item.record).get("total_steps"))) is not None]
    ordered = sorted(records, key=lambda item: item.record["seed"])
    return {
        "steps": int(statistics.median(steps)) if steps else None,
        "selected_steps": [_int(_checkpoint(item.record).get("selected_step")) for item in ordered],
        "params_inference": int(statistics.median(known)) if known else None,
        "params_inference_scenario": next((name for value, name in params if value is not None), None),
        "step_s": _median(per_step),
        "train_s": _median(train),
    }


def trained(record: Mapping[str, Any]) -> bool:
    """Whether the record's command trained (`mmbench run`), not only evaluated a checkpoint."""
    timing = record.get("timing") or {}
    return _number(timing.get("steps_per_s")) is not None or _number(timing.get("train_s")) is not None


def whole_training_seconds(record: Mapping[str, Any]) -> float | None:
    """`timing.train_s` when it covers the whole training; None when it does not say. Records written
    before resumed runs added their earlier segments (mmbench/engine/train_time.py) hold only the last
    segment's seconds: without `resumed_at_step`, a `train_s` whose steps at `steps_per_s` fall short of
    `total_steps` by more than 1 % is such a segment and is not used."""
    timing = record.get("timing") or {}
    seconds = _number(timing.get("train_s"))
    if seconds is None or "resumed_at_step" in timing:
        return seconds
    rate, total = _number(timing.get("steps_per_s")), _int(_checkpoint(record).get("total_steps"))
    if rate and total and seconds * rate < 0.99 * total:
        return None
    return seconds


def selected_final_step(record: Mapping[str, Any]) -> bool:
    """Whether the evaluated weights are those of the last training step: `selected_step == total_steps`
    (schema 2), or, for records without `total_steps`, `selected_step` equal to the configured iterations."""
    checkpoint = record["method"].get("checkpoint") or {}
    selected = checkpoint.get("selected_step")
    if not isinstance(selected, int):
        return False
    total = checkpoint.get("total_steps")
    if not isinstance(total, int):
        config = record.get("config") or {}
        train = (config.get("method") or {}).get("train") or {}
        total = train.get("iterations", (config.get("run") or {}).get("iterations"))
    return isinstance(total, int) and selected == total


def _curve(checkpoint: Mapping[str, Any]) -> list[tuple[int, float]]:
    """The checkpoint's validation curve as (step, score) pairs in step order, malformed points left out."""
    return sorted(
        (step, score)
        for point in checkpoint.get("validation_curve") or []
        if isinstance(point, Mapping)
        and (step := _int(point.get("step"))) is not None
        and (score := _number(point.get("score"))) is not None
    )


def late_gain(record: Mapping[str, Any]) -> float | None:
    """Points of validation score gained over the last quarter of training: the last validation's score minus
    that of the last validation at or before 3/4 of the steps; None without a curve that reaches back that far."""
    checkpoint = _checkpoint(record)
    total = _int(checkpoint.get("total_steps"))
    points = _curve(checkpoint)
    if total is None or len(points) < 2:
        return None
    earlier = [score for step, score in points if step <= 0.75 * total]
    if not earlier or points[-1][0] <= 0.75 * total:
        return None
    return 100 * (points[-1][1] - earlier[-1])


def final_step_flag(records: Sequence[Mapping[str, Any]]) -> str | None:
    """The row's training flag: none when no checkpoint was selected at the last step; "still improving" with
    the mean late gain when those records' curves rose at least LATE_GAIN_POINTS over the last quarter, none
    when they had flattened; FINAL_STEP when a record has no curve to tell (schema 1, or too few points)."""
    final = [record for record in records if selected_final_step(record)]
    if not final:
        return None
    gains = [late_gain(record) for record in final]
    count = "" if len(final) == len(records) else f" ({len(final)} of {len(records)} records)"
    if any(gain is None for gain in gains):
        return FINAL_STEP + count
    mean = sum(gains) / len(gains)
    if mean < LATE_GAIN_POINTS:
        return None
    return (
        f"still improving at the final step: validation +{mean:.1f} points over the last quarter of training"
        f"{count} (may be under-trained)"
    )


def validation_curves(records: Sequence[LoadedRecord]) -> list[dict[str, Any]]:
    """Each training record's validation curve ({seed, selected_step, points: [[step, score], ...]}, in seed
    order). Only records that trained (`timing.steps_per_s`) count: an evaluation record repeats the curve of
    the checkpoint it loaded, which the training table already shows."""
    curves = []
    for item in sorted(records, key=lambda item: item.record["seed"]):
        if not trained(item.record):
            continue
        checkpoint = _checkpoint(item.record)
        points = [[step, score] for step, score in _curve(checkpoint)]
        if points:
            curves.append(
                {"seed": item.record["seed"], "selected_step": _int(checkpoint.get("selected_step")), "points": points}
            )
    return curves
