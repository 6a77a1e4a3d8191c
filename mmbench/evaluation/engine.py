"""The evaluation engine: a method, a tile store and a protocol in; per-scenario confusion matrices out.

The unit scored (mmbench/evaluation/units.py) follows the store: a store that records its source areas is
scored by **area** (stitching.py: windows slide over each area stitched from its tiles, every area pixel
counted once); any other store by **tile** (whole tiles read once per batch, windows slide over each tile).
Either way overlapping windows' logits are averaged before the argmax, and every scenario of the protocol is
evaluated on the same inputs while they are in memory (scenario runner: runner.py). Metrics come from one
confusion matrix per scenario accumulated over the whole part (never per-image averages); that matrix is the sum
of one matrix per evaluation unit, which the record keeps too (`unit_confusion`, unit_matrices.py) for the
leaderboard's unit-level resampling. Classes, ignore index and modalities come from the run's `DatasetFacts`
(mmbench/context.py), read once when the run started.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mmbench.context import DatasetFacts
from mmbench.errors import ConfigError
from mmbench.evaluation.metrics import compute_metrics
from mmbench.evaluation.runner import ScenarioRunner
from mmbench.evaluation.stitching import AreaScorer, count_windows
from mmbench.evaluation.unit_matrices import UnitMatrices, tile_unit_names
from mmbench.evaluation.units import TILE, EvaluationUnits, plan_units
from mmbench.method import SegmentationMethod
from mmbench.protocol import Protocol
from mmbench.runtime.distributed import DistContext

if TYPE_CHECKING:
    from mmbench.data.loader import TileDataset


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
    dataset: TileDataset | None = None,
) -> EvaluationResult:
    """Evaluate `method` on the protocol's split part of the store under every scenario of `protocol`.

    `data` is the run's `DatasetFacts` (read when the run started), or a tile-store path whose facts are
    read here (a standalone evaluation). `dataset`: a whole-tile `TileDataset` of exactly this split, part,
    modalities and label variant, shared by several evaluations (`mmbench eval` of several protocols,
    mmbench/runs/checkpoint_eval.py) so that its open store handle is reused; it is never narrowed in place."""
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
    part = part or config["part"]
    units = plan_units(facts.path, config, part, limit_tiles)
    shared = dataset is not None
    if dataset is None:
        dataset = TileDataset(
            facts.path, split=config["split"], part=part, modalities=modalities, label_variant=config["label_variant"]
        )
    else:
        wanted = (config["split"], part, tuple(modalities), config["label_variant"], None)
        if (dataset.split, dataset.part, dataset.modalities, dataset.label_variant, dataset.crop_size) != wanted:
            raise ValueError(f"the shared dataset does not hold {wanted}")  # a caller's bug
    dist = dist or DistContext()
    if shared and (limit_tiles is not None or dist.enabled):
        dataset = copy.copy(dataset)  # `select` below narrows the copy, never the shared dataset
    if units.kind == TILE:
        if limit_tiles is not None:
            dataset.select(slice(0, limit_tiles))
        names = tile_unit_names(dataset.tile_ids, dataset.indices)
    else:
        names = [unit.area.name for unit in units.areas]
    matrices = [
        UnitMatrices(units.kind, names, len(context["classes"]), context["ignore_index"], device) for _ in scenarios
    ]
    patterns: list[dict[str, int]] = [{} for _ in scenarios]
    runner = ScenarioRunner(method, modalities, scenarios, config, device, missing_fill)
    show_progress = show_progress and dist.is_main
    method.eval()
    with torch.inference_mode():
        if units.kind == TILE:
            total_tiles = _score_tiles(
                runner, dataset, names, matrices, patterns, config, protocol.name, dist, show_progress
            )
        else:
            total_tiles = units.tiles
            local = units.shard(dist.rank, dist.world_size) if dist.enabled else units
            _score_areas(runner, dataset, local, matrices, patterns, config, protocol.name, show_progress)

    if dist.enabled:
        for matrix in matrices:
            matrix.counts = dist.all_reduce_sum(matrix.counts)  # units are disjoint across ranks
        gathered: list[list[dict[str, int]]] = [[] for _ in range(dist.world_size)]
        torch.distributed.all_gather_object(gathered, patterns)
        patterns = [_merge_counts([rank[position] for rank in gathered]) for position in range(len(scenarios))]
    entries = []
    classes_scored = config.get("classes_scored")
    for scenario, units_matrix, realised in zip(scenarios, matrices, patterns, strict=True):
        matrix = units_matrix.total()
        entry = {
            "name": scenario.name,
            "available": list(scenario.available),
            "metrics": compute_metrics(matrix.matrix, context["classes"], classes_scored),
            "confusion_matrix": matrix.as_lists(),
            **scenario.record_fields(),
            "unit_confusion": units_matrix.record_entry(),
        }
        if scenario.per_sample:
            entry["patterns"] = dict(sorted(realised.items()))
        entries.append(entry)
    if show_progress:
        _report_scenarios(protocol.name, part, entries)
    aggregate = protocol.aggregate(entries, modalities, context)
    settings = {**protocol.settings(context), **units.settings()}
    return EvaluationResult(entries, aggregate, settings, time.perf_counter() - started, total_tiles)


def _score_tiles(
    runner: ScenarioRunner,
    dataset: TileDataset,
    names: Sequence[str],
    matrices: Sequence[UnitMatrices],
    patterns: Sequence[dict[str, int]],
    config: Mapping[str, Any],
    name: str,
    dist: DistContext,
    show_progress: bool,
) -> int:
    """Tile units: every tile of the (already limited) part scored on its own (stores without area metadata);
    `names[i]` names the tile at position i. Returns the number of tiles of the part (before sharding)."""
    from mmbench.progress import progress_bar

    total_tiles = len(dataset)
    unit_of = {int(index): unit for index, unit in zip(dataset.indices, names, strict=True)}
    if dist.enabled:
        dataset.select(slice(dist.rank, None, dist.world_size))
    loader = torch.utils.data.DataLoader(dataset, batch_size=config["batch_size"], shuffle=False, num_workers=0)
    modalities = runner.modalities
    done = 0
    with progress_bar(f"evaluating {name}", total=len(dataset), enabled=show_progress) as advance:
        for batch in loader:
            tiles = [int(i) for i in batch["index"]]
            availability = [runner.availability(scenario, tiles) for scenario in runner.scenarios]
            logits = runner.predict(batch["inputs"], tiles, availability)
            label = batch["label"].to(runner.device)
            for position, scenario_logits in enumerate(logits):
                # Fused argmax + count on CUDA; max(1).indices on CPU (~20x faster than argmax(1) for NCHW).
                for row, tile in enumerate(tiles):
                    matrices[position].update_from_logits(
                        unit_of[tile], scenario_logits[row : row + 1], label[row : row + 1]
                    )
                for row in availability[position].tolist():
                    key = "+".join(name for name, flag in zip(modalities, row, strict=True) if flag)
                    patterns[position][key] = patterns[position].get(key, 0) + 1
            done += len(tiles)
            if show_progress:
                advance(done)
    return total_tiles


def _score_areas(
    runner: ScenarioRunner,
    dataset: TileDataset,
    units: EvaluationUnits,
    matrices: Sequence[UnitMatrices],
    patterns: Sequence[dict[str, int]],
    config: Mapping[str, Any],
    name: str,
    show_progress: bool,
) -> None:
    """Area units: each area stitched from its tiles and scored once per pixel (stitching.py)."""
    from mmbench.progress import progress_bar

    scorer = AreaScorer(runner, dataset, units, runner.scenarios, matrices, patterns, config["batch_size"])
    with progress_bar(f"evaluating {name} by area", total=count_windows(units), enabled=show_progress) as advance:
        scorer.run(advance if show_progress else None)


def _report_scenarios(name: str, part: str, entries: Sequence[Mapping[str, Any]]) -> None:
    """One progress line per evaluated scenario (mmbench/progress.py: on stderr, nothing under --quiet)."""
    from mmbench.progress import note, percent

    for entry in entries:
        note(f"eval {name} ({part}): {entry['name']} mIoU {percent(entry['metrics']['miou'])}")


def _merge_counts(parts: Sequence[Mapping[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for part in parts:
        for key, count in part.items():
            merged[key] = merged.get(key, 0) + count
    return merged
