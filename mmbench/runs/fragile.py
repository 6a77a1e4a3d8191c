"""The most fragile single modality: a figure the harness adds to `last1`-like runs (docs/run-record.md).

`last1` asks how well a model does with one modality *left*. Its mirror question, which single modality a
model can least afford to *lose*, is what a user planning for one sensor failure needs; missing1's worst
scenario answers it on test, but picking the worst of several test scores is a selection on test: with
noisy scores the minimum is biased low, and which modality it names can flip between seeds. So the
modality is chosen on the validation part instead (the drop-one scenario with the lowest validation mIoU,
ties to the first modality in store order) and only that one scenario is scored on the protocol's part:
one fixed number per run, chosen without looking at the test part, comparable across methods.

It is computed where the run finishes (`mmbench.runs.execution.execute_run`, `mmbench.runs.checkpoint_eval`)
from the selected checkpoint, with the evaluation engine's public `evaluate`, and stored in the record's
`aggregate` as `most_fragile`. Which runs get it: a protocol class may say so with the attribute
`reports_most_fragile` (True or False); without one, a protocol whose every scenario leaves exactly one
modality (last1) gets it, and others do not, so existing records of other protocols do not change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmbench.context import DatasetFacts
from mmbench.method import SegmentationMethod
from mmbench.plugins import MethodSpec
from mmbench.protocol import Protocol, Scenario, fixed_scenarios
from mmbench.runtime.distributed import DistContext

FIGURE = "most_fragile"
SELECTION = "drop-one scenario with the lowest validation mIoU (ties: first in store order)"
METRICS = ("miou", "mf1", "oa")


class _FixedScenarios(Protocol):
    """The run's protocol settings (split, label variant, window, classes scored, ...) with other scenarios."""

    name = "most-fragile"

    def __init__(self, config: Mapping[str, Any], scenarios: Sequence[Scenario]) -> None:
        super().__init__(config)
        self._scenarios = list(scenarios)

    def scenarios(self, modalities: Sequence[str], context: Mapping[str, Any]) -> list[Scenario]:
        return list(self._scenarios)

    def aggregate(self, results, modalities, context) -> dict[str, Any]:
        return {}


def reports_most_fragile(protocol: Protocol, scenarios: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a run under `protocol` gets the figure, given its evaluated scenario entries (as in records)."""
    declared = getattr(protocol, "reports_most_fragile", None)
    if declared is not None:
        return bool(declared)
    fixed = all("drop_probability" not in entry and "corrupted" not in entry for entry in scenarios)
    return len(scenarios) >= 2 and fixed and all(len(entry["available"]) == 1 for entry in scenarios)


def model_from_checkpoint(
    method: MethodSpec, payload: Mapping[str, Any], channels: Mapping[str, int], classes: int, path: str | Path
) -> SegmentationMethod:
    """Rebuild the model a checkpoint holds (`payload` from `load_checkpoint`), on the CPU; a checkpoint
    whose weights do not fit the method is a one-line `CheckpointError`."""
    from mmbench.engine.checkpoint import CheckpointError
    from mmbench.method import build_method

    model = build_method(method, channels, classes, payload["config"]["method"])
    try:
        model.load_state_dict(payload["model"], strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise CheckpointError(
            f"{path}: its weights do not fit method {method.name!r} {method.version} ({first})"
        ) from exc
    return model


def most_fragile(
    model: SegmentationMethod,
    facts: DatasetFacts,
    protocol: Protocol,
    *,
    device: str,
    limit_tiles: int | None = None,
    dist: DistContext | None = None,
) -> dict[str, Any]:
    """The figure for `model`: validation mIoU without each modality, the modality chosen, and the chosen
    scenario's metrics on the protocol's part (`part`, normally test). `limit_tiles` limits both parts
    (smoke runs)."""
    from mmbench.evaluation.engine import evaluate

    modalities = protocol.select_modalities(facts.modality_names)
    drop_one = fixed_scenarios(modalities, [len(modalities) - 1])
    validation = evaluate(
        model,
        facts,
        _FixedScenarios(protocol.config, drop_one),
        device=device,
        part="val",
        limit_tiles=limit_tiles,
        show_progress=False,
        dist=dist,
    )
    val_miou: dict[str, float | None] = {}
    for entry in validation.scenarios:
        (lost,) = [name for name in modalities if name not in entry["available"]]
        val_miou[lost] = entry["metrics"]["miou"]
    val_miou = {name: val_miou[name] for name in modalities}
    figure: dict[str, Any] = {"modality": None, "selection": SELECTION, "val_miou_without": val_miou}
    scored = [name for name in modalities if val_miou[name] is not None]
    if not scored:  # no validation pixel scored: nothing to choose from
        return {**figure, "scenario": None, "part": protocol.config["part"], **dict.fromkeys(METRICS)}
    chosen = min(scored, key=lambda name: (val_miou[name], modalities.index(name)))
    (scenario,) = [s for s in drop_one if chosen not in s.available]
    test = evaluate(
        model,
        facts,
        _FixedScenarios(protocol.config, [scenario]),
        device=device,
        limit_tiles=limit_tiles,
        show_progress=False,
        dist=dist,
    )
    (entry,) = test.scenarios
    return {
        **figure,
        "modality": chosen,
        "scenario": entry["name"],
        "part": protocol.config["part"],
        **{key: entry["metrics"][key] for key in METRICS},
    }
