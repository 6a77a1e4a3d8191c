"""Run planning: turn what the user asked for into a checked `RunPlan` without computing anything.

This is all `--dry-run` does: resolve the method, protocol and dataset plugins and the layered config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmbench.config import ResolvedConfig, resolve_run_config
from mmbench.context import DatasetRef, RunOptions, RunPlan
from mmbench.errors import UserError
from mmbench.registry import DATASETS, METHODS, PROTOCOLS

DATASET_FILE_SUFFIXES = (".h5", ".hdf5")


def resolve_dataset(argument: str) -> DatasetRef:
    """`--dataset NAME` looks up the registry; `--dataset FILE.h5` (or any path) uses that store file."""
    looks_like_path = argument.lower().endswith(DATASET_FILE_SUFFIXES) or "/" in argument or "\\" in argument
    if looks_like_path:
        path = Path(argument).expanduser()
        if path.is_dir():
            raise UserError(f"dataset {argument!r} is a directory; give the .h5 store file inside it")
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
    options: RunOptions = field(default_factory=RunOptions)


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
    return RunPlan(
        method=method,
        protocol=protocol,
        dataset=dataset,
        config=config,
        command=request.command,
        options=request.options,
    )


def changed_from_defaults(plan: RunPlan) -> dict[str, str]:
    """Dotted key -> the source that set it, for the keys whose value differs from the plugins' defaults.

    A config layer that restates a default (a `--config result.json` re-run holds every key) does not
    change it: `--dry-run` lists only what would make this run differ from a run with no file, `--set`
    or flag. Keys the defaults lack (free-form mappings) count as changed.
    """
    defaults = resolve_run_config({"method": plan.method, "protocol": plan.protocol, "dataset": plan.dataset.spec})
    return {
        key: source
        for key, source in plan.config.sources.items()
        if source != "defaults" and not _same_value(plan.config, defaults, key)
    }


def _same_value(config: ResolvedConfig, defaults: ResolvedConfig, key: str) -> bool:
    try:
        default = defaults.get(key)
    except (KeyError, TypeError):  # not in the defaults, or below a default that is not a mapping
        return False
    value = config.get(key)
    return type(value) is type(default) and value == default
