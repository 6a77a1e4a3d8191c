"""The value rules of `key: !check DEFAULT RULE` (docs/configuration.md): parsing a rule and checking a value.

Kept apart from YAML reading and config resolution so the grammar has one home and its own tests
(tests/test_config_values.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, NoReturn

from mmbench.config.yaml_text import CHECK_TAG, parse_yaml, show
from mmbench.errors import ConfigError

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
            return f"{key}={show(value)} is out of range ({source}): must be {allowed}"
        return f"{key}={show(value)} must be {allowed} ({source})"

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
