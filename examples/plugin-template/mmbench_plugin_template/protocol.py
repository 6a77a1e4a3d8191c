"""`template-drop-first`: evaluate with every modality, then with one modality removed.

A protocol turns the modalities it evaluates (the dataset's, or `protocol.modalities`) into scenarios,
and the per-scenario entries of the run record into the summaries of its `aggregate`. The base class
(mmbench.protocol.Protocol) checks the settings every protocol shares (window, stride, batch size,
classes scored); the engine evaluates the scenarios and stores one confusion matrix per scenario.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mmbench.errors import ConfigError
from mmbench.protocol import Protocol, Scenario, scenario_name

METRICS = ("miou", "mf1", "oa")


class DropFirst(Protocol):
    name = "template-drop-first"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        drop = self.config.get("drop")
        if drop is not None and not isinstance(drop, str):
            raise ConfigError(f"protocol.drop={drop!r} must be a modality name or null (the first modality)")

    def dropped(self, modalities: Sequence[str]) -> str:
        """The modality removed in the second scenario: `drop`, or the first of `modalities`."""
        drop = self.config.get("drop")
        if drop is None:
            return modalities[0]
        if drop not in modalities:
            raise ConfigError(f"protocol.drop={drop!r} is not among the evaluated modalities ({', '.join(modalities)})")
        return drop

    def scenarios(self, modalities: Sequence[str], context: Mapping[str, Any]) -> list[Scenario]:
        if len(modalities) < 2:
            raise ConfigError(f"protocol {self.name!r} needs at least two modalities; got {', '.join(modalities)}")
        dropped = self.dropped(modalities)
        rest = tuple(name for name in modalities if name != dropped)
        # Scenario names follow the built-ins ("optical+dsm+sar", "dsm+sar", "sar only"); `missing` counts
        # the modalities left out; `tags` are stored with the scenario in the record.
        return [
            Scenario(scenario_name(tuple(modalities)), tuple(modalities), missing=0, tags={"role": "full"}),
            Scenario(scenario_name(rest), rest, missing=1, tags={"role": "dropped", "dropped": dropped}),
        ]

    def aggregate(
        self, results: Sequence[Mapping[str, Any]], modalities: Sequence[str], context: Mapping[str, Any]
    ) -> dict[str, Any]:
        full, dropped = results  # in the order of `scenarios`
        gap = {
            key: (
                full["metrics"][key] - dropped["metrics"][key]
                if full["metrics"][key] is not None and dropped["metrics"][key] is not None
                else None
            )
            for key in METRICS
        }
        return {
            "full": {key: full["metrics"][key] for key in METRICS},
            "dropped": {"modality": dropped["dropped"], **{key: dropped["metrics"][key] for key in METRICS}},
            "gap": gap,  # full - dropped: what losing the modality costs (lower is more robust)
        }
