"""Run configuration: plugin defaults < `--config FILE.yaml` < `--set key.sub=value` < explicit flags.

The defaults are the schema. A key that is not in a plugin's default YAML is rejected with its full path
and the keys that are allowed there, and a value must have the type of its default (an int is accepted
where a float is expected; `null` as a default means "any type"; an empty mapping is an open mapping).
Typos in keys are the most common cause of silent misconfiguration in segmentation toolkits' trackers,
so nothing unknown is ever ignored.

Defaults also carry the values they allow: `key: !check DEFAULT RULE` declares the default and its range
or choices in one place (`lr: !check 0.002 > 0`, `amp: !check off in {off, bf16, fp16}`; the grammar is
`Check`'s). Every resolved value is checked against its rule before anything runs, `--dry-run` included.

A YAML file, a plugin's defaults as well as a `--config` file, may inherit from others with a top-level
`_base_:` (a path relative to the including file, `package:file.yaml` for a file shipped in a package, or a
list of them). Merging is deep: mappings merge, any other value replaces; the file's own keys win over its
bases', later bases over earlier ones, and the inherited keys are listed where `_base_` is written.

A run config has four sections: `run` (harness settings shared by every run), `method`, `protocol`
and `dataset` (each the defaults of the chosen plugin). docs/configuration.md is the user's guide.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib.resources
import math
import os
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from mmbench.errors import ConfigError, UserError
from mmbench.plugins import PluginSpec

SECTIONS: tuple[str, ...] = ("run", "method", "protocol", "dataset")
RUN_DEFAULTS_RESOURCE = "mmbench:configs/run.yaml"
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
BASE_KEY = "_base_"
CHECK_TAG = "!check"
# `package.module:path/file.yaml`; a one-letter "package" is a Windows drive, not a package.
_PACKAGE_REFERENCE = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(.+)$")


# -- YAML ----------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that rejects duplicate keys and reads `1e-3` as a float (PyYAML reads it as a string)."""

    allow_checks = False

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


class _DefaultsLoader(_StrictLoader):
    """The loader of plugin defaults: the only YAML in which `!check` may declare a constraint."""

    allow_checks = True


def _construct_check(loader: _StrictLoader, node: yaml.Node) -> Checked:
    mark = node.start_mark
    where = f"{mark.name} line {mark.line + 1}"
    if not loader.allow_checks:
        raise ConfigError(
            f"{where}: {CHECK_TAG} declares a constraint, which only a plugin's default YAML may do; write the value"
        )
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(
            f"{where}: write `{CHECK_TAG} DEFAULT RULE` as one scalar; quote it when the default is a list, "
            f'e.g. {CHECK_TAG} "[0.9, 0.999] in [0, 1)"'
        )
    try:
        return Checked.parse(loader.construct_scalar(node))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


_StrictLoader.add_constructor(CHECK_TAG, _construct_check)


def parse_yaml(text: str, origin: str, *, checks: bool = False) -> Any:
    """Parse YAML text; a syntax error becomes a one-line `ConfigError` with the line and column.

    `checks=True` (plugin defaults only) reads `!check DEFAULT RULE` leaves as `Checked` values."""
    loader = (_DefaultsLoader if checks else _StrictLoader)(text)
    loader.name = origin  # marks (and so every message) name the file, not "<unicode string>"
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{origin}{where}: invalid YAML ({exc.problem}); fix the syntax") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: invalid YAML ({exc}); fix the syntax") from exc
    finally:
        loader.dispose()


# -- constraints ---------------------------------------------------------------------------------------

_RULE_HELP = "rules are terms such as '> 0', '>= 1', 'in [0, 1)', 'in {a, b}', 'int', 'nonempty', 'length 2'"
_NUMBER = re.compile(r"[-+]?(?:inf|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)")
_COMPARISON = re.compile(r"(>=|<=|>|<)\s*(" + _NUMBER.pattern + r")")
_WORD = re.compile(r"[A-Za-z_]+")
_KINDS = ("int", "float", "number", "str", "bool")


def _number(text: str) -> float | int:
    value = float(text)
    return int(text) if re.fullmatch(r"[-+]?\d+", text) else value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float", "number"):
        return _is_number(value)
    return isinstance(value, {"str": str, "bool": bool}[kind])


