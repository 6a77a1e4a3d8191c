"""Run configuration: plugin defaults < `--config FILE.yaml` < `--set key.sub=value` < explicit flags.

The defaults are the schema. A key that is not in a plugin's default YAML is rejected with its full path
and the keys that are allowed there, and a value must have the type of its default (an int is accepted
where a float is expected; `null` as a default means "any type"; an empty mapping is an open mapping).
Typos in keys are the most common cause of silent misconfiguration in segmentation toolkits' trackers,
so nothing unknown is ever ignored.

A run config has four sections: `run` (harness settings shared by every run), `method`, `protocol`
and `dataset` (each the defaults of the chosen plugin).
"""

from __future__ import annotations

import copy
import difflib
import importlib.resources
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmbench.errors import ConfigError, UserError
from mmbench.plugins import PluginSpec

SECTIONS: tuple[str, ...] = ("run", "method", "protocol", "dataset")
RUN_DEFAULTS_RESOURCE = "mmbench:configs/run.yaml"
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that rejects duplicate keys and reads `1e-3` as a float (PyYAML reads it as a string)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                mark = key_node.start_mark
                raise ConfigError(f"duplicate key {key!r} in {mark.name} line {mark.line + 1}: keep one of them")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 booleans: only true/false. PyYAML's YAML 1.1 also reads yes/no/on/off as booleans, so that
