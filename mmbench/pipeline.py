"""The path from `mmbench run METHOD --protocol P` to a written run record.

1. `plan_run` resolves the plugins, the dataset and the config, and checks them, without computing
   anything: this is all `--dry-run` does.
2. `execute_run` seeds every random source, hands a `RunContext` to the method's executor, and turns
   the `RunOutcome` it returns into a validated record written atomically.

The executor is the method implementation's `execute(context)` when it defines one, else the training
engine (`mmbench.trainer`) for `SegmentationMethod` plugins.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from mmbench.config import ResolvedConfig, resolve_run_config
from mmbench.environment import collect_environment, git_state
from mmbench.errors import NotAvailableError, UserError
from mmbench.fingerprint import file_sha256
from mmbench.plugins import DatasetSpec, MethodSpec, ProtocolSpec
from mmbench.records import SCHEMA_VERSION, isoformat, new_run_id, record_path, utc_now, write_record
from mmbench.registry import DATASETS, METHODS, PROTOCOLS
from mmbench.seeding import seed_everything

DATASET_FILE_SUFFIXES = (".h5", ".hdf5")


@dataclass(frozen=True)
class DatasetRef:
    """A dataset chosen by registered name or given as a tile-store file path."""

    name: str
    spec: DatasetSpec | None = None
    path: Path | None = None

    def fingerprint(self) -> str | None:
        return file_sha256(self.path) if self.path is not None else None

    def materialize(self, settings: Mapping[str, Any]) -> DatasetRef:
        """A registered dataset whose implementation has `prepare(settings) -> Path` (e.g. the synthetic
        benchmark, generated into the cache on first use) becomes a ref with a concrete store path."""
        if self.path is not None or self.spec is None:
            return self
        prepare = getattr(self.spec.load(), "prepare", None)
        if not callable(prepare):
            return self
        return replace(self, path=Path(prepare(dict(settings))).resolve())


def resolve_dataset(argument: str) -> DatasetRef:
    """`--dataset NAME` looks up the registry; `--dataset FILE.h5` (or any path) uses that store file."""
    looks_like_path = argument.lower().endswith(DATASET_FILE_SUFFIXES) or "/" in argument or "\\" in argument
    if looks_like_path:
        path = Path(argument).expanduser()
        if not path.is_file():
            raise UserError(f"dataset file {argument!r} does not exist; give an existing .h5 store or a dataset name")
        return DatasetRef(name=path.stem, path=path.resolve())
    spec = DATASETS.get(argument)
    return DatasetRef(name=spec.name, spec=spec)


@dataclass(frozen=True)
class RunRequest:
    """What the user asked for, as parsed from the command line."""

    method: str
    protocol: str
    dataset: str
    command: str
    config_file: Path | None = None
    overrides: Sequence[str] = ()
    flags: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)  # resume, smoke


@dataclass(frozen=True)
class RunPlan:
    """Everything resolved and checked; nothing computed yet."""

    method: MethodSpec
    protocol: ProtocolSpec
    dataset: DatasetRef
    config: ResolvedConfig
    command: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return int(self.config.get("run.seed"))

    @property
    def run_settings(self) -> Mapping[str, Any]:
        return self.config.section("run")


def plan_run(request: RunRequest) -> RunPlan:
    method = METHODS.get(request.method)
    protocol = PROTOCOLS.get(request.protocol)
    dataset = resolve_dataset(request.dataset)
    config = resolve_run_config(
        {"method": method, "protocol": protocol, "dataset": dataset.spec},
        config_file=request.config_file,
        overrides=request.overrides,
        flags=request.flags,
    )
    return RunPlan(method=method, protocol=protocol, dataset=dataset, config=config, command=request.command,
                   options=dict(request.options))


def resolve_device(requested: str) -> str:
    """`auto` picks CUDA when present; asking for CUDA without it is a user error, not a silent CPU run."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {requested} asked for CUDA, but torch sees no CUDA device; use --device cpu")
        index = int(requested.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise UserError(
                f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    return requested


@dataclass
class RunContext:
    """What an executor receives: the plan, the device it must compute on, and where it may write."""

    plan: RunPlan
    device: str
    run_dir: Path
    seeds: Mapping[str, Any]

    @property
    def config(self) -> ResolvedConfig:
        return self.plan.config


@dataclass
class RunOutcome:
    """What an executor returns; `scenarios` entries follow the record schema's scenario shape."""

    scenarios: list[dict[str, Any]]
    aggregate: dict[str, Any]
    params: int | None = None
    protocol_settings: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    smoke: bool = False
    checkpoint: dict[str, Any] | None = None


class Executor(Protocol):
    def execute(self, context: RunContext) -> RunOutcome: ...


def find_executor(plan: RunPlan) -> Executor:
    """A method's own `execute(context)`, else the training engine for SegmentationMethod plugins."""
    implementation = plan.method.load()
    if callable(getattr(implementation, "execute", None)):
        return implementation
    from mmbench.trainer import TrainingExecutor, is_trainable

    if is_trainable(implementation):
        return TrainingExecutor(plan.options)
    raise NotAvailableError(
        f"method {plan.method.name!r}: {plan.method.target} is neither a mmbench.method.SegmentationMethod nor "
        "defines execute(context); mmbench cannot run it"
    )


@dataclass
class StartedRun:
    """A run after its set-up: device resolved, seeds applied, dataset materialised, record path chosen."""

    plan: RunPlan
    device: str
    seeds: Mapping[str, Any]
    created: Any
    run_id: str
    path: Path
    clock: float


def start_run(plan: RunPlan) -> StartedRun:
    from mmbench.distributed import init_distributed

    run_settings = plan.run_settings
    device = resolve_device(run_settings["device"])
    dist = init_distributed(device)
    created = utc_now()
    if plan.options.get("resume"):
        previous = find_resumable_run(plan)
        run_id = previous.name
        plan = replace(plan, options={**plan.options, "resume_from": previous})
    else:
        run_id = dist.broadcast(new_run_id(created, plan.seed))  # one run directory for all ranks
    path = record_path(run_settings["out"], plan.dataset.name, plan.protocol.name, plan.method.name, run_id)
    seeds = seed_everything(plan.seed, deterministic=bool(run_settings["deterministic"]))
    plan = replace(plan, dataset=plan.dataset.materialize(plan.config.section("dataset")))
    return StartedRun(plan, device, seeds, created, run_id, path, time.perf_counter())


def find_resumable_run(plan: RunPlan) -> Path:
    """The newest unfinished run of the same method, protocol, dataset and resolved config."""
    run_settings = plan.run_settings
    root = record_path(run_settings["out"], plan.dataset.name, plan.protocol.name, plan.method.name, "x").parent.parent
    candidates = sorted((path.parent for path in root.glob("*/last.ckpt")), reverse=True)
    from mmbench.checkpoint import load_checkpoint

    for candidate in candidates:
        if (candidate / "result.json").exists():
            continue
        if _comparable(load_checkpoint(candidate / "last.ckpt")["config"]) == _comparable(plan.config.data):
            return candidate
    raise UserError(f"nothing to resume under {root}: no unfinished run with this exact config; run without --resume")


def _comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    return {section: values for section, values in config.items() if section != "run"} | {
        "seed": config.get("run", {}).get("seed")}


def finish_run(started: StartedRun, outcome: RunOutcome) -> Path:
    """Turn an outcome into a validated record, written atomically; returns its path."""
    if not isinstance(outcome, RunOutcome):
        raise TypeError(f"method {started.plan.method.name!r}: execute() returned {type(outcome).__name__}, "
                        "expected a RunOutcome")
    from mmbench.distributed import init_distributed

    if not init_distributed(started.device).is_main:
        return started.path  # only rank 0 builds and writes the record
    timing = {
        "started": isoformat(started.created),
        "finished": isoformat(utc_now()),
        "total_s": round(time.perf_counter() - started.clock, 6),
        **outcome.timing,
    }
    record = build_record(started.plan, started.run_id, started.created, started.device, started.seeds, outcome,
                          timing)
    return write_record(record, started.path)


def execute_run(plan: RunPlan) -> Path:
    """Run the plan and write its record; returns the record's path."""
    executor = find_executor(plan)
    started = start_run(plan)
    context = RunContext(plan=started.plan, device=started.device, run_dir=started.path.parent, seeds=started.seeds)
    return finish_run(started, executor.execute(context))


def build_record(
    plan: RunPlan,
    run_id: str,
    created: Any,
    device: str,
    seeds: Mapping[str, Any],
    outcome: RunOutcome,
    timing: Mapping[str, Any],
) -> dict[str, Any]:
    git = git_state()
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
        },
        "protocol": {
            "name": plan.protocol.name,
            "version": plan.protocol.version,
            "settings": outcome.protocol_settings,
        },
        "dataset": {
            "name": plan.dataset.name,
            "path": str(plan.dataset.path) if plan.dataset.path is not None else None,
            "fingerprint": plan.dataset.fingerprint(),
            "version": plan.dataset.spec.version if plan.dataset.spec is not None else None,
        },
        "seed": plan.seed,
        "seeds": dict(seeds),
        "config": plan.config.data,
        "env": collect_environment(device),
        "git": {"commit": git["commit"], "dirty": git["dirty"], "diff_sha256": git["diff_sha256"]},
        "scenarios": outcome.scenarios,
        "aggregate": outcome.aggregate,
        "timing": dict(timing),
    }

