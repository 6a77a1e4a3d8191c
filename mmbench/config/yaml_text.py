"""Strict YAML for every config file: no duplicate keys, YAML 1.2 booleans (`off` stays a string), `1e-3` as a
float, and one-line errors naming the file, line and column. The bottom of the config package: imports none of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from mmbench.errors import ConfigError

CHECK_TAG = "!check"


# -- YAML ----------------------------------------------------------------------------------------------


class StrictLoader(yaml.SafeLoader):
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
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _refuse_check(loader: StrictLoader, node: yaml.Node) -> None:
    mark = node.start_mark
    raise ConfigError(
        f"{mark.name} line {mark.line + 1}: {CHECK_TAG} declares a constraint, which only a plugin's default YAML "
        "may do; write the value"
    )


StrictLoader.add_constructor(CHECK_TAG, _refuse_check)


def parse_yaml(text: str, origin: str, *, loader: type[StrictLoader] | None = None) -> Any:
    """Parse YAML text; a syntax error becomes a one-line `ConfigError` with the line and column. `loader`
    is `StrictLoader` unless a caller extends it (the defaults' loader, mmbench/config/files.py)."""
    loader = (loader or StrictLoader)(text)
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


# -- value helpers shared by the package ----------------------------------------------------------------


def lookup(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "mapping"}.get(
        type(value), type(value).__name__
    )


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
