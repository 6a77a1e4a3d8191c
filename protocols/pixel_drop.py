"""pixel-drop (RMM, Liao et al. 2025): for every subset loop of EMM, the "missing" modalities are not
removed but degraded: a fraction r of their pixels is replaced by the fill value (0 in normalised
space). The method is told every modality is available. The undegraded full scenario is shared by all r.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mmbench.errors import ConfigError
from mmbench.protocol import Protocol, Scenario, subsets

from .scenario_sets import emm_aggregate


class PixelDrop(Protocol):
    name = "pixel-drop"

    def scenarios(self, modalities: Sequence[str], context: Mapping[str, Any]) -> list[Scenario]:
        ratios = self.config["ratios"]
        if not ratios or any(not 0 < r < 1 for r in ratios):
            raise ConfigError(f"protocol.ratios={ratios} must be fractions strictly between 0 and 1")
        scenarios = [Scenario("intact", tuple(modalities), missing=0, tags={"ratio": 0.0})]
        for ratio in ratios:
            for intact in subsets(modalities):
                degraded = [name for name in modalities if name not in intact]
                if not degraded:
                    continue
                scenarios.append(
                    Scenario(
                        f"{'+'.join(degraded)} degraded r={ratio:g}",
                        tuple(modalities),
                        missing=len(degraded),
                        corrupted={name: float(ratio) for name in degraded},
                        tags={"ratio": float(ratio)},
                    )
                )
        return scenarios

    def aggregate(self, results, modalities, context) -> dict[str, Any]:
        intact = [entry for entry in results if entry["ratio"] == 0.0]
        per_ratio = {}
        for ratio in self.config["ratios"]:
            group = intact + [entry for entry in results if entry["ratio"] == float(ratio)]
            per_ratio[f"r={ratio:g}"] = emm_aggregate(group, len(modalities), self.config["probabilities"])
        return {"per_ratio": per_ratio}
