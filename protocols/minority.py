"""minority: how rare classes fare under every scenario of a base protocol.

Minority classes are the scored classes (`classes_scored`) below `threshold` of the valid training pixels
(computed from the store's training part, so they are a property of the dataset, not of the method). A class
left out of the means, such as ISPRS clutter under the field's convention, is never a minority class: the
minority means would otherwise score a class the protocol excludes. Per scenario the record gets minority
mIoU / mF1 and the F1 of each minority class (e.g. car on ISPRS).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mmbench.errors import ConfigError
from mmbench.protocol import Protocol, Scenario, summary

from .scenario_sets import Full, Last1, Missing1, Subsets, scenario_summary

BASES = {"full": Full, "missing1": Missing1, "last1": Last1, "subsets": Subsets}


class Minority(Protocol):
    name = "minority"
    needs_train_frequencies = True

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        if self.config["base"] not in BASES:
            raise ConfigError(f"protocol.base={self.config['base']!r}: use one of {', '.join(BASES)}")
        if not 0 < self.config["threshold"] < 1:
            raise ConfigError(f"protocol.threshold={self.config['threshold']} must lie strictly between 0 and 1")
        self.base = BASES[self.config["base"]]({**self.config, "probabilities": [0.2, 0.1, 0.05]})

    def minority_classes(self, context: Mapping[str, Any]) -> list[str]:
        """Scored classes whose share of the valid training pixels is below the threshold, in class order."""
        frequencies = context["train_class_frequencies"]
        scored = self.config.get("classes_scored") or list(frequencies)
        return [name for name, share in frequencies.items() if share < self.config["threshold"] and name in scored]

    def scenarios(self, modalities: Sequence[str], context: Mapping[str, Any]) -> list[Scenario]:
        if not self.minority_classes(context):
            scored = " scored" if self.config.get("classes_scored") else ""
            raise ConfigError(
                f"protocol 'minority': no{scored} class is below {self.config['threshold']:.1%} of the training "
                "pixels; raise protocol.threshold"
            )
        return self.base.scenarios(modalities, context)

    def aggregate(self, results, modalities, context) -> dict[str, Any]:
        minority = self.minority_classes(context)
        per_scenario = {}
        for entry in results:
            per_class = entry["metrics"]["per_class"]
            per_scenario[entry["name"]] = {
                "minority_miou": summary([per_class[name]["iou"] for name in minority])["mean"],
                "minority_mf1": summary([per_class[name]["f1"] for name in minority])["mean"],
                "f1": {name: per_class[name]["f1"] for name in minority},
            }
        miou = summary([values["minority_miou"] for values in per_scenario.values()])
        mf1 = summary([values["minority_mf1"] for values in per_scenario.values()])
        return {
            "minority_classes": minority,
            "threshold": self.config["threshold"],
            "train_class_frequencies": dict(context["train_class_frequencies"]),
            "minority_miou": {"mean": miou["mean"], "worst": miou["min"]},
            "minority_mf1": {"mean": mf1["mean"], "worst": mf1["min"]},
            "per_scenario": per_scenario,
            "base": {"protocol": self.config["base"], **scenario_summary(results)},
        }

    def settings(self, context: Mapping[str, Any]) -> dict[str, Any]:
        return {
            **super().settings(context),
            "base": self.config["base"],
            "threshold": self.config["threshold"],
            "minority_classes": self.minority_classes(context),
        }
