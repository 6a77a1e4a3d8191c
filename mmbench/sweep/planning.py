"""Planning a sweep: the suite becomes a list of jobs, every name and override checked, nothing started.

One training job per (dataset, method config, seed), under the suite's training protocol; its record is
also that protocol's evaluation. Then one evaluation job per further protocol, which evaluates the
training's selected checkpoint (`mmbench eval`), never a new training. Each job's config is resolved by
the project's own resolution (`mmbench.config`), so a bad `set:` fails here, with the message `mmbench
run --set` would print, before any job starts. A job's identity is a digest of what determines its
record: kind, protocol, dataset, seed and resolved config (the output folder aside); docs/sweeps.md.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmbench.context import DatasetRef
from mmbench.errors import UserError
from mmbench.plugins import MethodSpec, ProtocolSpec
from mmbench.records import safe_path_component
from mmbench.registry import METHODS, PROTOCOLS
from mmbench.runs.planning import resolve_dataset
from mmbench.sweep.resolving import cached_reads, resolve
from mmbench.sweep.suite import MethodConfig, Suite

TRAIN, EVAL = "train", "eval"


@dataclass(frozen=True)
class Job:
    """One `mmbench run` (kind "train") or `mmbench eval` (kind "eval") of the sweep.

    `config` is the resolved config shared by every seed of its (dataset, method config, protocol); the
    job's own config is that with `run.seed = seed` (`expected_config`)."""

    kind: str
    dataset: str
    dataset_arg: str
    config_name: str
    method: str
    seed: int
    protocol: str
    out_dir: Path
    digest: str
    config: Mapping[str, Any] = field(repr=False, compare=False)
    config_file: Path | None = None
    overrides: tuple[str, ...] = ()
    train_id: str | None = None

    @property
    def id(self) -> str:
        return f"{self.dataset}/{self.config_name}/seed{self.seed}/{self.kind}-{self.protocol}"

    @property
    def state_path(self) -> Path:
        return self.out_dir / f"{self.kind}-{self.protocol}.state.json"

    @property
    def log_path(self) -> Path:
        return self.out_dir / f"{self.kind}-{self.protocol}.log"

    @property
    def iterations(self) -> int | None:
        value = self.config.get("method", {}).get("train", {}).get("iterations")
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None

    def expected_config(self) -> dict[str, Any]:
        """The `config` its record must hold, `run.out` aside (`comparable`)."""
        return comparable({**self.config, "run": {**self.config["run"], "seed": self.seed}})


@dataclass
class SweepPlan:
    """The jobs of a suite: each training followed by its evaluations, seed by seed (`plan_sweep`)."""

    suite: Suite
    jobs: list[Job]
    protocols: tuple[str, ...]

    def __post_init__(self) -> None:
        self.by_id = {job.id: job for job in self.jobs}

    @property
    def trainings(self) -> list[Job]:
        return [job for job in self.jobs if job.kind == TRAIN]

    @property
    def evaluations(self) -> list[Job]:
        return [job for job in self.jobs if job.kind == EVAL]

    def evaluations_of(self, training: Job) -> list[Job]:
        return [job for job in self.jobs if job.train_id == training.id]


def comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config as records are compared: `run.out` is where the record went, not what produced it."""
    run = {key: value for key, value in config.get("run", {}).items() if key != "out"}
    return {**config, "run": run}


def plan_sweep(suite: Suite) -> SweepPlan:
    """Every job of the suite, in the order trainings should start: seed by seed (a stopped sweep has every
    method config at the same seeds), then dataset, then method config."""
    where = f"suite {str(suite.path)!r}"
    protocols = (_protocol(suite.train, where, "train"), *(_protocol(p, where, "evaluate") for p in suite.evaluate))
    datasets = _datasets(suite, where)
    methods = [_method(config, where, index) for index, config in enumerate(suite.methods)]
    folders = [safe_path_component(config.name) for config in suite.methods]
    clash = next((name for name in folders if folders.count(name) > 1), None)
    if clash is not None:
        raise UserError(f"{where}: two method names map to the folder {clash!r}; make the display names differ more")
    resolved: dict[tuple[int, int, str], tuple[dict[str, Any], str]] = {}
    with cached_reads():
        for d_index, dataset in enumerate(datasets):
            for m_index, (config, spec) in enumerate(zip(suite.methods, methods, strict=True)):
                for protocol in protocols:
                    data = _resolve(suite, config, spec, protocol, dataset, where)
                    text = json.dumps(comparable(data), sort_keys=True, default=str)
                    resolved[(d_index, m_index, protocol.name)] = (data, text)
    jobs: list[Job] = []
    for seed in suite.seeds:
        for d_index, dataset in enumerate(datasets):
            for m_index, config in enumerate(suite.methods):
                out_dir = suite.out / safe_path_component(dataset.name) / folders[m_index] / f"seed{seed}"
                dataset_arg = str(dataset.path) if dataset.path is not None else dataset.name
                # A store given by path is identified by its name here and by its sha256 when records are
                # checked (mmbench.sweep.state), so moving the data folder does not invalidate a sweep.
                identity = f"{dataset.name}@{dataset.spec.version}" if dataset.spec is not None else dataset.name
                common = {
                    "dataset": dataset.name,
                    "dataset_arg": dataset_arg,
                    "config_name": config.name,
                    "method": methods[m_index].name,
                    "seed": seed,
                    "out_dir": out_dir,
                }
                data, text = resolved[(d_index, m_index, suite.train)]
                train_digest = _digest(TRAIN, suite.train, identity, seed, text)
                training = Job(
                    kind=TRAIN,
                    protocol=protocols[0].name,
                    digest=train_digest,
                    config=data,
                    config_file=config.config,
                    overrides=method_overrides(suite, config),
                    **common,
                )
                jobs.append(training)
                for protocol in protocols[1:]:
                    data, text = resolved[(d_index, m_index, protocol.name)]
                    jobs.append(
                        Job(
                            kind=EVAL,
                            protocol=protocol.name,
                            digest=_digest(EVAL, protocol.name, identity, seed, text, train_digest),
                            config=data,
                            train_id=training.id,
                            **common,
                        )
                    )
    return SweepPlan(suite=suite, jobs=jobs, protocols=tuple(p.name for p in protocols))


def select_jobs(plan: SweepPlan, patterns: Sequence[str]) -> SweepPlan:
    """The part of `plan` whose job ids match any of the shell patterns (`--only`), with the trainings of
    the chosen evaluations, in plan order.

    Why: a user with a few hours of compute wants, say, every seed of two methods before one seed of all
    twelve; the rest of the suite stays as it is and a later plain sweep skips what this one finished. A
    pattern that matches no job is an error, not an empty sweep: a typo would otherwise look like "all done"."""
    if not patterns:
        return plan
    chosen: set[str] = set()
    for pattern in patterns:
        matched = {job.id for job in plan.jobs if fnmatch.fnmatchcase(job.id, pattern)}
        if not matched:
            example = plan.jobs[0].id if plan.jobs else "DATASET/METHOD/seedN/train-PROTOCOL"
            raise UserError(
                f"--only {pattern!r} matches no job of suite {str(plan.suite.path)!r}; job ids look like "
                f"{example!r} (shell patterns: '*/stars/*', '*/seed1/*')"
            )
        chosen |= matched
    chosen |= {str(plan.by_id[job_id].train_id) for job_id in chosen if plan.by_id[job_id].train_id is not None}
    return SweepPlan(suite=plan.suite, jobs=[job for job in plan.jobs if job.id in chosen], protocols=plan.protocols)


SEED_MAJOR, ROW_MAJOR = "seeds", "rows"
ORDERS = (SEED_MAJOR, ROW_MAJOR)


def order_jobs(plan: SweepPlan, order: str) -> SweepPlan:
    """`plan` with its trainings started in `order`: `seeds` (the plan's own: seed 0 of every method config,
    then seed 1, ...) or `rows` (every seed of the first dataset's first method config, then the next).

    Why: seed order makes a stopped sweep leave every row at the same seeds; row order makes rows reach
    their full seed count one after another, which is what a user with a few hours per session wants from a
    board whose rows need 3 seeds to be read (docs/sweeps.md). Order never changes a job or its result: only
    when it starts. Each training keeps its evaluations right after it."""
    if order == SEED_MAJOR:
        return plan
    if order != ROW_MAJOR:
        raise UserError(f"unknown sweep order {order!r}; use one of {', '.join(ORDERS)}")
    datasets = {name: index for index, name in enumerate(dict.fromkeys(job.dataset for job in plan.jobs))}
    configs = {name: index for index, name in enumerate(config.name for config in plan.suite.methods)}
    seeds = {seed: index for index, seed in enumerate(plan.suite.seeds)}
    jobs = sorted(plan.jobs, key=lambda job: (datasets[job.dataset], configs[job.config_name], seeds[job.seed]))
    return SweepPlan(suite=plan.suite, jobs=jobs, protocols=plan.protocols)


def _digest(*parts: Any) -> str:
    return "sha256:" + hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def _protocol(name: str, where: str, key: str) -> ProtocolSpec:
    try:
        return PROTOCOLS.get(name)
    except UserError as exc:
        raise type(exc)(f"{where}: {key}: {exc}") from None


def _method(config: MethodConfig, where: str, index: int) -> MethodSpec:
    try:
        return METHODS.get(config.method)
    except UserError as exc:
        raise type(exc)(f"{where}: methods[{index}]: {exc}") from None


def _datasets(suite: Suite, where: str) -> list[DatasetRef]:
    refs: list[DatasetRef] = []
    for index, argument in enumerate(suite.datasets):
        try:
            refs.append(resolve_dataset(argument))
        except UserError as exc:
            raise type(exc)(f"{where}: datasets[{index}]: {exc}") from None
    names = [safe_path_component(ref.name) for ref in refs]
    clash = next((name for name in names if names.count(name) > 1), None)
    if clash is not None:
        raise UserError(f"{where}: two datasets are named {clash!r}; give each store a different file name")
    return refs


def method_overrides(suite: Suite, config: MethodConfig) -> tuple[str, ...]:
    """The `--set` overrides of one method config: its display name as `run.label` (boards show it instead
    of a config id; JSON quoting keeps it a string whatever it looks like), then the suite's, then its own."""
    return (f"run.label={json.dumps(config.name)}", *suite.overrides, *config.overrides)


def _resolve(
    suite: Suite, config: MethodConfig, method: MethodSpec, protocol: ProtocolSpec, dataset: DatasetRef, where: str
) -> dict[str, Any]:
    overrides: Sequence[str] = method_overrides(suite, config)
    try:
        resolved = resolve(
            {"method": method, "protocol": protocol, "dataset": dataset.spec},
            config.config,
            overrides,
            {"run.out": str(suite.out)},
        )
    except UserError as exc:
        raise type(exc)(f"{where}: method {config.name!r} under {protocol.name}: {exc}") from None
    return resolved.data
