"""`mmbench eval CHECKPOINT --protocol P`: rebuild a trained model and evaluate it under a protocol.

The method, its config and the dataset it fits come from the checkpoint; the protocol, the dataset
location, the seed and the device from the command line. The dataset's facts are read once when the run
starts and serve both the fit check and the evaluation. The result is a run record like any other,
with the checkpoint's path and sha256 in `method.checkpoint`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mmbench.context import RunOutcome, RunPlan
from mmbench.engine.checkpoint import CheckpointError, check_dataset_fits, load_checkpoint
from mmbench.errors import ConfigError
from mmbench.evaluation.protocols import load_protocol
from mmbench.records.fingerprint import file_sha256
from mmbench.runs.execution import finish_run, start_run
from mmbench.runs.planning import RunRequest, plan_run


def plan_checkpoint_evaluation(request: RunRequest, checkpoint_path: str | Path) -> tuple[RunPlan, dict]:
    """The plan of an evaluation: the method section is the checkpoint's, never the user's."""
    payload = load_checkpoint(checkpoint_path)
    plan = plan_run(replace(request, method=payload["method"]["name"]))
    changed = sorted(
        key for key, source in plan.config.sources.items() if key.startswith("method.") and source != "defaults"
    )
    if changed:
        raise ConfigError(
            f"{changed[0]} cannot be changed when evaluating a checkpoint: the method's settings come "
            "from the checkpoint"
        )
    data = dict(plan.config.data)
    data["method"] = payload["config"]["method"]
    return replace(plan, config=replace(plan.config, data=data)), payload


def evaluate_checkpoint(plan: RunPlan, payload: dict, checkpoint_path: str | Path) -> Path:
    """Evaluate and write the record; returns its path."""
    from mmbench.evaluation.engine import evaluate
    from mmbench.method import build_method, count_parameters

    protocol = load_protocol(plan)
    started = start_run(plan, dataset_facts=True)
    facts = started.facts
    if facts is None:
        raise ConfigError(f"dataset {plan.dataset.name!r} has no tile store to evaluate on")
    channels = facts.channels(protocol.select_modalities(facts.modality_names))
    check_dataset_fits(payload, list(facts.classes), channels, checkpoint_path)
    model = build_method(plan.method, channels, len(facts.classes), payload["config"]["method"])
    try:
        model.load_state_dict(payload["model"], strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise CheckpointError(
            f"{checkpoint_path}: its weights do not fit method {plan.method.name!r} {plan.method.version} ({first})"
        ) from exc
    model.to(started.device)
    result = evaluate(model, facts, protocol, device=started.device)
    outcome = RunOutcome(
        scenarios=result.scenarios,
        aggregate=result.aggregate,
        params=count_parameters(model),
        protocol_settings=result.settings,
        timing={"eval_s": round(result.seconds, 6), "eval_tiles": result.tiles},
        checkpoint={
            "path": str(Path(checkpoint_path).resolve()),
            "sha256": file_sha256(checkpoint_path),
            "method_version": payload["method"].get("version"),
            "trained_on": payload["dataset"].get("name"),
            "trained_on_fingerprint": payload["dataset"].get("fingerprint"),
        },
    )
    return finish_run(started, outcome)
