"""The typed objects a run is made of, shared by the planner, the training engine, evaluation and plugins.

A `RunPlan` is what `mmbench run`/`mmbench eval` resolved and checked before computing anything; a
`RunContext` is what an executor (the training engine, or a method's own `execute(context)`) receives; a
`RunOutcome` is what it returns. Plugins that drive their own runs import these names from here
(`mmbench.pipeline` re-exports them for packages written before this module existed).
"""

from __future__ import annotations

from collections.abc import Mapping
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
