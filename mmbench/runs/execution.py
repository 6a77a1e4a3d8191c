"""The path from `mmbench run METHOD --protocol P` to a written run record.

1. `plan_run` resolves the plugins, the dataset and the config, and checks them, without computing
   anything: this is all `--dry-run` does. Once the dataset is known, `mmbench.runs.preflight` checks the
   protocol's scenarios against its modalities and the method's contract on one tiny batch, and
   `mmbench.runs.blame` makes a third-party plugin's failures blame the plugin (exit 2), not mmbench.
2. `execute_run` seeds every random source, reads the dataset's facts once (`DatasetFacts`: classes,
   ignore index, modalities, fingerprint), hands a `RunContext` to the method's executor, and turns the
   `RunOutcome` it returns into a validated record written atomically.

The executor is the method implementation's `execute(context)` when it defines one, else the training
engine (`mmbench.engine.trainer`) for `SegmentationMethod` plugins.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mmbench.context import DatasetFacts, Executor, RunContext, RunOutcome, RunPlan, read_dataset_facts
from mmbench.engine.checkpoint import WriteFailed
from mmbench.errors import NotAvailableError
from mmbench.method import SegmentationMethod
from mmbench.records import SCHEMA_VERSION, isoformat, new_run_id, record_path, utc_now, write_record
from mmbench.records.environment import collect_environment, git_state
from mmbench.records.provenance import plugins_provenance
from mmbench.runs.resume_search import find_resume_point
from mmbench.runs.run_dir import RunFolder, check_out_folder
from mmbench.runtime.device import resolve_device
from mmbench.runtime.seeding import seed_everything
from mmbench.runtime.signals import terminate_as_interrupt
from mmbench.runtime.threads import run_threads

TERMINATED_RUN = "terminated (SIGTERM); continue with the same command and --resume if a checkpoint was saved"


def find_executor(plan: RunPlan) -> Executor:
    """A method's own `execute(context)`, else the training engine for SegmentationMethod plugins."""
    implementation = plan.method.load()
    if callable(getattr(implementation, "execute", None)):
        return implementation
    from mmbench.engine.trainer import TrainingExecutor, is_trainable

    if is_trainable(implementation):
        return TrainingExecutor()
    raise NotAvailableError(
        f"method {plan.method.name!r}: {plan.method.target} is neither a mmbench.method.SegmentationMethod nor "
        "defines execute(context); mmbench cannot run it"
    )


@dataclass
class StartedRun:
    """A run after its set-up: device resolved, seeds applied, dataset materialised and fingerprinted (its
    facts read when asked for), record path chosen."""

    plan: RunPlan
    device: str
    seeds: Mapping[str, Any]
    created: Any
    run_id: str
    path: Path
    clock: float
    facts: DatasetFacts | None
    fingerprint: str | None

    def context(self) -> RunContext:
        """What the executor receives."""
        return RunContext(
            plan=self.plan, device=self.device, run_dir=self.path.parent, seeds=self.seeds, dataset_facts=self.facts
        )


def start_run(plan: RunPlan, *, dataset_facts: bool, facts: DatasetFacts | None = None) -> StartedRun:
    """Set the run up; with `dataset_facts`, read the store's facts (a dataset without a store gets None).
    `facts` already read for this plan's materialised dataset (`mmbench eval` of several protocols,
    mmbench/runs/checkpoint_eval.py) are reused: the store is neither opened nor fingerprinted again."""
    from mmbench.runtime.distributed import init_distributed

    run_settings = plan.run_settings
    device = resolve_device(run_settings["device"])
    dist = init_distributed(device)
    created = utc_now()
    if not plan.options.resume:
        run_id = dist.broadcast(new_run_id(created, plan.seed))  # one run directory for all ranks
    seeds = seed_everything(plan.seed, deterministic=bool(run_settings["deterministic"]))
    plan = replace(plan, dataset=plan.dataset.materialize(plan.config.section("dataset")))
    if facts is None and dataset_facts and plan.dataset.path is not None:
        facts = read_dataset_facts(plan.dataset)
    fingerprint = facts.fingerprint if facts is not None else plan.dataset.fingerprint()
    if plan.options.resume:  # the store's fingerprint is part of what must match
        point = find_resume_point(plan, fingerprint)
        if point.note and dist.is_main:
            sys.stderr.write(f"mmbench run: note: {point.note}\n")
            sys.stderr.flush()
        run_id = point.run_dir.name
        plan = replace(plan, options=replace(plan.options, resume_from=point.checkpoint))
    # Read (and cache: records/environment.py, records/provenance.py) the source trees' state now, so that the
    # record names the code this process imported even when the checkout changes before the run ends (a sweep
    # clone pulled mid-training wrote the new commit beside the old code's numbers until this was read here).
    git_state()
    plugins_provenance(plugin_names(plan))
    path = record_path(run_settings["out"], plan.dataset.name, plan.protocol.name, plan.method.name, run_id)
    return StartedRun(plan, device, seeds, created, run_id, path, time.perf_counter(), facts, fingerprint)


