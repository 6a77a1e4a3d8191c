"""`mmbench eval CHECKPOINT --protocol P [--protocol P2 ...]`: rebuild a trained model and evaluate it
under one protocol or several.

The method, its config and the dataset it fits come from the checkpoint; the protocol, the dataset
location, the seed and the device from the command line. The dataset's facts are read once when the run
starts and serve both the fit check and the evaluation. The result is a run record like any other,
with the checkpoint's path and sha256 in `method.checkpoint`, and the training facts the checkpoint carries
(selected step, total steps, validation curve: `mmbench.engine.checkpoint.training_facts`; null when it has none).

Several protocols (issue 17: "evaluating one checkpoint under all its protocols loads the model and the
store once"): every protocol is planned first (`plan_checkpoint_evaluations`: an unknown protocol or a bad
config stops everything before anything is computed or written); then `evaluate_checkpoint_protocols`
evaluates them in order in one process, sharing through `SharedEvaluation`:

- the checkpoint: read and hashed once;
- the dataset's facts (store opened and fingerprinted once) for protocols with the same dataset section;
- the model: built once per (modalities with their channels, seed, device); protocols selecting other
  modalities, or a config giving another seed, get a model of their own;
- the whole-tile `TileDataset` (its open HDF5 handle) per (split, part, modalities, label variant); the
  area plan (`plan_units`) and the validation/test evaluations of `aggregate.most_fragile` still read the
  store themselves.

Each protocol's record is exactly the one a separate `mmbench eval` of that protocol writes, apart from its
timing, run id, creation time and command: each protocol re-seeds every random source as its own run does,
and a reused model comes with the random state its build left (tests/test_eval_many.py compares them).
A failing protocol writes nothing (records are written atomically) and the others still run: the sweep
(mmbench/sweep/jobs.py) needs each protocol's outcome; the command then exits with the first failure's code.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mmbench.context import DatasetFacts, DatasetRef, RunOutcome, RunPlan
from mmbench.engine.checkpoint import check_dataset_fits, load_checkpoint, training_facts
from mmbench.errors import ConfigError
from mmbench.evaluation.protocols import load_protocol
from mmbench.records.fingerprint import file_sha256, weights_sha256
from mmbench.runs.execution import finish_run, start_run
from mmbench.runs.fragile import FIGURE, model_from_checkpoint, most_fragile, reports_most_fragile
from mmbench.runs.planning import RunRequest, plan_run
from mmbench.runs.run_dir import check_out_folder
from mmbench.runtime.threads import run_threads


def plan_checkpoint_evaluation(
    request: RunRequest, checkpoint_path: str | Path, payload: dict | None = None
) -> tuple[RunPlan, dict]:
    """The plan of an evaluation: the method section is the checkpoint's, never the user's. `payload`: the
    checkpoint already loaded (several protocols), else it is loaded here."""
    if payload is None:
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


def plan_checkpoint_evaluations(
    requests: Sequence[RunRequest], checkpoint_path: str | Path
) -> tuple[list[RunPlan], dict]:
    """Every protocol's plan, the checkpoint loaded once; each protocol's settings are checked too
    (`load_protocol`), so that nothing runs unless every protocol can."""
    names = [request.protocol for request in requests]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"protocol {repeated[0]!r} is given twice; name each protocol once")
    payload = load_checkpoint(checkpoint_path)
    plans = [plan_checkpoint_evaluation(request, checkpoint_path, payload)[0] for request in requests]
    for plan in plans:
        load_protocol(plan)
        check_out_folder(plan.run_settings["out"])  # a file or a read-only folder: refused before evaluating
    return plans, payload


@dataclass
class SharedEvaluation:
    """What the protocols of one `mmbench eval` share (see the module docstring); one per checkpoint."""

    payload: dict
    checkpoint_path: Path
    checkpoint_sha256: str | None = None
    checkpoint_weights_sha256: str | None = None
    datasets: dict[str, tuple[DatasetRef, DatasetFacts]] = field(default_factory=dict)
    models: dict[tuple, tuple[Any, Any]] = field(default_factory=dict)  # key -> (model, random state after build)
    tiles: dict[tuple, Any] = field(default_factory=dict)  # (split, part, modalities, label variant) -> TileDataset

    def sha256(self) -> str:
        if self.checkpoint_sha256 is None:
            self.checkpoint_sha256 = file_sha256(self.checkpoint_path)
        return self.checkpoint_sha256

    def weights_sha256(self) -> str:
        if self.checkpoint_weights_sha256 is None:
            self.checkpoint_weights_sha256 = weights_sha256(self.payload["model"])
        return self.checkpoint_weights_sha256


@dataclass(frozen=True)
class ProtocolResult:
    """One protocol's outcome: its record, or the exception that stopped it (nothing written)."""

    protocol: str
    record: Path | None
    error: Exception | None = None


