"""The evaluation engine: a method, a tile store and a protocol in; per-scenario confusion matrices out.

Whole tiles are read once per batch; windows slide over them (window and stride from the protocol) and
overlapping logits are averaged before the argmax. Every scenario of the protocol is evaluated on the
same batch while it is in memory. For methods with the split interface (`encode` / `decode`), each
modality is encoded once per window (once per degradation level for pixel-drop) and only the decoder
runs per scenario; other methods run whole per scenario. Metrics come from one confusion matrix per
scenario accumulated over the whole test part (never per-image averages). Classes, ignore index and
modalities come from the run's `DatasetFacts` (mmbench/context.py), read once when the run started.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmbench.context import DatasetFacts
from mmbench.errors import ConfigError
from mmbench.evaluation.metrics import ConfusionMatrix, compute_metrics
from mmbench.evaluation.tiling import window_starts
from mmbench.method import Features, SegmentationMethod
from mmbench.protocol import Protocol, Scenario
from mmbench.runtime.distributed import DistContext


@dataclass
class EvaluationResult:
    scenarios: list[dict[str, Any]]
    aggregate: dict[str, Any]
    settings: dict[str, Any]
    seconds: float
    tiles: int


def protocol_context(facts: DatasetFacts, protocol: Protocol) -> dict[str, Any]:
    """What protocols may need to know about the data: classes, ignore index, modalities, and the training
    part's class shares for protocols that ask for them (`needs_train_frequencies`)."""
    context: dict[str, Any] = {
        "classes": list(facts.classes),
        "ignore_index": facts.ignore_index,
        "store_modalities": list(facts.modality_names),
        "modality_channels": dict(facts.modalities),
    }
    if getattr(protocol, "needs_train_frequencies", False):
        from mmbench.data.store_reader import TileStore

        with TileStore(facts.path) as store:
            counts = store.class_histogram(
                protocol.config["label_variant"], store.split_indices(protocol.config["split"], "train")
            )[:-1]
        total = max(int(counts.sum()), 1)
        context["train_class_frequencies"] = {
            name: int(c) / total for name, c in zip(facts.classes, counts, strict=True)
        }
    return context


def evaluate(
    method: SegmentationMethod,
    data: str | Path | DatasetFacts,
    protocol: Protocol,
    *,
    device: str = "cpu",
    missing_fill: float = 0.0,
    show_progress: bool = True,
    part: str | None = None,
    limit_tiles: int | None = None,
    dist: DistContext | None = None,
) -> EvaluationResult:
    """Evaluate `method` on the protocol's split part of the store under every scenario of `protocol`.

    `data` is the run's `DatasetFacts` (read when the run started), or a tile-store path whose facts are
    read here (a standalone evaluation)."""
    from mmbench.data.loader import TileDataset

    started = time.perf_counter()
    facts = data if isinstance(data, DatasetFacts) else DatasetFacts.from_store(data)
    context = protocol_context(facts, protocol)
    protocol.check_classes(context["classes"])
    modalities = protocol.select_modalities(context["store_modalities"])
    if tuple(modalities) != method.modality_names:
        raise ConfigError(
            f"the model uses modalities {', '.join(method.modality_names)} but the protocol evaluates "
            f"{', '.join(modalities)}; set protocol.modalities to the model's modalities"
        )
    context["modalities"] = list(modalities)
    scenarios = protocol.scenarios(modalities, context)
    config = protocol.config
    dataset = TileDataset(
        facts.path,
        split=config["split"],
        part=part or config["part"],
        modalities=modalities,
        label_variant=config["label_variant"],
    )
    if limit_tiles is not None:
        dataset.select(slice(0, limit_tiles))
    total_tiles = len(dataset)
    dist = dist or DistContext()
    if dist.enabled:
        dataset.select(slice(dist.rank, None, dist.world_size))
    matrices = [ConfusionMatrix(len(context["classes"]), context["ignore_index"], device) for _ in scenarios]
    patterns: list[dict[str, int]] = [{} for _ in scenarios]
    runner = _Runner(method, modalities, scenarios, config, device, missing_fill)
    loader = torch.utils.data.DataLoader(dataset, batch_size=config["batch_size"], shuffle=False, num_workers=0)

    from mmbench.progress import progress_bar

    method.eval()
    done = 0
    show_progress = show_progress and dist.is_main
    with torch.inference_mode(), progress_bar(f"evaluating {protocol.name}", total=len(dataset)) as advance:
        for batch in loader:
            tiles = [int(i) for i in batch["index"]]
            availability = [runner.availability(scenario, tiles) for scenario in scenarios]
            logits = runner.predict(batch["inputs"], tiles, availability)
            label = batch["label"].to(device)
            for position, scenario_logits in enumerate(logits):
                # Fused argmax + count on CUDA; max(1).indices on CPU (~20x faster than argmax(1) for NCHW).
                matrices[position].update_from_logits(scenario_logits, label)
                for row in availability[position].tolist():
                    key = "+".join(name for name, flag in zip(modalities, row, strict=True) if flag)
                    patterns[position][key] = patterns[position].get(key, 0) + 1
            done += len(tiles)
            if show_progress:
                advance(done)

    if dist.enabled:
        for matrix in matrices:
            total = dist.all_reduce_sum(matrix.matrix)
            matrix.reset()
            matrix.merge(ConfusionMatrix.from_lists(total.tolist(), matrix.ignore_index))
        gathered: list[list[dict[str, int]]] = [[] for _ in range(dist.world_size)]
        torch.distributed.all_gather_object(gathered, patterns)
        patterns = [_merge_counts([rank[position] for rank in gathered]) for position in range(len(scenarios))]
    entries = []
    classes_scored = config.get("classes_scored")
    for scenario, matrix, realised in zip(scenarios, matrices, patterns, strict=True):
        entry = {
            "name": scenario.name,
            "available": list(scenario.available),
            "metrics": compute_metrics(matrix.matrix, context["classes"], classes_scored),
            "confusion_matrix": matrix.as_lists(),
            **scenario.record_fields(),
        }
        if scenario.per_sample:
            entry["patterns"] = dict(sorted(realised.items()))
        entries.append(entry)
    aggregate = protocol.aggregate(entries, modalities, context)
    return EvaluationResult(entries, aggregate, protocol.settings(context), time.perf_counter() - started, total_tiles)