@dataclass(frozen=True)
class Check:
    """The values a config key allows, parsed from a rule such as `>= 1`, `in [0, 1)` or `in {a, b}`.

    A rule is a sequence of terms, all of which must hold:

    - `> x`, `>= x`, `< x`, `<= x`: numeric bounds (`inf` allowed);
    - `in [a, b]`, `in (a, b)`, `in [a, b)`, `in (a, b]`: an interval, brackets closed, parentheses open;
    - `in {a, b, c}`: choices, read as YAML scalars (`off` is the string "off", `18` the int 18);
    - `int`, `float`, `number`, `str`, `bool`: the type, for keys whose default is null;
    - `nonempty`, `length N`: the value is a list (non-empty, or of N values).

    On a list, every term but `nonempty`/`length` applies to each element. `null` passes where the default
    is null (the type check refuses it elsewhere). `origin` is the file that declared the rule.
    """

    rule: str
    origin: str = ""
    kind: str | None = None
    low: float | int | None = None
    low_open: bool = False
    high: float | int | None = None
    high_open: bool = False
    bounds_text: str = ""
    choices: tuple[Any, ...] | None = None
    nonempty: bool = False
    length: int | None = None

    @classmethod
    def parse(cls, rule: str, origin: str = "") -> Check:
        text = rule.strip()
        if not text:
            raise ConfigError(f"a constraint needs a rule after the default; {_RULE_HELP}")
        terms: dict[str, Any] = {}

        def fail(problem: str) -> NoReturn:
            raise ConfigError(f"constraint {text!r}: {problem}; {_RULE_HELP}")

        def put(name: str, value: Any) -> None:
            if name in terms:
                what = {"low": "a lower bound", "high": "an upper bound", "kind": "a type"}.get(name, f"'{name}'")
                fail(f"{what} is given twice")
            terms[name] = value

        bounds: list[str] = []
        position = 0
        while position < len(text):
            if text[position].isspace():
                position += 1
                continue
            comparison = _COMPARISON.match(text, position)
            if comparison:
                operator, literal = comparison.group(1), comparison.group(2)
                if operator[0] == ">":
                    put("low", _number(literal))
                    put("low_open", operator == ">")
                else:
                    put("high", _number(literal))
                    put("high_open", operator == "<")
                bounds.append(f"{operator} {literal}")
                position = comparison.end()
                continue
            word = _WORD.match(text, position)
            if not word:
                fail(f"cannot read {text[position:]!r}")
            position = word.end()
            name = word.group(0)
            if name in _KINDS:
                put("kind", name)
            elif name == "nonempty":
                put("nonempty", True)
            elif name == "length":
                count = re.compile(r"\s*(\d+)").match(text, position)
                if not count:
                    fail("'length' needs a whole number")
                put("length", int(count.group(1)))
                position = count.end()
            elif name == "in":
                opening = re.compile(r"\s*([\[({])").match(text, position)
                if not opening:
                    fail("'in' needs an interval such as [0, 1) or choices such as {a, b}")
                bracket = opening.group(1)
                start = opening.end()
                if bracket == "{":
                    end = text.find("}", start)
                    if end < 0:
                        fail("'{' is not closed")
                    items = parse_yaml(f"[{text[start:end]}]", f"constraint {text!r}")
                    if not items:
                        fail("choices need at least one value")
                    put("choices", tuple(items))
                    position = end + 1
                    continue
                interval = re.compile(
                    r"\s*(" + _NUMBER.pattern + r")\s*,\s*(" + _NUMBER.pattern + r")\s*([\])])"
                ).match(text, start)
                if not interval:
                    fail("an interval looks like [a, b], (a, b), [a, b) or (a, b]")
                low, high, closing = interval.group(1), interval.group(2), interval.group(3)
                if not float(low) < float(high):
                    fail(f"the interval {bracket}{low}, {high}{closing} is empty")
                if float(low) != -math.inf:
                    put("low", _number(low))
                    put("low_open", bracket == "(")
                if float(high) != math.inf:
                    put("high", _number(high))
                    put("high_open", closing == ")")
                bounds.append(f"in {bracket}{low}, {high}{closing}")
                position = interval.end()
            else:
                fail(f"unknown term {name!r}")
        if "choices" in terms and bounds:
            fail("give choices or bounds, not both")
        if terms.get("kind") in ("str", "bool") and bounds:
            fail(f"a {terms['kind']} has no numeric bounds")
        return cls(rule=text, origin=origin, bounds_text=" and ".join(bounds), **terms)

    def violation(self, value: Any) -> str | None:
        """None if `value` is allowed, else "range" (a number outside the bounds) or "value" (anything else)."""
        if value is None:
            return None
        if self.nonempty or self.length is not None:
            if not isinstance(value, list):
                return "value"
            if (self.nonempty and not value) or (self.length is not None and len(value) != self.length):
                return "value"
        for item in value if isinstance(value, list) else [value]:
            problem = self._item_violation(item)
            if problem:
                return problem
        return None

    def _item_violation(self, item: Any) -> str | None:
        if self.kind is not None and not _is_kind(item, self.kind):
            return "value"
        if self.choices is not None:
            matches = [choice for choice in self.choices if choice == item]
            if not any(isinstance(choice, bool) == isinstance(item, bool) for choice in matches):
                return "value"
        if self.low is not None or self.high is not None:
            if not _is_number(item) or math.isnan(item):
                return "value"
            if self.low is not None and (item < self.low or (self.low_open and item == self.low)):
                return "range"
            if self.high is not None and (item > self.high or (self.high_open and item == self.high)):
                return "range"
        return None

    def message(self, key: str, value: Any, problem: str, source: str, nullable: bool = False) -> str:
        """The one-line error: `key=value is out of range (source): must be ...` for a number outside the
        bounds, `key=value must be ... (source)` for anything else."""
        allowed = self.describe(nullable)
        if problem == "range":
            return f"{key}={_show(value)} is out of range ({source}): must be {allowed}"
        return f"{key}={_show(value)} must be {allowed} ({source})"

    def describe(self, nullable: bool = False) -> str:
        """What the rule allows, in words: 'an int >= 1', 'one of off, bf16, fp16', ..."""
        element = []
        if self.kind is not None:
            element.append(("an " if self.kind == "int" else "a ") + self.kind)
        if self.bounds_text:
            element.append(self.bounds_text)
        if self.choices is not None:
            element.append("one of " + ", ".join(str(choice) for choice in self.choices))
        text = " ".join(element)
        if self.nonempty or self.length is not None:
            whole = "a non-empty list" if self.length is None else f"a list of {self.length} values"
            text = f"{whole}, each {text}" if text else whole
        return f"null or {text}" if nullable else text


