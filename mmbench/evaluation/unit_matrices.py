"""One confusion matrix per evaluation unit (tile or stitched area) and scenario, summed into the scenario's matrix.

Why: the leaderboard's intervals and paired tests resample evaluation units (mmbench/records/unit_confusion.py),
so every record keeps each unit's matrix. The scenario's `confusion_matrix` is computed here as the sum of the
unit matrices, never counted separately, so the two agree exactly by construction (also for per-sample protocols,
whose random availability is drawn per tile or per window, i.e. always inside one unit). Every pixel is still
counted by `ConfusionMatrix.update_from_logits` (same validation, same fused CUDA path).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mmbench.evaluation.metrics import ConfusionMatrix
from mmbench.records.unit_confusion import encode_unit_confusion


class UnitMatrices:
    """int64 (U, K, K) counts of the named units of one scenario, on the accumulation device."""

    def __init__(
        self, kind: str, names: Sequence[str], num_classes: int, ignore_index: int, device: str | torch.device
    ) -> None:
        self.kind, self.names = kind, list(names)
        self.position = {name: index for index, name in enumerate(self.names)}
        self._scratch = ConfusionMatrix(num_classes, ignore_index, device)
        self.counts = torch.zeros(len(self.names), num_classes, num_classes, dtype=torch.int64, device=device)

    @property
    def ignore_index(self) -> int:
        return self._scratch.ignore_index

    def update_from_logits(self, unit: str, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Count pixels of unit `unit` (`ConfusionMatrix.update_from_logits` on (B, K, H, W) logits)."""
        self._scratch.reset()
        self._scratch.update_from_logits(logits, target)
        self.counts[self.position[unit]] += self._scratch.matrix

    def total(self) -> ConfusionMatrix:
        """The scenario's matrix: the sum over units (on the CPU)."""
        return ConfusionMatrix.from_lists(self.counts.sum(0).cpu().tolist(), self.ignore_index)

    def record_entry(self) -> dict[str, Any]:
        """The scenario's `unit_confusion` record entry."""
        return encode_unit_confusion(self.kind, self.names, self.counts.cpu().numpy())


def tile_unit_names(tile_ids: Sequence[str], indices: Sequence[int]) -> list[str]:
    """Unit names of tiles: the store's tile ids, which two records of the same store share; a store whose ids
    repeat gets `<id>#<store index>` so that every unit keeps its own name."""
    ids = [str(tile_id) for tile_id in tile_ids]
    if len(set(ids)) == len(ids):
        return ids
    return [f"{tile_id}#{int(index)}" for tile_id, index in zip(ids, indices, strict=True)]
