"""random-drop: each sample loses each modality independently with probability p (never all of them).

The schedule is drawn from the protocol's seed, the repeat and the tile index, so every method sees the
same availability patterns; the realised patterns are counted and stored with each repeat.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mmbench.errors import ConfigError
from mmbench.protocol import Protocol, Scenario, summary

from .scenario_sets import METRICS


class RandomDrop(Protocol):
    name = "random-drop"

    def scenarios(self, modalities: Sequence[str], context: Mapping[str, Any]) -> list[Scenario]:
        p, repeats = self.config["drop_probability"], self.config["repeats"]
        if not 0 < p < 1:
            raise ConfigError(f"protocol.drop_probability={p} must lie strictly between 0 and 1")
        if repeats < 1:
            raise ConfigError(f"protocol.repeats={repeats} must be at least 1")
        return [Scenario(f"repeat {r + 1}", tuple(modalities), drop_probability=p, repeat=r) for r in range(repeats)]

    def aggregate(self, results, modalities, context) -> dict[str, Any]:
        aggregate: dict[str, Any] = {}
        for key in METRICS:
            stats = summary([entry["metrics"][key] for entry in results])
            aggregate[key] = {"mean": stats["mean"], "std": stats["std"], "n": len(results)}
        return aggregate
