"""The suite file (YAML): what a sweep runs. Read and checked here, before anything is planned or started.

Every key is documented in docs/sweeps.md. This module checks the file's shape only (known keys, types,
non-empty lists, unique names, the output root); whether the method, protocol and dataset names exist and
whether each `set:` override fits the config is checked by the planner (`mmbench.sweep.planning`), with
the project's own registries and config resolution. Every problem is one `ConfigError` line naming the
suite file, the key and the fix.
"""

from __future__ import annotations

import difflib
import importlib.resources
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmbench.config import parse_override, parse_yaml
from mmbench.errors import ConfigError

TOP_KEYS = (
    "name",
    "description",
    "out",
    "reuse",
    "datasets",
    "methods",
    "seeds",
    "train",
    "evaluate",
    "set",
    "executor",
)
METHOD_KEYS = ("method", "name", "config", "set")
EXECUTOR_KEYS = (
    "partition",
    "gpus_per_node",
    "cpus_per_task",
    "mem_gb",
    "timeout_min",
    "slurm_additional_parameters",
    "setup",
)
# Keys a suite controls through its own fields: a `set:` of them would fight the plan.
RESERVED_OVERRIDES = {"run.seed": "seeds", "run.out": "out"}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PACKAGE_FILE = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(.+)$")


@dataclass(frozen=True)
class MethodConfig:
    """One row of the suite's `methods:`: a registered method, a display name, an optional `--config` file
    and `--set` overrides (applied after the suite's global ones)."""

    method: str
    name: str
    config: Path | None = None
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExecutorSettings:
    """The suite's `executor:` section, used by `--executor slurm` (submitit's Slurm parameters)."""

    partition: str | None = None
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    timeout_min: int = 24 * 60
    slurm_additional_parameters: Mapping[str, Any] = field(default_factory=dict)
    setup: tuple[str, ...] = ()


@dataclass(frozen=True)
class Suite:
    """A checked suite file."""

    path: Path
    name: str
    out: Path
    datasets: tuple[str, ...]
    methods: tuple[MethodConfig, ...]
    seeds: tuple[int, ...]
    train: str
    evaluate: tuple[str, ...]
    overrides: tuple[str, ...] = ()
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    description: str = ""
    # Output roots of other sweeps whose finished jobs this one takes instead of re-running an identical job
    # (same digest and a record that passes every check: mmbench.sweep.state).
    reuse: tuple[Path, ...] = ()


def load_suite(path: str | Path, *, out: str | Path | None = None, extra_overrides: Sequence[str] = ()) -> Suite:
    """Read and check a suite file. `out` replaces its output root and `extra_overrides` are appended to
    its global `set:` (the command line's `--out` and `--set`)."""
    path = Path(path)
    where = f"suite {str(path)!r}"
    if not path.is_file():
        raise ConfigError(f"{where} does not exist; give a suite YAML file (e.g. suites/synthetic-cpu.yaml)")
    data = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping of {', '.join(TOP_KEYS)}")
    _check_keys(data, TOP_KEYS, where, "")
    for key in ("datasets", "methods", "seeds", "train"):
        if key not in data:
            raise ConfigError(f"{where}: missing key {key!r}; a suite needs datasets, methods, seeds and train")
    datasets = tuple(_expand(item, where, f"datasets[{i}]") for i, item in enumerate(_list(data, "datasets", where)))
    seeds = tuple(_seed(item, where, i) for i, item in enumerate(_list(data, "seeds", where)))
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: 'seeds' lists a seed twice; give each seed once")
    train = _string(data["train"], where, "train")
    evaluate_raw = data.get("evaluate") or []
    if isinstance(evaluate_raw, str):
        evaluate_raw = [evaluate_raw]
    if not isinstance(evaluate_raw, list):
        raise ConfigError(f"{where}: 'evaluate' must be a list of protocol names, e.g. [subsets, minority]")
    evaluate: list[str] = []
    for index, item in enumerate(evaluate_raw):
        name = _string(item, where, f"evaluate[{index}]")
        if name != train and name not in evaluate:  # the training record is its protocol's evaluation
            evaluate.append(name)
    methods = tuple(_method(item, path, where, i) for i, item in enumerate(_list(data, "methods", where)))
    names = [method.name for method in methods]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate is not None:
        raise ConfigError(
            f"{where}: two methods have the display name {duplicate!r}; give each a unique 'name:' "
            "(e.g. name: stars-no-psa)"
        )
    overrides = (*_overrides(data.get("set"), where, "set"), *(_checked_override(o, "--set") for o in extra_overrides))
    root = Path(_expand(out if out is not None else data.get("out", f"runs/sweeps/{path.stem}"), where, "out"))
    if root.exists() and not root.is_dir():
        raise ConfigError(
            f"{where}: output root {str(root)!r} is a file; set 'out:' (or --out) to a folder, new or existing"
        )
    reuse = tuple(Path(_expand(item, where, f"reuse[{i}]")) for i, item in enumerate(_reuse_list(data, where)))
    if any(other.resolve() == root.resolve() for other in reuse):
        raise ConfigError(f"{where}: 'reuse' lists the suite's own output root {str(root)!r}; list other sweeps' roots")
    return Suite(
        path=path,
        name=_string(data.get("name", path.stem), where, "name"),
        out=root,
        datasets=datasets,
        methods=methods,
        seeds=seeds,
        train=train,
        evaluate=tuple(evaluate),
        overrides=overrides,
        executor=_executor(data.get("executor"), where),
        description=str(data.get("description") or ""),
        reuse=reuse,
    )


