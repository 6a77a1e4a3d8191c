"""The typed objects a run is made of, shared by the planner, the training engine, evaluation and plugins.

A `RunPlan` is what `mmbench run`/`mmbench eval` resolved and checked before computing anything (with the
typed `RunOptions` of the command line); a `RunContext` is what an executor (the training engine, or a
method's own `execute(context)`) receives, including the `DatasetFacts` read once when the run started; a
`RunOutcome` is what it returns. Plugins that drive their own runs import these names from here
(`mmbench.pipeline` re-exports them for packages written before this module existed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from mmbench.config import ResolvedConfig
from mmbench.plugins import DatasetSpec, MethodSpec, ProtocolSpec
from mmbench.records.fingerprint import file_sha256


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


@dataclass(frozen=True)
class DatasetFacts:
    """What a run knows about its tile store: read once when the run starts (`read_dataset_facts`), then
    shared by training, validation, evaluation, `mmbench eval` and the record, so the store is opened for
    them and fingerprinted once. Treat it as read-only (`modalities` is a plain dict so that it pickles)."""

    name: str
    path: Path
    fingerprint: str | None  # sha256 of the store; None only for facts read outside a run (`evaluate` alone)
    classes: tuple[str, ...]
    ignore_index: int
    modalities: Mapping[str, int]  # every modality of the store, in store order, with its channel count

    @classmethod
    def from_store(cls, path: str | Path, *, name: str | None = None, fingerprint: str | None = None) -> DatasetFacts:
        """Read the store's classes, ignore index and modalities; `name` defaults to the file's stem."""
        from mmbench.data.store_reader import TileStore

        path = Path(path)
        with TileStore(path) as store:
            modalities = {modality: store.modalities[modality].channels for modality in store.modality_names}
            return cls(
                name=name if name is not None else path.stem,
                path=path,
                fingerprint=fingerprint,
                classes=tuple(store.classes),
                ignore_index=int(store.ignore_index),
                modalities=modalities,
            )

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(self.modalities)

    def channels(self, names: Sequence[str]) -> dict[str, int]:
        """`{modality: channels}` for the modalities a protocol selected, in the order given."""
        return {name: self.modalities[name] for name in names}

    def checkpoint_entry(self, modalities: Sequence[str]) -> dict[str, Any]:
        """The `dataset` entry of a checkpoint trained on `modalities` of this store (engine/checkpoint.py)."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "classes": list(self.classes),
            "modalities": self.channels(modalities),
            "ignore_index": self.ignore_index,
        }


def read_dataset_facts(dataset: DatasetRef) -> DatasetFacts:
    """The facts of a dataset with a tile-store path, fingerprint included."""
    if dataset.path is None:
        raise ValueError(f"dataset {dataset.name!r} has no tile-store path to read facts from")
    return DatasetFacts.from_store(dataset.path, name=dataset.name, fingerprint=dataset.fingerprint())


@dataclass(frozen=True)
class RunOptions:
    """How the command line asked for the run beyond its config: `--resume`, `--smoke`, and what a resumed run
    continues from (found by `mmbench.runs.execution.start_run` through mmbench/runs/resume_search.py, never
    given by the user): the run folder, or the checkpoint file in it when `last.ckpt` is unreadable and the
    run falls back to the newest intact one."""

    resume: bool = False
    smoke: bool = False
    resume_from: Path | None = None


@dataclass(frozen=True)
class RunPlan:
    """Everything resolved and checked; nothing computed yet."""

    method: MethodSpec
    protocol: ProtocolSpec
    dataset: DatasetRef
    config: ResolvedConfig
    command: str
    options: RunOptions = field(default_factory=RunOptions)

    @property
    def seed(self) -> int:
        return int(self.config.get("run.seed"))

    @property
    def run_settings(self) -> Mapping[str, Any]:
        return self.config.section("run")


@dataclass
class RunContext:
    """What an executor receives: the plan, the device it must compute on, where it may write, the seeds
    applied, and the dataset's facts. `dataset_facts` is read for executors that declare
    `needs_dataset_facts = True` (the training engine does) and whose dataset has a tile store; else None."""

    plan: RunPlan
    device: str
    run_dir: Path
    seeds: Mapping[str, Any]
    dataset_facts: DatasetFacts | None = None

    @property
    def config(self) -> ResolvedConfig:
        return self.plan.config

    @property
    def options(self) -> RunOptions:
        return self.plan.options


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
    budget: dict[str, Any] | None = None  # `mmbench.method.parameter_budget`, when a model exists


class Executor(Protocol):
    """Runs a plan. An executor may set the class attribute `needs_dataset_facts = True` to have the run read
    its dataset's facts at start (`RunContext.dataset_facts`)."""

    def execute(self, context: RunContext) -> RunOutcome: ...
