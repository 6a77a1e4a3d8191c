"""`mmbench eval CHECKPOINT --protocol P`: rebuild a trained model and evaluate it under a protocol.

The method, its config and the dataset it fits come from the checkpoint; the protocol, the dataset
location, the seed and the device from the command line. The dataset's facts are read once when the run
starts and serve both the fit check and the evaluation. The result is a run record like any other,
with the checkpoint's path and sha256 in `method.checkpoint`, and the training facts the checkpoint carries
(selected step, total steps, validation curve: `mmbench.engine.checkpoint.training_facts`; null when it has none).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from mmbench.context import RunOutcome, RunPlan
from mmbench.engine.checkpoint import check_dataset_fits, load_checkpoint, training_facts
from mmbench.errors import ConfigError
from mmbench.evaluation.protocols import load_protocol
from mmbench.records.fingerprint import file_sha256
from mmbench.runs.execution import finish_run, start_run
from mmbench.runs.fragile import FIGURE, model_from_checkpoint, most_fragile, reports_most_fragile
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
    from mmbench.method import count_parameters, parameter_budget

    protocol = load_protocol(plan)
    started = start_run(plan, dataset_facts=True)
    facts = started.facts
    if facts is None:
        raise ConfigError(f"dataset {plan.dataset.name!r} has no tile store to evaluate on")
    from mmbench.runs.preflight import check_before_running

    check_before_running(started.plan, facts, trainable=False)  # scenarios only: the model is the checkpoint's
    channels = facts.channels(protocol.select_modalities(facts.modality_names))
    check_dataset_fits(payload, list(facts.classes), channels, checkpoint_path)
    model = model_from_checkpoint(plan.method, payload, channels, len(facts.classes), checkpoint_path)
    model.to(started.device)
    result = evaluate(model, facts, protocol, device=started.device)
    aggregate, timing = dict(result.aggregate), {"eval_s": round(result.seconds, 6), "eval_tiles": result.tiles}
    if reports_most_fragile(protocol, result.scenarios):
        clock = time.perf_counter()
        aggregate[FIGURE] = most_fragile(model, facts, protocol, device=started.device)
        timing[f"{FIGURE}_s"] = round(time.perf_counter() - clock, 3)
    outcome = RunOutcome(
        scenarios=result.scenarios,
        aggregate=aggregate,
        params=count_parameters(model),
        budget=parameter_budget(model, channels, result.scenarios),
        protocol_settings=result.settings,
        timing=timing,
        checkpoint={
            "path": str(Path(checkpoint_path).resolve()),
            "sha256": file_sha256(checkpoint_path),
            "method_version": payload["method"].get("version"),
            "trained_on": payload["dataset"].get("name"),
            "trained_on_fingerprint": payload["dataset"].get("fingerprint"),
            **training_facts(payload),  # selected_step, total_steps, validation_curve: null when not saved
        },
    )
    return finish_run(started, outcome)