def find_resumable_run(plan: RunPlan, fingerprint: str | None = None) -> Path:
    """The newest unfinished run of the same method, protocol, dataset and resolved config, trained on the
    store with this `fingerprint` when it is given (`mmbench sweep` knows it only for stores given by path);
    raises `UserError` naming what differs when there is none (mmbench/runs/resume_search.py)."""
    return find_resume_point(plan, fingerprint).run_dir


def finish_run(started: StartedRun, outcome: RunOutcome, *, resumable: bool = False) -> Path:
    """Turn an outcome into a validated record, written atomically; returns its path. A failed write is one
    line (`WriteFailed`); `resumable`: the run's checkpoints let `--resume` write it later (`mmbench run`)."""
    if not isinstance(outcome, RunOutcome):
        raise TypeError(
            f"method {started.plan.method.name!r}: execute() returned {type(outcome).__name__}, expected a RunOutcome"
        )
    from mmbench.runtime.distributed import init_distributed

    if not init_distributed(started.device).is_main:
        return started.path  # only rank 0 builds and writes the record
    timing = {
        "started": isoformat(started.created),
        "finished": isoformat(utc_now()),
        "total_s": round(time.perf_counter() - started.clock, 6),
        **outcome.timing,
    }
    record = build_record(
        started.plan,
        started.run_id,
        started.created,
        started.device,
        started.seeds,
        outcome,
        timing,
        started.fingerprint,
    )
    try:
        return write_record(record, started.path)
    except OSError as exc:
        again = (
            "then continue with the same command and --resume (training is done: only the evaluation runs again)"
            if resumable
            else "then run the same command again"
        )
        raise WriteFailed(
            f"cannot write the run record {started.path} ({exc.strerror or exc}); free disk space, {again}"
        ) from exc


def execute_run(plan: RunPlan) -> Path:
    """Run the plan and write its record; returns the record's path."""
    from mmbench.engine.trainer import TrainingExecutor
    from mmbench.runs.blame import blame_plugins
    from mmbench.runs.preflight import check_before_running, check_training_settings
    from mmbench.runtime.distributed import init_distributed

    executor = find_executor(plan)
    check_training_settings(plan)  # before any folder is made or any store is read
    check_out_folder(plan.run_settings["out"])
    with terminate_as_interrupt(TERMINATED_RUN), run_threads(int(plan.run_settings.get("threads", 0))):
        started = start_run(plan, dataset_facts=bool(getattr(executor, "needs_dataset_facts", False)))
        engine = isinstance(executor, TrainingExecutor)
        check_before_running(started.plan, started.facts, trainable=engine)  # seconds; nothing trained yet
        dist = init_distributed(started.device)
        run_dir, resumed = started.path.parent, started.plan.options.resume
        with RunFolder(run_dir, resumed=resumed, enabled=dist.is_main, dist=dist) as folder:
            # A method's own execute() owns its run but not the blame: an exception raised in a third-party
            # plugin's own code is its authors' to fix (exit 2, naming it), as under the training engine.
            with blame_plugins(started.plan):
                outcome = executor.execute(started.context())
            path = finish_run(started, with_most_fragile(started, outcome), resumable=engine)
            folder.finish()
    return path


