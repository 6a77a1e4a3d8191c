"""Running a method on windows under every scenario of a protocol: availability, degraded inputs, logits.

Shared by tile-by-tile and whole-area evaluation (mmbench/evaluation/engine.py, stitching.py). For methods with
the split interface (`encode` / `decode`) each modality is encoded once per window (once per degradation level
for pixel-drop) and only the decoder runs per scenario; other methods run whole per scenario. A missing
modality's input (or feature rows) is replaced by the fill value, so a method that reads it anyway shows up as
NaN logits when the fill is NaN (tests/test_evaluation.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mmbench.errors import PluginContractError
from mmbench.evaluation.tiling import WindowRegion, average_over_windows
from mmbench.method import Features, SegmentationMethod
from mmbench.protocol import Scenario

# Inputs keyed by (modality, degradation ratio or None for the intact input).
Variants = dict[tuple[str, float | None], torch.Tensor]


class ScenarioRunner:
    """Runs batches of inputs through every scenario of a protocol; `predict` slides windows over whole tiles."""

    def __init__(
        self,
        method: SegmentationMethod,
        modalities: Sequence[str],
        scenarios: Sequence[Scenario],
        config: Mapping[str, Any],
        device: str,
        fill: float,
    ) -> None:
        self.method, self.modalities, self.scenarios = method, tuple(modalities), list(scenarios)
        self.window, self.stride = config.get("window"), config.get("stride")
        self.seed = int(config.get("seed", 0))
        self.device, self.fill = device, fill
        self.split = method.has_split_interface

    def availability(self, scenario: Scenario, samples: Sequence[int]) -> torch.Tensor:
        """(B, M) bool: which modalities each sample gets; `samples` key the per-sample draws (tile indices,
        or window keys in whole-area evaluation)."""
        rows = [scenario.availability(self.modalities, sample, self.seed) for sample in samples]
        return torch.tensor(rows, dtype=torch.bool, device=self.device)

    def predict(
        self, inputs: Mapping[str, torch.Tensor], tiles: Sequence[int], availability: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Per-scenario logits of a batch of whole tiles (tile units): windows slide over each tile and
        overlapping windows' logits are averaged; pixel-drop masks are seeded per tile."""
        inputs = {name: tensor.to(self.device) for name, tensor in inputs.items()}
        height, width = next(iter(inputs.values())).shape[-2:]
        degraded = self._degraded_inputs(inputs, tiles)

        def logits_of(region: WindowRegion) -> list[torch.Tensor]:
            crops = {key: tensor[..., region[0], region[1]] for key, tensor in degraded.items()}
            return self.window_logits(crops, availability)

        return average_over_windows(height, width, self.window, self.stride, logits_of)

    def _degraded_inputs(self, inputs: Mapping[str, torch.Tensor], tiles: Sequence[int]) -> Variants:
        """Inputs keyed by (modality, degradation ratio or None); pixel masks seeded per tile and modality."""
        variants: Variants = {(name, None): x for name, x in inputs.items()}
        for scenario in self.scenarios:
            for name, ratio in scenario.corrupted.items():
                if (name, ratio) in variants:
                    continue
                x = inputs[name]
                masks = []
                for tile in tiles:
                    rng = np.random.default_rng([self.seed, tile, self.modalities.index(name), round(ratio * 1e6)])
                    masks.append(torch.from_numpy(rng.random(x.shape[-2:]) < ratio))
                mask = torch.stack(masks).unsqueeze(1).to(self.device)
                variants[(name, ratio)] = torch.where(mask, torch.zeros((), dtype=x.dtype, device=x.device), x)
        return variants

    def window_logits(
        self, crops: Mapping[tuple[str, float | None], torch.Tensor], availability: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        """float32 (B, K, h, w) logits per scenario for one batch of windows (`crops`: every input variant)."""
        encoded: dict[tuple[str, float | None], Features] = {}
        outputs = []
        for scenario, available in zip(self.scenarios, availability, strict=True):
            if self.split:
                features = {}
                for index, name in enumerate(self.modalities):
                    present = available[:, index]
                    if not bool(present.any()):
                        continue
                    key = (name, scenario.corrupted.get(name))
                    if key not in encoded:
                        encoded[key] = self.method.encode(name, crops[key])
                    features[name] = (
                        encoded[key] if bool(present.all()) else fill_rows(encoded[key], present, self.fill)
                    )
                logits = self.method.decode(features, available)
            else:
                given = {}
                for index, name in enumerate(self.modalities):
                    x = crops[(name, scenario.corrupted.get(name))]
                    given[name] = fill_rows(x, available[:, index], self.fill)
                logits = self.method(given, available)
            outputs.append(self._checked(logits, scenario, next(iter(crops.values()))))
        return outputs

    def _checked(self, logits: torch.Tensor, scenario: Scenario, crop: torch.Tensor) -> torch.Tensor:
        expected = (crop.shape[0], self.method.num_classes, *crop.shape[-2:])
        if tuple(logits.shape) != expected:
            raise PluginContractError(
                f"method returned logits of shape {tuple(logits.shape)} for scenario "
                f"{scenario.name!r}; expected {expected}"
            )
        if not bool(torch.isfinite(logits.sum())):  # one reduction: any NaN/inf makes the sum non-finite
            raise PluginContractError(
                f"method returned NaN/inf logits in scenario {scenario.name!r}: it reads a missing "
                "modality or is numerically unstable"
            )
        return logits.float()


def fill_rows(features: Features, keep: torch.Tensor, value: float) -> Features:
    """Replace the rows (samples) where `keep` is False by `value`, through nested feature containers."""
    if isinstance(features, torch.Tensor):
        if bool(keep.all()):
            return features
        shape = (-1,) + (1,) * (features.dim() - 1)
        return torch.where(
            keep.view(shape), features, torch.full((), value, dtype=features.dtype, device=features.device)
        )
    if isinstance(features, (list, tuple)):
        return type(features)(fill_rows(item, keep, value) for item in features)
    if isinstance(features, Mapping):
        return {key: fill_rows(item, keep, value) for key, item in features.items()}
    return features
