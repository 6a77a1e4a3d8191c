"""Reading config YAML: the strict loader (no duplicate keys, YAML 1.2 booleans, `!check` in defaults),
`_base_` inheritance with deep merging, and a plugin's defaults as values plus their rules.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.resources
import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmbench.config.rules import Check, Checked
from mmbench.config.yaml_text import CHECK_TAG, StrictLoader, lookup, parse_yaml, show, type_name
from mmbench.errors import ConfigError, UserError

SECTIONS: tuple[str, ...] = ("run", "method", "protocol", "dataset")
BASE_KEY = "_base_"
# `package.module:path/file.yaml`; a one-letter "package" is a Windows drive, not a package.
_PACKAGE_REFERENCE = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(.+)$")


class _DefaultsLoader(StrictLoader):
    """The loader of plugin defaults: the only YAML in which `!check` may declare a constraint."""


def _construct_check(loader: _DefaultsLoader, node: yaml.Node) -> Checked:
    mark = node.start_mark
    where = f"{mark.name} line {mark.line + 1}"
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(
            f"{where}: write `{CHECK_TAG} DEFAULT RULE` as one scalar; quote it when the default is a list, "
            f'e.g. {CHECK_TAG} "[0.9, 0.999] in [0, 1)"'
        )
    try:
        return Checked.parse(loader.construct_scalar(node))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


_DefaultsLoader.add_constructor(CHECK_TAG, _construct_check)


def parse_defaults_yaml(text: str, origin: str) -> Any:
    """`parse_yaml` for plugin defaults: `!check DEFAULT RULE` leaves become `Checked` values."""
    return parse_yaml(text, origin, loader=_DefaultsLoader)


# -- files and inheritance -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Location:
    """Where a YAML file is: `path` on disk, or the resource `path` inside `package` (packaged defaults).

    `virtual` marks a plugin's defaults given as a Python mapping: it has no folder to be relative to."""

    path: str
    package: str | None = None
    virtual: bool = False

    @property
    def label(self) -> str:
        return f"{self.package}:{self.path}" if self.package else self.path

    def identity(self) -> str:
        return self.label if self.package or self.virtual else os.path.realpath(self.path)

    def read_text(self) -> str:
        if self.package is not None:
            return importlib.resources.files(self.package).joinpath(self.path).read_text(encoding="utf-8")
        return Path(self.path).read_text(encoding="utf-8")

    def base(self, reference: str) -> _Location:
        """The location `reference` (an entry of this file's `_base_`) names."""
        match = _PACKAGE_REFERENCE.match(reference)
        if match and len(match.group(1)) > 1:
            return _Location(posixpath.normpath(match.group(2)), package=match.group(1))
        if self.virtual:
            raise ConfigError(
                f"{BASE_KEY} {reference!r} of {self.label} is relative, but a mapping of defaults has no folder; "
                "write 'package:file.yaml'"
            )
        if self.package is None:
            return _Location(os.path.normpath(os.path.join(os.path.dirname(self.path), reference)))
        # Inside a package: resolve in the package namespace, so that the same relative path works from an
        # editable install (plugin folders at the repository root) and from an installed copy alike.
        parts = self.package.split(".")
        full = posixpath.normpath(posixpath.join(*parts, posixpath.dirname(self.path), reference))
        pieces = full.split("/")
        common = 0
        while common < min(len(parts), len(pieces) - 1) and parts[common] == pieces[common]:
            common += 1
        if posixpath.isabs(reference) or common == 0:
            raise ConfigError(
                f"{BASE_KEY} {reference!r} of {self.label} leaves package {parts[0]!r}; "
                "name a file of another package as 'package:file.yaml'"
            )
        return _Location("/".join(pieces[common:]), package=".".join(parts[:common]))


@dataclass
class _Tree:
    """A YAML file's content with its bases merged in: the values, which file set each leaf, the rules."""

    data: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    checks: dict[str, Check] = field(default_factory=dict)