def _merge_counts(parts: Sequence[Mapping[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for part in parts:
        for key, count in part.items():
            merged[key] = merged.get(key, 0) + count
    return merged


class _Runner:
    """Runs one batch of whole tiles through every scenario, window by window."""

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

    def availability(self, scenario: Scenario, tiles: Sequence[int]) -> torch.Tensor:
        rows = [scenario.availability(self.modalities, tile, self.seed) for tile in tiles]
        return torch.tensor(rows, dtype=torch.bool, device=self.device)

    def predict(
        self, inputs: Mapping[str, torch.Tensor], tiles: Sequence[int], availability: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        inputs = {name: tensor.to(self.device) for name, tensor in inputs.items()}
        batch, _, height, width = next(iter(inputs.values())).shape
        degraded = self._degraded_inputs(inputs, tiles)
        window = self.window or max(height, width)
        stride = self.stride or window
        rows = window_starts(height, min(window, height), stride)
        cols = window_starts(width, min(window, width), stride)
        size_h, size_w = min(window, height), min(window, width)
        if len(rows) == len(cols) == 1 and (size_h, size_w) == (height, width):
            return self._window_logits(degraded, availability)  # one window: no canvas needed
        canvases = [
            torch.zeros(batch, self.method.num_classes, height, width, device=self.device) for _ in self.scenarios
        ]
        counts = torch.zeros(1, 1, height, width, device=self.device)
        for top in rows:
            for left in cols:
                region = (slice(None), slice(None), slice(top, top + size_h), slice(left, left + size_w))
                crops = {key: tensor[region] for key, tensor in degraded.items()}
                for position, logits in enumerate(self._window_logits(crops, availability)):
                    canvases[position][region] += logits
                counts[region] += 1
        return [canvas / counts for canvas in canvases]  # the average of overlapping windows' logits

    def _degraded_inputs(self, inputs: Mapping[str, torch.Tensor], tiles: Sequence[int]) -> dict:
        """Inputs keyed by (modality, degradation ratio or None); pixel masks seeded per tile and modality."""
        variants: dict[tuple[str, float | None], torch.Tensor] = {(name, None): x for name, x in inputs.items()}
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

    def _window_logits(
        self, crops: Mapping[tuple[str, float | None], torch.Tensor], availability: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
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
                        encoded[key] if bool(present.all()) else _fill_rows(encoded[key], present, self.fill)
                    )
                logits = self.method.decode(features, available)
            else:
                given = {}
                for index, name in enumerate(self.modalities):
                    x = crops[(name, scenario.corrupted.get(name))]
                    given[name] = _fill_rows(x, available[:, index], self.fill)
                logits = self.method(given, available)
            outputs.append(self._checked(logits, scenario, next(iter(crops.values()))))
        return outputs

    def _checked(self, logits: torch.Tensor, scenario: Scenario, crop: torch.Tensor) -> torch.Tensor:
        expected = (crop.shape[0], self.method.num_classes, *crop.shape[-2:])
        if tuple(logits.shape) != expected:
            raise RuntimeError(
                f"method returned logits of shape {tuple(logits.shape)} for scenario "
                f"{scenario.name!r}; expected {expected}"
            )
        if not bool(torch.isfinite(logits.sum())):  # one reduction: any NaN/inf makes the sum non-finite
            raise RuntimeError(
                f"method returned NaN/inf logits in scenario {scenario.name!r}: it reads a missing "
                "modality or is numerically unstable"
            )
        return logits.float()


def _fill_rows(features: Features, keep: torch.Tensor, value: float) -> Features:
    """Replace the rows (samples) where `keep` is False by `value`, through nested feature containers."""
    if isinstance(features, torch.Tensor):
        if bool(keep.all()):
            return features
        shape = (-1,) + (1,) * (features.dim() - 1)
        return torch.where(
            keep.view(shape), features, torch.full((), value, dtype=features.dtype, device=features.device)
        )
    if isinstance(features, (list, tuple)):
        return type(features)(_fill_rows(item, keep, value) for item in features)
    if isinstance(features, Mapping):
        return {key: _fill_rows(item, keep, value) for key, item in features.items()}
    return features