# `amp: off` would silently become False instead of the string "off".
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, origin: str) -> Any:
    """Parse YAML text; a syntax error becomes a one-line `ConfigError` with the line and column."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{origin}{where}: invalid YAML ({exc.problem}); fix the syntax") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: invalid YAML ({exc}); fix the syntax") from exc


def read_yaml_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file whose top level must be a mapping (an empty file is an empty mapping)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc}") from exc
    data = parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(path)!r} must hold a mapping of sections ({', '.join(SECTIONS)}), "
            f"not a {_type_name(data)}"
        )
    return data


def read_config_source(path: str | Path) -> dict[str, Any]:
    """A `--config` source: a YAML file, or a run record (`result.json`) whose resolved config is
    reused, which is how a published record is re-run exactly."""
    if Path(path).suffix.lower() == ".json":
        from mmbench.records import read_record

        try:
            return read_record(path)["config"]
        except UserError as exc:
            raise ConfigError(f"--config {str(path)!r} is not a usable run record: {exc}") from exc
    return read_yaml_file(path)


def load_defaults(defaults: str | Mapping[str, Any] | None, owner: str) -> dict[str, Any]:
    """A plugin's default config: a `package:file.yaml` resource shipped with it, a mapping, or none."""
    if defaults is None:
        return {}
    if isinstance(defaults, Mapping):
        return copy.deepcopy(dict(defaults))
    package, _, resource = defaults.partition(":")
    if not package or not resource:
        raise ConfigError(f"{owner}: defaults {defaults!r} must look like 'package:file.yaml'")
    try:
        text = importlib.resources.files(package).joinpath(resource).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError) as exc:
        raise ConfigError(f"{owner}: default config {defaults!r} not found ({exc}); reinstall the plugin") from exc
    data = parse_yaml(text, defaults)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{owner}: default config {defaults!r} must be a mapping, not a {_type_name(data)}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """`method.lr=3e-4` -> ("method.lr", 0.0003). The value is read as a YAML scalar or flow collection."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like 'section.key=value', e.g. 'run.seed=1'")
    if any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key part; write keys like 'method.optimizer.lr'")
    return key, parse_yaml(raw, f"--set {text}") if raw.strip() else ""


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
    """Applies layers of updates onto a tree of defaults, checking every key and type on the way."""

    def __init__(self, defaults: dict[str, Any]) -> None:
        # Types are checked against the original defaults, not the current values: after a file sets
        # a null-default key to a string, a later `--set key=null` is still allowed.
        self._defaults = copy.deepcopy(defaults)
        self._data = copy.deepcopy(defaults)
        self._sources: dict[str, str] = {key: "defaults" for key in _leaf_keys(self._data)}
        # Empty mappings below the top level are open (free-form, e.g. per-class weights); an empty
        # top-level section is closed: a plugin without defaults takes no keys.
        self._open: set[str] = set(_open_mappings(self._data))

    def apply_mapping(self, updates: Mapping[str, Any], source: str) -> None:
        """Merge a nested mapping (e.g. a config file) into the tree."""
        self._merge(self._data, self._defaults, updates, prefix="", source=source)

    def apply_override(self, dotted: str, value: Any, source: str) -> None:
        """Set one dotted key, as `--set` does."""
        nested: Any = value
        for part in reversed(dotted.split(".")):
            nested = {part: nested}
        self._merge(self._data, self._defaults, nested, prefix="", source=source)

    def build(self) -> ResolvedConfig:
        return ResolvedConfig(data=copy.deepcopy(self._data), sources=dict(self._sources))

    def _merge(
        self,
        target: dict[str, Any],
        defaults: dict[str, Any],
        updates: Mapping[str, Any],
        prefix: str,
        source: str,
    ) -> None:
        is_open = prefix[:-1] in self._open
        for key, value in updates.items():
            path = f"{prefix}{key}"
            if not isinstance(key, str):
                raise ConfigError(f"config key {path!r} in {source} must be a string")
            if is_open:
                target[key] = copy.deepcopy(value)
                for leaf in _leaf_keys({key: value}, prefix):
                    self._sources[leaf] = source
                continue
            if key not in target:
                raise ConfigError(_unknown_key_message(path, key, target, source))
            default = defaults[key]
            if isinstance(default, dict):
                if not isinstance(value, Mapping):
                    raise ConfigError(
                        f"config key {path!r} in {source} expects a mapping of "
                        f"{_allowed(default)}, got {_show(value)} ({_type_name(value)})"
                    )
                self._merge(target[key], default, value, prefix=f"{path}.", source=source)
                continue
            target[key] = _checked_value(path, default, value, source)
            self._sources[path] = source


def resolve_run_config(
    specs: Mapping[str, PluginSpec | None],
    config_file: str | Path | None = None,
    overrides: Iterable[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> ResolvedConfig:
    """Build a run's config from the plugins' defaults and the user's file, overrides and flags.

    `specs` maps section name (method/protocol/dataset) to the chosen plugin, or None for a section
    without plugin defaults. `flags` maps dotted keys set by dedicated CLI flags (`--seed` ->
    `run.seed`); a flag and a `--set` for the same key must agree, or it is an error.
    """
    defaults: dict[str, Any] = {"run": load_defaults(RUN_DEFAULTS_RESOURCE, "mmbench")}
    for section in SECTIONS[1:]:
        spec = specs.get(section)
        defaults[section] = load_defaults(spec.defaults, f"{spec.kind} {spec.name!r}") if spec else {}
    builder = ConfigBuilder(defaults)

    if config_file is not None:
        file_data = read_config_source(config_file)
        unknown = [key for key in file_data if key not in SECTIONS]
        if unknown:
            raise ConfigError(
                f"config file {str(config_file)!r}: unknown section {unknown[0]!r}; "
                f"allowed sections: {', '.join(SECTIONS)}"
            )
        for section, content in file_data.items():
            if content is None:
                continue
            if not isinstance(content, Mapping):
                raise ConfigError(
                    f"config file {str(config_file)!r}: section {section!r} must be a mapping, "
                    f"not a {_type_name(content)}"
                )
            builder.apply_mapping({section: content}, source=f"file {config_file}")

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
    """Value checks that a type check alone cannot express."""
    seed = run["seed"]
    if not 0 <= seed < 2**32:
        raise ConfigError(f"run.seed={seed} is out of range; use an integer in [0, 2**32)")
    if not DEVICE_PATTERN.match(run["device"]):
        raise ConfigError(f"run.device={run['device']!r} is invalid; use auto, cpu, cuda or cuda:N")


def to_yaml(data: Mapping[str, Any]) -> str:
    """Stable, human-readable YAML for `--dry-run` output and saved configs."""
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False, allow_unicode=True)


def _checked_value(path: str, default: Any, value: Any, source: str) -> Any:
    if default is None:
        return copy.deepcopy(value)
    expected = _type_name(default)
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
            f"config key {path!r} in {source} expects a {expected}, got {_show(value)} ({_type_name(value)})"
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


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "mapping"}.get(
        type(value), type(value).__name__
    )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
