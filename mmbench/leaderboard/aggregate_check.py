"""`mmbench leaderboard --check` for a record's `aggregate`: recomputed by the record's own protocol code.

A record's `aggregate` (mean, worst, E(p), minority mIoU, repeated-draw statistics, a third-party protocol's
own summaries) was written by its protocol's `aggregate()` (mmbench/evaluation/engine.py calls it on the
scenario entries). The board ranks by these numbers (mmbench/leaderboard/board.py, `record_values`), so an
edited aggregate would move a row while every scenario still passed. Here the installed protocol is loaded
by the record's protocol name, built from the record's resolved protocol config, and run on the record's
scenarios with their metrics recomputed from the stored confusion matrices; every stored leaf must equal
the fresh one. What cannot be recomputed (a protocol that is not installed, another protocol version that
disagrees, an `aggregate()` that needs what the record does not hold) is said, never passed over.

The harness's own figure `most_fragile` (mmbench/runs/fragile.py) is checked as far as a record allows: the
chosen modality must be the lowest of the stored validation mIoUs, and its test metrics must match the record's
scenario of the same modalities when the record has one (otherwise that scenario's matrix is not stored).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmbench.evaluation.metrics import compute_metrics

FRAGILE = "most_fragile"  # added by the harness after the protocol's aggregate (mmbench/runs/fragile.py)
FRAGILE_METRICS = ("miou", "mf1", "oa")
TOLERANCE = 1e-9


@dataclass
class AggregateCheck:
    """Disagreements (`key: stored X, recomputed Y`), the parts that could not be recomputed (why), and whether
    `most_fragile`'s test metrics had to be taken as stored."""

    mismatches: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    fragile_as_stored: bool = False  # `most_fragile`'s test metrics: its scenario's matrix is not in the record


def check_aggregate(record: Mapping[str, Any]) -> AggregateCheck:
    """Recompute `record["aggregate"]` with the record's protocol and compare every stored leaf."""
    result = AggregateCheck()
    stored = record.get("aggregate")
    if not isinstance(stored, Mapping):
        result.mismatches.append(f"aggregate: stored {_show(stored)} is not an object")
        return result
    protocol_block = record.get("protocol") or {}
    name, version = protocol_block.get("name"), protocol_block.get("version")
    entries = _recomputed_entries(record)
    if entries is None:
        result.unchecked.append("aggregate: a scenario's confusion matrix is unusable (above), so nothing to recompute")
        return result
    modalities = _modalities(record, entries)
    _check_fragile(stored.get(FRAGILE), entries, modalities, result)
    protocol_part = {key: value for key, value in stored.items() if key != FRAGILE}
    fresh, why_not = _protocol_aggregate(record, name, version, entries, modalities)
    if fresh is None:
        result.unchecked.append(f"aggregate: {why_not}")
        return result
    mismatches = _compare("aggregate", protocol_part, fresh)
    installed = why_not  # the installed version, when it differs from the record's
    if mismatches and installed is not None:
        result.unchecked.append(
            f"aggregate: protocol {name!r} is version {installed} here but the record was made by version "
            f"{version}, and they disagree (first: {mismatches[0]}); install version {version} to check it"
        )
        return result
    result.mismatches.extend(mismatches)
    return result


