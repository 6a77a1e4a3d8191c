"""Conformance checks of a protocol plugin (docs/checking.md): it builds from its defaults, its scenarios are
well-formed, uniquely named and use only the dataset's modalities, and its aggregates can be computed from
(fake) scenario results and are JSON numbers."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mmbench.plugins import ProtocolSpec
from mmbench.registry import PROTOCOLS
from mmbench.testing.origin import describe_origin
from mmbench.testing.results import FAIL, PASS, CheckReport
from mmbench.testing.scenarios import scenario_problem

DEFAULT_MODALITIES = ("optical", "dsm", "sar")  # the synthetic benchmark's (mmbench/datasets/synthetic.py)
DEFAULT_CLASSES = ("impervious_surface", "building", "low_vegetation", "tree", "car", "clutter")


def fake_context(modalities: Sequence[str], classes: Sequence[str], channels: Mapping[str, int]) -> dict[str, Any]:
    """What the evaluation engine hands a protocol (mmbench/evaluation/engine.py: protocol_context), with
    training class shares in which the last class is rare (so minority-style protocols have one)."""
    shares = {name: (1 - 1e-3) / max(len(classes) - 1, 1) for name in classes[:-1]}
    shares[classes[-1]] = 1e-3
    return {
        "classes": list(classes),
        "ignore_index": 255,
        "store_modalities": list(modalities),
        "modality_channels": {name: channels.get(name, 1) for name in modalities},
        "train_class_frequencies": shares,
    }


def check_protocol(
    protocol: str | ProtocolSpec,
    *,
    modalities: Sequence[str] = DEFAULT_MODALITIES,
    classes: Sequence[str] = DEFAULT_CLASSES,
    channels: Mapping[str, int] | None = None,
    overrides: Sequence[str] = (),
    raise_on_failure: bool = True,
) -> CheckReport:
    """Check a protocol on a dataset's `modalities` and `classes`; raises `ContractViolation` on the first
    broken rule unless `raise_on_failure` is False."""
    spec = PROTOCOLS.get(protocol) if isinstance(protocol, str) else protocol
    report = CheckReport("protocol", spec.name, describe_origin(PROTOCOLS, spec.name))
    _run(spec, report, tuple(modalities), tuple(classes), dict(channels or {}), overrides)
    if raise_on_failure:
        report.raise_for_failures()
    return report


def _run(
    spec: ProtocolSpec,
    report: CheckReport,
    modalities: tuple[str, ...],
    classes: tuple[str, ...],
    channels: dict[str, int],
    overrides: Sequence[str],
) -> None:
    from mmbench.config import resolve_run_config
    from mmbench.protocol import Protocol

    try:
        cls = spec.load()
        if not (isinstance(cls, type) and issubclass(cls, Protocol)):
            report.add("builds", FAIL, f"{spec.target} is not a mmbench.protocol.Protocol subclass; derive from it")
            return
        protocol = cls(resolve_run_config({"protocol": spec}, overrides=overrides).section("protocol"))
        protocol.check_classes(classes)
        selected = protocol.select_modalities(modalities)
    except Exception as exc:  # the plugin's own code or its defaults failed
        report.add("builds", FAIL, f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        return
    report.add("builds", PASS, f"from its defaults, on {', '.join(selected)}")
    context = {**fake_context(modalities, classes, channels), "modalities": list(selected)}
    try:
        scenarios = protocol.scenarios(selected, context)
    except Exception as exc:
        report.add("scenarios", FAIL, f"scenarios() raised {type(exc).__name__}: {' '.join(str(exc).split())}")
        return
    problem = scenario_problem(list(scenarios), selected)
    if problem is not None:
        rule = "scenario-modalities" if "lacks" in problem else "scenarios"
        report.add(rule, FAIL, problem)
        return
    report.add("scenarios", PASS, f"{len(scenarios)} well-formed scenarios with unique names")
    report.add("scenario-modalities", PASS, f"every scenario uses only {', '.join(selected)}")
    _aggregate(protocol, scenarios, selected, context, report)


def _aggregate(
    protocol: Any, scenarios: Sequence[Any], selected: Sequence[str], context: dict, report: CheckReport
) -> None:
    from mmbench.evaluation.metrics import compute_metrics

    rng = np.random.default_rng(0)
    classes = context["classes"]
    entries = []
    for scenario in scenarios:
        matrix = rng.integers(1, 100, (len(classes), len(classes)))
        entry = {
            "name": scenario.name,
            "available": list(scenario.available),
            "metrics": compute_metrics(matrix, classes, protocol.config.get("classes_scored")),
            "confusion_matrix": matrix.tolist(),
            **scenario.record_fields(),
        }
        entries.append(entry)
    try:
        aggregate = protocol.aggregate(entries, selected, context)
        settings = protocol.settings(context)
    except Exception as exc:
        report.add("aggregate", FAIL, f"aggregate() raised {type(exc).__name__}: {' '.join(str(exc).split())}")
        return
    if not isinstance(aggregate, Mapping):
        report.add("aggregate", FAIL, f"aggregate() returned a {type(aggregate).__name__}; return a dict")
        return
    try:
        json.dumps({"aggregate": aggregate, "settings": settings}, allow_nan=False)
    except (TypeError, ValueError) as exc:
        report.add(
            "aggregate",
            FAIL,
            f"aggregate() or settings() is not plain JSON ({exc}); return numbers, strings, lists, dicts or None",
        )
        return
    bad = [key for key, value in _numbers(aggregate) if not math.isfinite(value)]
    if bad:
        report.add("aggregate", FAIL, f"aggregate value {bad[0]!r} is not finite; use None for undefined values")
        return
    report.add("aggregate", PASS, f"{len(aggregate)} summaries from fake results: {', '.join(list(aggregate)[:4])}")


def _numbers(data: Any, prefix: str = "") -> list[tuple[str, float]]:
    if isinstance(data, Mapping):
        return [pair for key, value in data.items() for pair in _numbers(value, f"{prefix}{key}.")]
    if isinstance(data, (list, tuple)):
        return [pair for index, value in enumerate(data) for pair in _numbers(value, f"{prefix}{index}.")]
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        return [(prefix.rstrip("."), float(data))]
    return []