@dataclass(frozen=True)
class Checked:
    """A default together with its constraint: what `key: !check DEFAULT RULE` loads as.

    Plugins whose defaults are a Python mapping rather than a YAML file write `checked(0.01, "> 0")`."""

    default: Any
    check: Check

    @classmethod
    def parse(cls, text: str) -> Checked:
        """`DEFAULT RULE`: the default is the first YAML value (a quoted or bracketed one may hold spaces)."""
        text = text.strip()
        end = _value_end(text)
        default_text, rule = text[:end], text[end:]
        if not rule.strip():
            raise ConfigError(f"{CHECK_TAG} {text!r} gives a default but no rule; {_RULE_HELP}")
        default = parse_yaml(default_text, f"{CHECK_TAG} {text!r}")
        return cls(default, Check.parse(rule))


def checked(default: Any, rule: str) -> Checked:
    """A default with its constraint, for plugins that give their defaults as a mapping (see `Check`)."""
    return Checked(default, Check.parse(rule))


def _value_end(text: str) -> int:
    """Where the leading YAML value of `text` ends: a quoted string, a bracketed collection or one word."""
    if not text:
        return 0
    opening = text[0]
    if opening in "'\"":
        end = text.find(opening, 1)
        return len(text) if end < 0 else end + 1
    if opening in "[{":
        closing, depth, quote = {"[": "]", "{": "}"}[opening], 0, ""
        for index, char in enumerate(text):
            if quote:
                quote = "" if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char == opening:
                depth += 1
            elif char == closing:
                depth -= 1
                if depth == 0:
                    return index + 1
        return len(text)
    match = re.compile(r"\S+").match(text)
    return match.end() if match else 0


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
    return parse_yaml(text, location.label, checks=checks)


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
                f"{location.label}: {BASE_KEY} must be a path or a non-empty list of paths, got {_show(value)}"
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
            f"not a {_type_name(data)}"
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
            raise ConfigError(f"{owner}: default config {defaults!r} must be a mapping, not a {_type_name(raw)}")
    tree = _load_tree(location, raw, checks=True, owner=owner)
    for path, check in tree.checks.items():
        try:
            value = _lookup(tree.data, path)
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
            value = _lookup(self._data, path)
            problem = check.violation(value)
            if problem:
                source = f"set by {_source_of(path, self._sources, 'defaults')}"
                nullable = _lookup(self._defaults, path) is None
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
                        f"{_allowed(default)}, got {_show(value)} ({_type_name(value)})"
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
                    f"not a {_type_name(content)}"
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


def _lookup(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def _source_of(path: str, leaf_sources: Mapping[str, str], default: str) -> str:
    """The source of a key: its own, else that of the first leaf below it, else `default`."""
    if path in leaf_sources:
        return leaf_sources[path]
    below = next((source for leaf, source in leaf_sources.items() if leaf.startswith(f"{path}.")), None)
    return below or default


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
