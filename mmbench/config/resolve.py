"""Resolving a run's config: plugin defaults < `--config` < `--set` < flags, every key and value checked,
and which source set each key (what `--dry-run` and the record show).
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmbench.config.files import SECTIONS, PluginDefaults, load_plugin_defaults, read_config_layer
from mmbench.config.rules import Check
from mmbench.config.yaml_text import lookup, parse_yaml, show, type_name
from mmbench.errors import ConfigError
from mmbench.plugins import PluginSpec

RUN_DEFAULTS_RESOURCE = "mmbench.config:run.yaml"
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def parse_override(text: str) -> tuple[str, Any]:
    """`method.lr=3e-4` -> ("method.lr", 0.0003). The value is read as a YAML scalar or flow collection."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like 'section.key=value', e.g. 'run.seed=1'")
    if any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key part; write keys like 'method.optimizer.lr'")
    return key, parse_yaml(raw, f"--set {text}") if raw.strip() else ""


# -- resolution ----------------------------------------------------------------------------------------


@dataclass
class ResolvedConfig:
    """The merged config and, per leaf key, which source set it last (for `--dry-run` and records)."""

    data: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)

    def get(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            node = node[part]
        return node

    def section(self, name: str) -> dict[str, Any]:
        return self.data[name]


class ConfigBuilder:
    """Applies layers of updates onto a tree of defaults, checking every key and type on the way, and
    every value against its rule (`checks`, dotted key -> `Check`) when built."""

    def __init__(self, defaults: dict[str, Any], checks: Mapping[str, Check] | None = None) -> None:
        # Types are checked against the original defaults, not the current values: after a file sets
        # a null-default key to a string, a later `--set key=null` is still allowed.
        self._defaults = copy.deepcopy(defaults)
        self._data = copy.deepcopy(defaults)
        self._checks = dict(checks or {})
        self._sources: dict[str, str] = {key: "defaults" for key in _leaf_keys(self._data)}
        # Empty mappings below the top level are open (free-form, e.g. per-class weights); an empty
        # top-level section is closed: a plugin without defaults takes no keys.
        self._open: set[str] = set(_open_mappings(self._data))

    def apply_mapping(
        self, updates: Mapping[str, Any], source: str, leaf_sources: Mapping[str, str] | None = None
    ) -> None:
        """Merge a nested mapping (e.g. a config file) into the tree; `leaf_sources` names, per dotted
        leaf key, a source other than `source` (the base file that set it)."""
        self._merge(self._data, self._defaults, updates, prefix="", source=source, leaf_sources=leaf_sources or {})

    def apply_override(self, dotted: str, value: Any, source: str) -> None:
        """Set one dotted key, as `--set` does."""
        nested: Any = value
        for part in reversed(dotted.split(".")):
            nested = {part: nested}
        self._merge(self._data, self._defaults, nested, prefix="", source=source, leaf_sources={})

    def build(self) -> ResolvedConfig:
        for path in _leaf_keys(self._defaults):  # in the defaults' order; a null default may now hold a mapping
            check = self._checks.get(path)
            if check is None:
                continue
            value = lookup(self._data, path)
            problem = check.violation(value)
            if problem:
                source = f"set by {_source_of(path, self._sources, 'defaults')}"
                nullable = lookup(self._defaults, path) is None
                raise ConfigError(check.message(path, value, problem, source, nullable))
        return ResolvedConfig(data=copy.deepcopy(self._data), sources=dict(self._sources))

    def _merge(
        self,
        target: dict[str, Any],
        defaults: dict[str, Any],
        updates: Mapping[str, Any],
        prefix: str,
        source: str,
        leaf_sources: Mapping[str, str],
    ) -> None:
        is_open = prefix[:-1] in self._open
        for key, value in updates.items():
            path = f"{prefix}{key}"
            where = _source_of(path, leaf_sources, source)
            if not isinstance(key, str):
                raise ConfigError(f"config key {path!r} in {where} must be a string")
            if is_open:
                target[key] = copy.deepcopy(value)
                for leaf in _leaf_keys({key: value}, prefix):
                    self._sources[leaf] = _source_of(leaf, leaf_sources, source)
                continue
            if key not in target:
                raise ConfigError(_unknown_key_message(path, key, target, where))
            default = defaults[key]
            if isinstance(default, dict):
                if not isinstance(value, Mapping):
                    raise ConfigError(
                        f"config key {path!r} in {where} expects a mapping of "
                        f"{_allowed(default)}, got {show(value)} ({type_name(value)})"
                    )
                self._merge(target[key], default, value, f"{path}.", source, leaf_sources)
                continue
            target[key] = _checked_value(path, default, value, where)
            self._sources[path] = where


def resolve_run_config(
    specs: Mapping[str, PluginSpec | None],
    config_file: str | Path | None = None,
    overrides: Iterable[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> ResolvedConfig:
    """Build a run's config from the plugins' defaults and the user's file, overrides and flags.

    `specs` maps section name (method/protocol/dataset) to the chosen plugin, or None for a section
    without plugin defaults. `flags` maps dotted keys set by dedicated CLI flags (`--seed` ->
    `run.seed`); a flag and a `--set` for the same key must agree, or it is an error. Every value is
    checked against its rule before this returns.
    """
    loaded = {"run": load_plugin_defaults(RUN_DEFAULTS_RESOURCE, "mmbench")}
    for section in SECTIONS[1:]:
        spec = specs.get(section)
        loaded[section] = (
            load_plugin_defaults(spec.defaults, f"{spec.kind} {spec.name!r}") if spec else PluginDefaults({})
        )
    checks = {f"{section}.{path}": check for section, part in loaded.items() for path, check in part.checks.items()}
    builder = ConfigBuilder({section: part.values for section, part in loaded.items()}, checks)

    if config_file is not None:
        file_data, origins = read_config_layer(config_file)
        leaf_sources = {leaf: f"file {origin}" for leaf, origin in origins.items()}
        unknown = [key for key in file_data if key not in SECTIONS]
        if unknown:
            where = _source_of(unknown[0], leaf_sources, f"file {config_file}")
            raise ConfigError(
                f"config file {where.removeprefix('file ')!r}: unknown section {unknown[0]!r}; "
                f"allowed sections: {', '.join(SECTIONS)}"
            )
        for section, content in file_data.items():
            if content is None:
                continue
            if not isinstance(content, Mapping):
                where = _source_of(section, leaf_sources, f"file {config_file}")
                raise ConfigError(
                    f"config file {where.removeprefix('file ')!r}: section {section!r} must be a mapping, "
                    f"not a {type_name(content)}"
                )
            builder.apply_mapping({section: content}, source=f"file {config_file}", leaf_sources=leaf_sources)

    set_values: dict[str, Any] = {}
    for text in overrides:
        key, value = parse_override(text)
        if key.split(".")[0] not in SECTIONS:
            raise ConfigError(
                f"override {text!r}: unknown section {key.split('.')[0]!r}; allowed sections: {', '.join(SECTIONS)}"
            )
        builder.apply_override(key, value, source=f"--set {text}")
        set_values[key] = value

    for key, value in (flags or {}).items():
        if key in set_values and set_values[key] != value:
            raise ConfigError(
                f"{key} is given twice with different values ({value!r} by its flag, "
                f"{set_values[key]!r} by --set); give it once"
            )
        builder.apply_override(key, value, source="command-line flag")

    resolved = builder.build()
    _check_run_section(resolved.section("run"))
    return resolved


def _check_run_section(run: Mapping[str, Any]) -> None:
    """The one value check a rule cannot express: `run.device` is a pattern (cuda:N), not a list of choices."""
    if not DEVICE_PATTERN.match(run["device"]):
        raise ConfigError(f"run.device={run['device']!r} is invalid; use auto, cpu, cuda or cuda:N")


def to_yaml(data: Mapping[str, Any]) -> str:
    """Stable, human-readable YAML for `--dry-run` output and saved configs."""
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False, allow_unicode=True)


# -- helpers -------------------------------------------------------------------------------------------


def _source_of(path: str, leaf_sources: Mapping[str, str], default: str) -> str:
    """The source of a key: its own, else that of the first leaf below it, else `default`."""
    if path in leaf_sources:
        return leaf_sources[path]
    below = next((source for leaf, source in leaf_sources.items() if leaf.startswith(f"{path}.")), None)
    return below or default


def _checked_value(path: str, default: Any, value: Any, source: str) -> Any:
    if default is None:
        return copy.deepcopy(value)
    expected = type_name(default)
    ok = True
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list):
        ok = isinstance(value, list)
        element_types = {type(item) for item in default}
        if ok and len(element_types) == 1 and default:
            template = default[0]
            value = [_checked_value(f"{path}[{i}]", template, item, source) for i, item in enumerate(value)]
    if not ok:
        raise ConfigError(
            f"config key {path!r} in {source} expects a {expected}, got {show(value)} ({type_name(value)})"
        )
    return copy.deepcopy(value)


def _unknown_key_message(path: str, key: str, siblings: Mapping[str, Any], source: str) -> str:
    allowed = list(siblings)
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f" (did you mean {path.rsplit('.', 1)[0] + '.' if '.' in path else ''}{close[0]}?)" if close else ""
    return f"unknown config key {path!r} in {source}{hint}; allowed here: {_allowed(siblings)}"


def _allowed(mapping: Mapping[str, Any]) -> str:
    return ", ".join(mapping) if mapping else "no keys"


def _leaf_keys(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            keys.extend(_leaf_keys(value, f"{prefix}{key}."))
        else:
            keys.append(f"{prefix}{key}")
    return keys


def _open_mappings(data: Mapping[str, Any], prefix: str = "", depth: int = 0) -> list[str]:
    paths: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            if not value and depth > 0:
                paths.append(f"{prefix}{key}")
            paths.extend(_open_mappings(value, f"{prefix}{key}.", depth + 1))
    return paths