def _reuse_list(data: Mapping[str, Any], where: str) -> list[Any]:
    value = data.get("reuse")
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise ConfigError(f"{where}: 'reuse' must be a list of other sweeps' output roots, e.g. [runs/sweeps/board]")
    return value


def _check_keys(data: Mapping[str, Any], allowed: Sequence[str], where: str, section: str) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {section}{key!r}{hint}; allowed: {', '.join(allowed)}")


def _list(data: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = data[key]
    if isinstance(value, (str, int)) and key != "methods":
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"{where}: {key!r} must be a list")
    if not value:
        raise ConfigError(f"{where}: {key!r} is empty; list at least one")
    return value


def _string(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def _seed(value: Any, where: str, index: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4294967295:
        raise ConfigError(f"{where}: seeds[{index}] must be an integer in [0, 4294967295], got {value!r}")
    return value


def _expand(value: Any, where: str, key: str) -> str:
    """`${VAR}` and `${VAR:-default}` are replaced from the environment (data folders differ per machine)."""
    text = _string(value, where, key) if not isinstance(value, Path) else str(value)

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: {key} uses ${{{name}}}, which is not set; export {name} or write ${{{name}:-X}}")

    return os.path.expanduser(_VARIABLE.sub(replace, text))


def _method(item: Any, suite_path: Path, where: str, index: int) -> MethodConfig:
    if isinstance(item, str):
        return MethodConfig(method=_string(item, where, f"methods[{index}]"), name=item.strip())
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: methods[{index}] must be a method name or a mapping of {', '.join(METHOD_KEYS)}")
    _check_keys(item, METHOD_KEYS, where, f"methods[{index}].")
    if "method" not in item:
        raise ConfigError(
            f"{where}: methods[{index}] has no 'method:'; name a registered method (mmbench list methods)"
        )
    method = _string(item["method"], where, f"methods[{index}].method")
    config = None
    if item.get("config") is not None:
        config = _config_file(_expand(item["config"], where, f"methods[{index}].config"), suite_path, where, index)
    return MethodConfig(
        method=method,
        name=_string(item.get("name", method), where, f"methods[{index}].name"),
        config=config,
        overrides=_overrides(item.get("set"), where, f"methods[{index}].set"),
    )


def _config_file(text: str, suite_path: Path, where: str, index: int) -> Path:
    """A path relative to the suite file, or `package:file.yaml` for a file shipped in a package (e.g.
    `mmbench.methods.stars:paper.yaml`, a method's paper-scale config)."""
    match = _PACKAGE_FILE.match(text)
    if match and len(match.group(1)) > 1:
        try:
            resource = importlib.resources.files(match.group(1)).joinpath(match.group(2))
        except ModuleNotFoundError:
            raise ConfigError(f"{where}: methods[{index}].config {text!r}: no package {match.group(1)!r}") from None
        path = Path(str(resource))
    else:
        path = Path(text) if Path(text).is_absolute() else suite_path.parent / text
    if not path.is_file():
        raise ConfigError(f"{where}: methods[{index}].config {text!r} does not exist; give a config YAML file")
    return path.resolve()


def _overrides(value: Any, where: str, key: str) -> tuple[str, ...]:
    """`set:` as a mapping {dotted.key: value} or a list of 'dotted.key=value' strings; returned as the
    strings `--set` takes (mapping values are written as JSON, which YAML reads back unchanged)."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        items = [f"{k}={json.dumps(v)}" for k, v in value.items()]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = list(value)
    else:
        raise ConfigError(f"{where}: {key!r} must be a mapping {{method.lr: 0.001}} or a list of 'key=value' strings")
    return tuple(_checked_override(item, f"{where}: {key}") for item in items)


def _checked_override(text: str, where: str) -> str:
    dotted, _ = parse_override(text)
    if dotted in RESERVED_OVERRIDES:
        field_name = RESERVED_OVERRIDES[dotted]
        raise ConfigError(f"{where}: {dotted} is set by the suite's {field_name!r}; remove it from set")
    return text


def _executor(value: Any, where: str) -> ExecutorSettings:
    if value is None:
        return ExecutorSettings()
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: 'executor' must be a mapping of {', '.join(EXECUTOR_KEYS)}")
    _check_keys(value, EXECUTOR_KEYS, where, "executor.")
    ints = {"gpus_per_node": 0, "cpus_per_task": 1, "timeout_min": 1}
    for key, minimum in ints.items():
        if key in value and (not isinstance(value[key], int) or isinstance(value[key], bool) or value[key] < minimum):
            raise ConfigError(f"{where}: executor.{key} must be an integer >= {minimum}, got {value[key]!r}")
    extra = value.get("slurm_additional_parameters") or {}
    if not isinstance(extra, Mapping):
        raise ConfigError(f"{where}: executor.slurm_additional_parameters must be a mapping of sbatch options")
    setup = value.get("setup") or []
    if isinstance(setup, str):
        setup = [setup]
    if not isinstance(setup, list) or not all(isinstance(line, str) for line in setup):
        raise ConfigError(f"{where}: executor.setup must be a list of shell lines (run before each job)")
    mem = value.get("mem_gb")
    if mem is not None and (isinstance(mem, bool) or not isinstance(mem, (int, float)) or mem <= 0):
        raise ConfigError(f"{where}: executor.mem_gb must be a positive number, got {mem!r}")
    partition = value.get("partition")
    return ExecutorSettings(
        partition=_string(partition, where, "executor.partition") if partition is not None else None,
        gpus_per_node=int(value.get("gpus_per_node", 0)),
        cpus_per_task=value.get("cpus_per_task"),
        mem_gb=mem,
        timeout_min=int(value.get("timeout_min", 24 * 60)),
        slurm_additional_parameters=dict(extra),
        setup=tuple(setup),
    )
