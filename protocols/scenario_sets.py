"""Protocols that evaluate fixed sets of available modalities: full, missing1, last1, subsets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mmbench.errors import ConfigError
from mmbench.protocol import Protocol, Scenario, bernoulli_expectation, fixed_scenarios, summary

METRICS = ("miou", "mf1", "oa")


def scenario_summary(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean of each headline metric, the worst scenario by mIoU, and mIoU per scenario."""
    means = {key: summary([entry["metrics"][key] for entry in results])["mean"] for key in METRICS}
    scored = [entry for entry in results if entry["metrics"]["miou"] is not None]
    worst = min(scored, key=lambda entry: entry["metrics"]["miou"]) if scored else None
    return {
        "mean": means,
        "worst": (
            {"scenario": worst["name"], **{key: worst["metrics"][key] for key in METRICS}}
            if worst is not None
            else None
        ),
        "per_scenario_miou": {entry["name"]: entry["metrics"]["miou"] for entry in results},
    }


class Full(Protocol):
    name = "full"

    def scenarios(self, modalities: Sequence[str], context: Mapping[str, Any]) -> list[Scenario]:
        return fixed_scenarios(modalities, [len(modalities)])

    def aggregate(self, results, modalities, context) -> dict[str, Any]:
        return {key: results[0]["metrics"][key] for key in (*METRICS, "kappa")}


class _LeaveOut(Protocol):
    """Scenarios of one size: missing1 (M − 1 modalities each) and last1 (one modality each)."""

    def scenario_size(self, total: int) -> int:
        raise NotImplementedError

    def scenarios(self, modalities: Sequence[str], context: Mapping[str, Any]) -> list[Scenario]:
        if len(modalities) < 2:
            raise ConfigError(f"protocol {self.name!r} needs a dataset with at least two modalities")
        return fixed_scenarios(modalities, [self.scenario_size(len(modalities))])

    def aggregate(self, results, modalities, context) -> dict[str, Any]:
        aggregate = scenario_summary(results)
        if len(modalities) == 2:
            aggregate["note"] = "with two modalities, missing1 and last1 evaluate the same scenarios"
        return aggregate


class Missing1(_LeaveOut):
    name = "missing1"

    def scenario_size(self, total: int) -> int:
        return total - 1


class Last1(_LeaveOut):
    name = "last1"

    def scenario_size(self, total: int) -> int:
        return 1


class Subsets(Protocol):
    """Every non-empty subset, full set included (EMM, Liao et al. 2025)."""

    name = "subsets"

    def scenarios(self, modalities: Sequence[str], context: Mapping[str, Any]) -> list[Scenario]:
        return fixed_scenarios(modalities, range(1, len(modalities) + 1))

    def aggregate(self, results, modalities, context) -> dict[str, Any]:
        return emm_aggregate(results, len(modalities), self.config["probabilities"])


def emm_aggregate(results: Sequence[Mapping[str, Any]], total: int, probabilities: Sequence[float]) -> dict[str, Any]:
    """Plain mean over the subsets and the Bernoulli expectation E(p) for each p, per headline metric."""
    aggregate = scenario_summary(results)
    expectation: dict[str, dict[str, float | None]] = {}
    for p in probabilities:
        if not 0 < p < 1:
            raise ConfigError(f"protocol probabilities must lie strictly between 0 and 1, got {p}")
        expectation[f"p={p:g}"] = {}
        for key in METRICS:
            pairs = [
                (entry["metrics"][key], entry["missing"]) for entry in results if entry["metrics"][key] is not None
            ]
            expectation[f"p={p:g}"][key] = (
                bernoulli_expectation([v for v, _ in pairs], [k for _, k in pairs], total, p) if pairs else None
            )
    aggregate["expectation"] = expectation
    return aggregate
