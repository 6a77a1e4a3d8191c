"""Missing-modality protocols: which scenarios to evaluate, and how to summarise them.

A protocol turns the dataset's modality list into scenarios (which modalities each sample gets, and
which are degraded) and their per-scenario metrics into the summaries a paper reports (mean, worst
case, Bernoulli expectation, ...). Every choice that makes "results differ" in this field (split,
label variant, ignore index, classes scored, window and stride) is a protocol setting, recorded in
every result. Protocols are plugins (`mmbench.protocols` entry points); the built-ins live in
`protocols/` (installed as `mmbench.protocols`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmbench.errors import ConfigError


@dataclass(frozen=True)
class Scenario:
    """One evaluation condition.

    `available` lists the modalities given to the method (for per-sample protocols: those that may be
    given). `drop_probability` > 0 makes availability random per sample (seeded by the protocol);
    `corrupted` maps a modality to the fraction of its pixels replaced by the fill value.
    """

    name: str
    available: tuple[str, ...]
    missing: int = 0
    drop_probability: float = 0.0
    corrupted: Mapping[str, float] = field(default_factory=dict)
    repeat: int = 0
    tags: Mapping[str, Any] = field(default_factory=dict)

    @property
    def per_sample(self) -> bool:
        return self.drop_probability > 0

    def availability(self, modalities: Sequence[str], tile: int, seed: int) -> tuple[bool, ...]:
        """Which modalities tile `tile` gets: fixed, or drawn independently (never all dropped)."""
        if not self.per_sample:
            return tuple(name in self.available for name in modalities)
        rng = np.random.default_rng([seed, self.repeat, tile])
        while True:
            keep = tuple(bool(rng.random() >= self.drop_probability) and name in self.available for name in modalities)
            if any(keep):
                return keep

    def record_fields(self) -> dict[str, Any]:
        """What a run record stores about the scenario besides its metrics."""
        fields: dict[str, Any] = {"missing": self.missing}
        if self.per_sample:
            fields.update({"drop_probability": self.drop_probability, "repeat": self.repeat})
        if self.corrupted:
            fields["corrupted"] = dict(self.corrupted)
        fields.update(self.tags)
        return fields


def scenario_name(available: Sequence[str]) -> str:
    return "+".join(available) if len(available) > 1 else f"{available[0]} only"


def subsets(modalities: Sequence[str], min_size: int = 1) -> list[tuple[str, ...]]:
    """Non-empty subsets in a stable order: largest first, then dataset order."""
    return [
        combo for size in range(len(modalities), min_size - 1, -1) for combo in itertools.combinations(modalities, size)
    ]


def fixed_scenarios(modalities: Sequence[str], sizes: Sequence[int]) -> list[Scenario]:
    return [
        Scenario(scenario_name(combo), combo, missing=len(modalities) - len(combo))
        for combo in subsets(modalities)
        if len(combo) in sizes
    ]


def bernoulli_expectation(values: Sequence[float], missing: Sequence[int], total: int, p: float) -> float:
    """E(p) = Σ_S v_S p^k (1−p)^(M−k) / Σ_S p^k (1−p)^(M−k) over the non-empty subsets S (k missing)."""
    weights = [p**k * (1 - p) ** (total - k) for k in missing]
    return float(sum(w * v for w, v in zip(weights, values, strict=True)) / sum(weights))


def summary(values: Sequence[float | None]) -> dict[str, float | None]:
    """mean / min / max / std of the defined values (None when there are none)."""
    defined = [float(v) for v in values if v is not None]
    if not defined:
        return {"mean": None, "min": None, "max": None, "std": None}
    return {
        "mean": float(np.mean(defined)),
        "min": float(np.min(defined)),
        "max": float(np.max(defined)),
        "std": float(np.std(defined, ddof=1)) if len(defined) > 1 else 0.0,
    }


class Protocol:
    """Base class of protocol implementations; subclasses define `scenarios` and `aggregate`.

    `config` is the protocol's resolved config section; the common settings are checked here.
    """

    name = "protocol"

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        window, stride = self.config.get("window"), self.config.get("stride")
        for key, value in (("window", window), ("stride", stride)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"protocol.{key}={value!r} must be an integer number of pixels or null")
        if window is not None and window < 1:
            raise ConfigError(f"protocol.window={window} must be a positive number of pixels or null (whole tiles)")
        if stride is not None and (window is None or not 0 < stride <= window):
            raise ConfigError(f"protocol.stride={stride} needs a window and must be in 1..window")
        if self.config.get("batch_size", 1) < 1:
            raise ConfigError("protocol.batch_size must be at least 1")
        scored = self.config.get("classes_scored")
        if scored is not None and (
            not isinstance(scored, list) or not scored or not all(isinstance(name, str) for name in scored)
        ):
            raise ConfigError(
                f"protocol.classes_scored={scored!r} must be null (all classes) or a non-empty list of class names"
            )

    def check_classes(self, classes: Sequence[str]) -> None:
        """`classes_scored` must name classes of the dataset."""
        unknown = [name for name in self.config.get("classes_scored") or () if name not in classes]
        if unknown:
            raise ConfigError(
                f"protocol.classes_scored names {unknown[0]!r}, which is not a class of the dataset "
                f"({', '.join(classes)})"
            )

    def select_modalities(self, dataset_modalities: Sequence[str]) -> tuple[str, ...]:
        """The modalities the protocol works with: `modalities` from its config, or all of the dataset's."""
        wanted = self.config.get("modalities")
        if wanted is None:
            return tuple(dataset_modalities)
        missing = [name for name in wanted if name not in dataset_modalities]
        if missing:
            raise ConfigError(
                f"protocol {self.name!r} needs modality {missing[0]!r}, which the dataset lacks "
                f"(it has {', '.join(dataset_modalities)}); fix protocol.modalities"
            )
        return tuple(name for name in dataset_modalities if name in wanted)

    def scenarios(self, modalities: Sequence[str], context: Mapping[str, Any]) -> list[Scenario]:
        raise NotImplementedError

    def aggregate(
        self, results: Sequence[Mapping[str, Any]], modalities: Sequence[str], context: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Summaries from the scenario entries (dicts as stored in run records)."""
        raise NotImplementedError

    def settings(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """What the record states about how the numbers were produced."""
        settings = dict(self.config)
        settings.update(
            {
                "ignore_index": context.get("ignore_index"),
                "classes_scored": self.config.get("classes_scored") or list(context.get("classes", ())),
                "accumulation": "global confusion matrix over the test part",
                "absent_class_policy": "nan-mean (classes with an empty union are left out of the means)",
                "missing_input_fill": "zeros (normalised space, i.e. the training mean)",
            }
        )
        return settings