def _recomputed_entries(record: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The record's scenario entries with their metrics recomputed from their confusion matrices."""
    scored = ((record.get("protocol") or {}).get("settings") or {}).get("classes_scored")
    entries = []
    try:
        for scenario in record["scenarios"]:
            entry = copy.deepcopy(dict(scenario))
            classes = list(scenario["metrics"]["per_class"])  # the dataset's class order (the matrix's)
            entry["metrics"] = compute_metrics(scenario["confusion_matrix"], classes, scored)
            entries.append(entry)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return entries


def _modalities(record: Mapping[str, Any], entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The modalities the protocol evaluated, in store order: the harness's figure lists them all; else the
    union of the scenarios' modalities by first appearance (store order for every built-in scenario set)."""
    fragile = (record.get("aggregate") or {}).get(FRAGILE)
    if isinstance(fragile, Mapping) and isinstance(fragile.get("val_miou_without"), Mapping):
        return list(fragile["val_miou_without"])
    seen: list[str] = []
    for entry in entries:
        for name in entry.get("available") or ():
            if name not in seen:
                seen.append(name)
    return seen


def _protocol_aggregate(
    record: Mapping[str, Any], name: Any, version: Any, entries: list[dict[str, Any]], modalities: list[str]
) -> tuple[dict[str, Any] | None, str | None]:
    """(the fresh aggregate as JSON would store it, the installed version if it differs), or (None, why not)."""
    from mmbench.errors import UserError
    from mmbench.protocol import Protocol
    from mmbench.registry import PROTOCOLS

    try:
        spec = PROTOCOLS.get(str(name))
        cls = spec.load()
    except UserError as exc:
        return None, f"protocol {name!r} cannot be loaded here ({exc}); install it to recompute the aggregate"
    except Exception as exc:  # a third-party plugin's import error, of any type
        return None, f"protocol {name!r} failed to load ({type(exc).__name__}: {exc}); fix or install it"
    if not (isinstance(cls, type) and issubclass(cls, Protocol)):
        return None, f"protocol {name!r} is not a mmbench.protocol.Protocol here"
    config = (record.get("config") or {}).get("protocol")
    settings = (record.get("protocol") or {}).get("settings") or {}
    classes = list(entries[0]["metrics"]["per_class"]) if entries else []
    context: dict[str, Any] = {
        "classes": classes,
        "ignore_index": settings.get("ignore_index"),
        "store_modalities": list(modalities),
        "modalities": list(modalities),
        "modality_channels": {},
    }
    stored = record.get("aggregate") or {}
    if getattr(cls, "needs_train_frequencies", False):
        frequencies = stored.get("train_class_frequencies") or settings.get("train_class_frequencies")
        if not isinstance(frequencies, Mapping):
            return None, (f"protocol {name!r} needs the training part's class shares, which the record does not store")
        context["train_class_frequencies"] = dict(frequencies)
    try:
        protocol = cls(dict(config or {}))
        fresh = protocol.aggregate(entries, list(modalities), context)
        fresh = json.loads(json.dumps(fresh))
    except Exception as exc:  # the plugin's own code on what the record holds: any failure means "not checked"
        text = " ".join(str(exc).split())
        return None, f"protocol {name!r}'s aggregate() cannot be rerun on this record ({type(exc).__name__}: {text})"
    installed = None if str(spec.version) == str(version) else str(spec.version)
    return fresh, installed


def _check_fragile(
    figure: Any, entries: Sequence[Mapping[str, Any]], modalities: Sequence[str], result: AggregateCheck
) -> None:
    """`most_fragile`: the choice follows from the stored validation mIoUs; its test metrics match the record's
    scenario of the same modalities when there is one (that is all a record allows to check)."""
    if figure is None:
        return
    key = f"aggregate.{FRAGILE}"
    if not isinstance(figure, Mapping) or not isinstance(figure.get("val_miou_without"), Mapping):
        result.mismatches.append(f"{key}: stored {_show(figure)} lacks its val_miou_without")
        return
    values = figure["val_miou_without"]
    order = list(values)
    scored = [name for name in order if _number(values[name])]
    chosen = min(scored, key=lambda name: (values[name], order.index(name))) if scored else None
    if figure.get("modality") != chosen:
        result.mismatches.append(
            f"{key}.modality: stored {_show(figure.get('modality'))}, recomputed {_show(chosen)} "
            "(the lowest of val_miou_without)"
        )
        return
    if chosen is None:
        return
    kept = {name for name in modalities if name != chosen}
    same = [entry for entry in entries if set(entry.get("available") or ()) == kept and not _per_sample(entry)]
    if not same:
        result.fragile_as_stored = True
        return
    for metric in FRAGILE_METRICS:
        problem = _leaf(f"{key}.{metric}", figure.get(metric), same[0]["metrics"][metric])
        if problem:
            result.mismatches.append(problem)


def _per_sample(entry: Mapping[str, Any]) -> bool:
    return "drop_probability" in entry or "corrupted" in entry


def _compare(where: str, stored: Any, fresh: Any) -> list[str]:
    """Every leaf where `stored` and `fresh` differ, as `key: stored X, recomputed Y`."""
    if isinstance(fresh, Mapping):
        if not isinstance(stored, Mapping):
            return [f"{where}: stored {_show(stored)}, recomputed an object with {', '.join(map(str, fresh))}"]
        problems = []
        for key, value in fresh.items():
            if key not in stored:
                problems.append(f"{where}.{key}: missing from the record (recomputed {_show(value)})")
            else:
                problems.extend(_compare(f"{where}.{key}", stored[key], value))
        problems.extend(
            f"{where}.{key}: stored {_show(stored[key])}, which the protocol does not produce"
            for key in stored
            if key not in fresh
        )
        return problems
    if isinstance(fresh, list):
        if not isinstance(stored, list) or len(stored) != len(fresh):
            return [f"{where}: stored {_show(stored)}, recomputed {_show(fresh)}"]
        problems = []
        for index, (old, new) in enumerate(zip(stored, fresh, strict=True)):
            problems.extend(_compare(f"{where}[{index}]", old, new))
        return problems
    problem = _leaf(where, stored, fresh)
    return [problem] if problem else []


def _leaf(where: str, stored: Any, fresh: Any) -> str | None:
    if _number(fresh) and _number(stored):
        if math.isclose(stored, fresh, rel_tol=TOLERANCE, abs_tol=TOLERANCE):
            return None
        return f"{where}: stored {stored!r}, recomputed {fresh!r}"
    if stored == fresh and isinstance(stored, bool) == isinstance(fresh, bool):
        return None
    return f"{where}: stored {_show(stored)}, recomputed {_show(fresh)}"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