def with_most_fragile(started: StartedRun, outcome: RunOutcome) -> RunOutcome:
    """`outcome` with `aggregate.most_fragile` added when its protocol reports the figure
    (`mmbench.runs.fragile`: the modality whose loss costs most on validation, scored on test), computed
    from the checkpoint the run selected. Runs without a checkpoint or a tile store (a method's own
    executor) are returned unchanged: there is no model to evaluate again."""
    if not isinstance(outcome, RunOutcome) or started.facts is None or not (outcome.checkpoint or {}).get("path"):
        return outcome
    from mmbench.engine.checkpoint import load_checkpoint
    from mmbench.evaluation.protocols import load_protocol
    from mmbench.runs.fragile import FIGURE, model_from_checkpoint, most_fragile, reports_most_fragile
    from mmbench.runtime.distributed import init_distributed

    protocol = load_protocol(started.plan)
    if not reports_most_fragile(protocol, outcome.scenarios):
        return outcome
    clock = time.perf_counter()
    facts = started.facts
    path = outcome.checkpoint["path"]
    channels = facts.channels(protocol.select_modalities(facts.modality_names))
    model = model_from_checkpoint(started.plan.method, load_checkpoint(path), channels, len(facts.classes), path)
    device, dist = started.device, init_distributed(started.device)
    if dist.enabled and device.startswith("cuda"):
        device = f"cuda:{dist.local_rank}"  # as the training engine places each rank
    model.to(device)
    figure = most_fragile(model, facts, protocol, device=device, limit_tiles=2 if outcome.smoke else None, dist=dist)
    timing = {**outcome.timing, f"{FIGURE}_s": round(time.perf_counter() - clock, 3)}
    return replace(outcome, aggregate={**outcome.aggregate, FIGURE: figure}, timing=timing)


def trained_for_missing(plan: RunPlan) -> bool | None:
    """The method's training regime (`SegmentationMethod.trains_for_missing`); null for a method that is
    not a `SegmentationMethod` (its own `execute`), which declares nothing."""
    implementation = plan.method.load()
    if isinstance(implementation, type) and issubclass(implementation, SegmentationMethod):
        return implementation.trains_for_missing(plan.config.section("method"))
    return None


def trained_on(plan: RunPlan, checkpoint: Mapping[str, Any], fingerprint: str | None) -> dict[str, Any] | None:
    """The store the evaluated weights were trained on, {name, fingerprint} (the leaderboard keeps a transfer
    apart: mmbench/leaderboard/board.py). `mmbench eval` says what its checkpoint was trained on
    (`method.checkpoint.trained_on*`, from the checkpoint's dataset entry: null when it has none);
    `mmbench run` trained on the store it evaluates."""
    if "trained_on" in checkpoint or "trained_on_fingerprint" in checkpoint:
        name, trained_fingerprint = checkpoint.get("trained_on"), checkpoint.get("trained_on_fingerprint")
        if name is None and trained_fingerprint is None:
            return None
        return {"name": name, "fingerprint": trained_fingerprint}
    return {"name": plan.dataset.name, "fingerprint": fingerprint}


def plugin_names(plan: RunPlan) -> dict[str, str | None]:
    """The plugins whose distributions a record names (`plugins`)."""
    return {
        "method": plan.method.name,
        "protocol": plan.protocol.name,
        "dataset": plan.dataset.name if plan.dataset.spec is not None else None,  # a store file: no plugin
    }


def build_record(
    plan: RunPlan,
    run_id: str,
    created: Any,
    device: str,
    seeds: Mapping[str, Any],
    outcome: RunOutcome,
    timing: Mapping[str, Any],
    fingerprint: str | None,
) -> dict[str, Any]:
    """`fingerprint`: the dataset's, taken once when the run started."""
    git = git_state()
    checkpoint = outcome.checkpoint if isinstance(outcome.checkpoint, Mapping) else {}
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "created": isoformat(created),
        "command": plan.command,
        "smoke": outcome.smoke,
        "method": {
            "name": plan.method.name,
            "version": plan.method.version,
            "params": outcome.params,
            "paper": plan.method.paper,
            "target": plan.method.target,
            "checkpoint": outcome.checkpoint,
            "trained_for_missing": trained_for_missing(plan),
            "budget": outcome.budget,
            "trained_on": trained_on(plan, checkpoint, fingerprint),
        },
        "protocol": {
            "name": plan.protocol.name,
            "version": plan.protocol.version,
            "settings": outcome.protocol_settings,
        },
        "dataset": {
            "name": plan.dataset.name,
            "path": str(plan.dataset.path) if plan.dataset.path is not None else None,
            "fingerprint": fingerprint,
            "version": plan.dataset.spec.version if plan.dataset.spec is not None else None,
        },
        "seed": plan.seed,
        "seeds": dict(seeds),
        "config": plan.config.data,
        "env": collect_environment(device),
        "git": {
            "commit": git["commit"],
            "dirty": git["dirty"],
            "diff_sha256": git["diff_sha256"],
            "dirty_paths": git["dirty_paths"],
        },
        "plugins": plugins_provenance(plugin_names(plan)),
        "scenarios": outcome.scenarios,
        "aggregate": outcome.aggregate,
        "timing": dict(timing),
    }