def _read_location(location: _Location, checks: bool, included_by: _Location | None, owner: str | None) -> Any:
    try:
        text = location.read_text()
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError) as exc:
        via = f" ({BASE_KEY} of {included_by.label!r})" if included_by is not None else ""
        if owner is not None:
            raise ConfigError(
                f"{owner}: default config {location.label!r}{via} not found ({exc}); reinstall the plugin"
            ) from exc
        raise ConfigError(f"config file {location.label!r}{via} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {location.label!r} cannot be read: {exc}") from exc
    return parse_defaults_yaml(text, location.label) if checks else parse_yaml(text, location.label)


def _load_tree(
    location: _Location,
    raw: Mapping[str, Any],
    checks: bool,
    owner: str | None,
    stack: tuple[tuple[str, str], ...] = (),
) -> _Tree:
    """Resolve the `_base_` of `raw` (the parsed content of `location`), recursively."""
    stack = (*stack, (location.identity(), location.label))
    result = _Tree()
    for key, value in raw.items():
        if key != BASE_KEY:
            _merge_tree(result, _split({key: value}, location.label), incoming_wins=True)
            continue
        references = [value] if isinstance(value, str) else value
        if not isinstance(references, list) or not references or not all(isinstance(r, str) for r in references):
            raise ConfigError(
                f"{location.label}: {BASE_KEY} must be a path or a non-empty list of paths, got {show(value)}"
            )
        bases = _Tree()
        for reference in references:
            base = location.base(reference)
            if base.identity() in (identity for identity, _ in stack):
                chain = " -> ".join(label for _, label in stack)
                raise ConfigError(f"{BASE_KEY} cycle: {chain} -> {base.label}; remove one of these {BASE_KEY} entries")
            content = _read_location(base, checks, location, owner)
            content = {} if content is None else content
            if not isinstance(content, dict):
                raise ConfigError(f"{base.label} ({BASE_KEY} of {location.label}) must hold a mapping")
            _merge_tree(bases, _load_tree(base, content, checks, owner, stack), incoming_wins=True)
        _merge_tree(result, bases, incoming_wins=False)
    return result


def _split(raw: Mapping[str, Any], origin: str, prefix: str = "") -> _Tree:
    """Plain values, the origin of every leaf and the rules of the `Checked` leaves of one file's mapping."""
    tree = _Tree()
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if key == BASE_KEY:
            raise ConfigError(
                f"{origin}: {BASE_KEY} is only allowed at the top level of a file, not in {prefix[:-1]!r}"
            )
        if isinstance(value, Checked):
            tree.checks[path] = dataclasses.replace(value.check, origin=origin)
            value = value.default
            if isinstance(value, dict):
                raise ConfigError(f"{origin}: {path!r} is a mapping; constraints apply to the values inside it")
        if isinstance(value, list) and any(isinstance(item, Checked) for item in value):
            raise ConfigError(f"{origin}: {path!r} holds a {CHECK_TAG} item; a rule applies to the whole list")
        if isinstance(value, dict) and value:
            inner = _split(value, origin, f"{path}.")
            tree.data[key] = inner.data
            tree.origins.update(inner.origins)
            tree.checks.update(inner.checks)
        else:
            tree.data[key] = copy.deepcopy(value)
            tree.origins[path] = origin
    return tree


def _merge_tree(target: _Tree, incoming: _Tree, incoming_wins: bool) -> None:
    """Deep-merge `incoming` into `target`: mappings merge, any other value replaces when `incoming_wins`.

    New keys are appended; a key already in `target` keeps its place. Rules follow their key whichever
    value wins; a key may have one rule (the same rule reached twice, through two bases, is one rule)."""
    _merge_values(target, incoming, target.data, incoming.data, "", incoming_wins)
    for path, check in incoming.checks.items():
        existing = target.checks.get(path)
        if existing is not None and existing != check:
            raise ConfigError(
                f"the constraint of {path!r} is declared twice ({existing.origin}: {existing.rule!r}; "
                f"{check.origin}: {check.rule!r}); declare it once, next to the default"
            )
        target.checks[path] = check