def evaluate_checkpoint(
    plan: RunPlan, payload: dict, checkpoint_path: str | Path, shared: SharedEvaluation | None = None
) -> Path:
    """Evaluate and write the record; returns its path. `shared`: what earlier protocols of the same
    `mmbench eval` already loaded (none: this protocol loads everything itself). Under `run.threads`, as
    `mmbench run` (mmbench/runtime/threads.py): an evaluation beside a training on a small machine must not
    take a second thread from it."""
    with run_threads(int(plan.run_settings.get("threads", 0))):
        return _evaluate_checkpoint(plan, payload, checkpoint_path, shared)


def _evaluate_checkpoint(
    plan: RunPlan, payload: dict, checkpoint_path: str | Path, shared: SharedEvaluation | None
) -> Path:
    from mmbench.evaluation.engine import evaluate
    from mmbench.method import count_parameters, parameter_budget

    if shared is None:
        shared = SharedEvaluation(payload, Path(checkpoint_path))
    protocol = load_protocol(plan)
    started = _start(plan, shared)
    facts = started.facts
    if facts is None:
        raise ConfigError(f"dataset {plan.dataset.name!r} has no tile store to evaluate on")
    from mmbench.runs.preflight import check_before_running

    check_before_running(started.plan, facts, trainable=False)  # scenarios only: the model is the checkpoint's
    modalities = protocol.select_modalities(facts.modality_names)
    channels = facts.channels(modalities)
    available = facts.channels(facts.modality_names)
    check_dataset_fits(payload, list(facts.classes), channels, checkpoint_path, available)
    model = _model(plan, shared, channels, len(facts.classes), started.device, started.plan.seed)
    result = evaluate(
        model, facts, protocol, device=started.device, dataset=_tiles(shared, facts, protocol, modalities)
    )
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
            "sha256": shared.sha256(),
            "weights_sha256": shared.weights_sha256(),
            "method_version": payload["method"].get("version"),
            "trained_on": payload["dataset"].get("name"),
            "trained_on_fingerprint": payload["dataset"].get("fingerprint"),
            **training_facts(payload),  # selected_step, total_steps, validation_curve: null when not saved
        },
    )
    return finish_run(started, outcome)


def evaluate_checkpoint_protocols(
    plans: Sequence[RunPlan],
    payload: dict,
    checkpoint_path: str | Path,
    on_result: Callable[[ProtocolResult], None] | None = None,
) -> list[ProtocolResult]:
    """Evaluate every plan in order, sharing what `SharedEvaluation` holds; a protocol that fails (any
    `Exception`: a user error or a bug) writes nothing and the next one still runs. Ctrl-C stops them all.
    `on_result` sees each outcome as soon as it is known (the command prints it)."""
    shared = SharedEvaluation(payload, Path(checkpoint_path))
    results = []
    for plan in plans:
        try:
            result = ProtocolResult(plan.protocol.name, evaluate_checkpoint(plan, payload, checkpoint_path, shared))
        except Exception as exc:
            result = ProtocolResult(plan.protocol.name, None, exc)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def _start(plan: RunPlan, shared: SharedEvaluation) -> Any:
    """`start_run` with the dataset's facts read once per dataset section (materialised store path and
    fingerprint included)."""
    key = json.dumps([plan.dataset.name, str(plan.dataset.path), plan.config.section("dataset")], default=str)
    known = shared.datasets.get(key)
    if known is None:
        started = start_run(plan, dataset_facts=True)
        if started.facts is not None:
            shared.datasets[key] = (started.plan.dataset, started.facts)
        return started
    dataset, facts = known
    return start_run(replace(plan, dataset=dataset), dataset_facts=True, facts=facts)


def _model(
    plan: RunPlan, shared: SharedEvaluation, channels: dict[str, int], classes: int, device: str, seed: int
) -> Any:
    """The checkpoint's model for these modalities, built once. Building draws from the random sources
    `start_run` just seeded; a reused model restores the state its build left, so that what follows draws
    exactly what it draws in a separate `mmbench eval`."""
    key = (tuple(channels.items()), classes, device, seed)
    known = shared.models.get(key)
    if known is not None:
        model, state = known
        _set_random_state(state)
        return model
    model = model_from_checkpoint(plan.method, shared.payload, channels, classes, shared.checkpoint_path)
    model.to(device)
    shared.models[key] = (model, _random_state())
    return model


def _tiles(shared: SharedEvaluation, facts: DatasetFacts, protocol: Any, modalities: Sequence[str]) -> Any:
    """The whole-tile dataset of the protocol's split part, one per data setting (its store handle stays open
    for the next protocol with the same setting)."""
    from mmbench.data.loader import TileDataset

    config = protocol.config
    key = (str(facts.path), config["split"], config["part"], tuple(modalities), config["label_variant"])
    if key not in shared.tiles:
        shared.tiles[key] = TileDataset(
            facts.path,
            split=config["split"],
            part=config["part"],
            modalities=modalities,
            label_variant=config["label_variant"],
        )
    return shared.tiles[key]


def _random_state() -> tuple[Any, ...]:
    import numpy as np
    import torch

    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda


def _set_random_state(state: tuple[Any, ...]) -> None:
    import numpy as np
    import torch

    python, numpy_state, torch_state, cuda = state
    random.setstate(python)
    np.random.set_state(numpy_state)
    torch.set_rng_state(torch_state)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)