def _merge_values(
    target: _Tree, incoming: _Tree, into: dict[str, Any], values: Mapping[str, Any], prefix: str, wins: bool
) -> None:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key in into and isinstance(into[key], dict) and isinstance(value, dict):
            if not into[key] and value:  # an empty mapping was a leaf: its keys now come from `incoming`
                target.origins.pop(path, None)
            _merge_values(target, incoming, into[key], value, f"{path}.", wins)
            continue
        if key in into and not wins:
            continue
        for leaf in [leaf for leaf in target.origins if leaf == path or leaf.startswith(f"{path}.")]:
            del target.origins[leaf]
        into[key] = copy.deepcopy(value)
        target.origins.update(
            {leaf: origin for leaf, origin in incoming.origins.items() if leaf == path or leaf.startswith(f"{path}.")}
        )


def read_yaml_file(path: str | Path) -> dict[str, Any]:
    """Read one YAML config file whose top level must be a mapping (an empty file is an empty mapping);
    its `_base_`, if any, is left as it is (`read_config_layer` resolves it)."""
    data = _read_location(_Location(str(path)), checks=False, included_by=None, owner=None)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(path)!r} must hold a mapping of sections ({', '.join(SECTIONS)}), "
            f"not a {type_name(data)}"
        )
    return data


def read_config_layer(path: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """A `--config` source with its `_base_` files merged in: (data, the file that set each leaf key).

    A YAML file, or a run record (`result.json`) whose resolved config is reused, which is how a published
    record is re-run exactly."""
    if Path(path).suffix.lower() == ".json":
        from mmbench.records import read_record

        try:
            data = read_record(path)["config"]
        except UserError as exc:
            raise ConfigError(f"--config {str(path)!r} is not a usable run record: {exc}") from exc
        return data, {}
    tree = _load_tree(_Location(str(path)), read_yaml_file(path), checks=False, owner=None)
    return tree.data, tree.origins


def read_config_source(path: str | Path) -> dict[str, Any]:
    """The data of `read_config_layer`."""
    return read_config_layer(path)[0]


# -- plugin defaults -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PluginDefaults:
    """A plugin's defaults with their bases merged in: the values and, per dotted key, its rule."""

    values: dict[str, Any]
    checks: dict[str, Check] = field(default_factory=dict)


def load_plugin_defaults(defaults: str | Mapping[str, Any] | None, owner: str) -> PluginDefaults:
    """A plugin's defaults: a `package:file.yaml` resource shipped with it, a mapping, or none.

    Bases are merged, rules are collected, and every default is checked against its own rule."""
    if defaults is None:
        return PluginDefaults({})
    if isinstance(defaults, Mapping):
        location, raw = _Location(f"{owner} defaults", virtual=True), dict(defaults)
    else:
        package, _, resource = defaults.partition(":")
        if not package or not resource:
            raise ConfigError(f"{owner}: defaults {defaults!r} must look like 'package:file.yaml'")
        location = _Location(resource, package=package)
        raw = _read_location(location, checks=True, included_by=None, owner=owner)
        if raw is None:
            return PluginDefaults({})
        if not isinstance(raw, dict):
            raise ConfigError(f"{owner}: default config {defaults!r} must be a mapping, not a {type_name(raw)}")
    tree = _load_tree(location, raw, checks=True, owner=owner)
    for path, check in tree.checks.items():
        try:
            value = lookup(tree.data, path)
        except KeyError:
            raise ConfigError(
                f"{owner}: {check.origin} declares a constraint for {path!r}, which has no default"
            ) from None
        if isinstance(value, dict):
            raise ConfigError(f"{owner}: {path!r} is a mapping; constraints apply to the values inside it")
        problem = check.violation(value)
        if problem:
            message = check.message(f"the default {path}", value, problem, check.origin)
            raise ConfigError(f"{owner}: {message}")
    return PluginDefaults(tree.data, tree.checks)


def load_defaults(defaults: str | Mapping[str, Any] | None, owner: str) -> dict[str, Any]:
    """A plugin's default config as plain values (bases merged, rules checked and left out)."""
    return load_plugin_defaults(defaults, owner).values
