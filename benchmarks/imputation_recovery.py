"""How much of a withheld modality do the imputation methods recover? (the redundancy study's "from where")

The redundancy study (docs/results/redundancy-study.md) scores segmentation only; whether a generator actually
recovers the structure the `redundancy` knob makes recoverable (docs/synthetic.md, "What each level makes
recoverable") is a separate question. This measures it on trained checkpoints of any method with the imputation
block's `complete(inputs, available)` (methods/blocks/imputation.py: cgan, ae, gemmnet):

- `measure CHECKPOINT... --out DIR`: for every target modality and every non-empty set of the other modalities
  given, the method's imputed target on the run's test part (whole tiles, or the protocol's windows averaged
  where they overlap; missing inputs filled with 0 as the evaluation engine fills them), against the real one.
  Per test tile and band it keeps the squared error, the absolute error and the squared deviation of the real
  target from its test-part mean, in the loader's normalised units. One JSON per checkpoint (written, then
  renamed), with the checkpoint's sha256, method, seed, dataset settings and fingerprint, mmbench's version,
  git commit and hardware.
- `report DIR`: per method, redundancy level, target and given set, R^2 = 1 - sum(squared error) / sum(squared
  deviation) (1: perfect, 0: as good as the test mean; per band, then averaged over bands, as
  `mmbench.datasets.synthetic_probes.recoverability_r2` does), mean over seeds with a hierarchical percentile
  interval (seeds, then test tiles, resampled with `draw_resampling`); and its change from the lowest level to
  the highest (the levels resampled independently). Written between markers on the study page with `--doc`.

The DSM target here is the raw normalised DSM, terrain included (no other modality sees the terrain), where
docs/synthetic.md's regressor predicts the DSM's height above a smoothed minimum: DSM columns of the two tables
are not comparable, optical and SAR are.

Usage: `python benchmarks/imputation_recovery.py measure CKPT_OR_RECORD... --out
docs/results/records/imputation-recovery` (a run record stands for the checkpoint it names, sha256 checked),
then `python benchmarks/imputation_recovery.py report docs/results/records/imputation-recovery --doc
docs/results/redundancy-study.md`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from page_block import replace_block  # benchmarks/page_block.py: scripts run with benchmarks/ on sys.path

from mmbench.context import DatasetRef
from mmbench.data.loader import TileDataset
from mmbench.engine.checkpoint import load_checkpoint
from mmbench.errors import UserError
from mmbench.evaluation.tiling import window_starts
from mmbench.leaderboard import statistics as st
from mmbench.records.environment import collect_environment, git_state
from mmbench.records.fingerprint import file_sha256
from mmbench.registry import DATASETS, METHODS
from mmbench.runs.fragile import model_from_checkpoint

FORMAT = "mmbench-imputation-recovery/1"


def given_sets(modalities: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """(target, given) for every target and every non-empty set of the other modalities, largest sets first."""
    pairs = []
    for target in modalities:
        others = [name for name in modalities if name != target]
        for size in range(len(others), 0, -1):
            pairs.extend((target, given) for given in itertools.combinations(others, size))
    return pairs


def imputed(
    model: Any,
    inputs: Mapping[str, torch.Tensor],
    available: torch.Tensor,
    target: str,
    window: int | None,
    stride: int | None,
) -> torch.Tensor:
    """The model's imputation of `target` over whole tiles; overlapping windows averaged (the evaluation
    runner's tiling, mmbench/evaluation/runner.py)."""
    height, width = next(iter(inputs.values())).shape[-2:]
    size_h, size_w = min(window or height, height), min(window or width, width)
    step = stride or window or max(height, width)
    out = torch.zeros_like(inputs[target])
    counts = torch.zeros(1, 1, height, width)
    for top in window_starts(height, size_h, step):
        for left in window_starts(width, size_w, step):
            region = (slice(None), slice(None), slice(top, top + size_h), slice(left, left + size_w))
            out[region] += model.complete({name: x[region] for name, x in inputs.items()}, available)[target]
            counts[region] += 1
    return out / counts


class MeasurementError(UserError):
    """A user-facing failure: one line naming the thing and the fix; the script exits 2."""


@torch.inference_mode()
def measure_model(
    model: Any, data: TileDataset, window: int | None, stride: int | None, batch_size: int = 4
) -> tuple[list[str], int, list[dict[str, Any]]]:
    """Tile names, pixels per tile, and per (target, given) the per-tile, per-band error sums of `model`'s
    imputations on `data` (module docstring): squared and absolute error, and the real target's squared
    deviation from its mean over `data`."""
    modalities = list(data.modalities)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0)
    pairs = given_sets(modalities)
    sums: dict[tuple[str, tuple[str, ...]], dict[str, list]] = {pair: defaultdict(list) for pair in pairs}
    totals: dict[str, list[torch.Tensor]] = defaultdict(list)
    tiles: list[str] = []
    for batch in loader:
        inputs = batch["inputs"]
        tiles.extend(str(int(index)) for index in batch["index"])
        for name in modalities:
            totals[name].append(inputs[name].sum(dim=(2, 3)))
        rows = inputs[modalities[0]].shape[0]
        for target, given in pairs:
            available = torch.tensor([[name in given for name in modalities]] * rows)
            filled = {name: x if name in given else torch.zeros_like(x) for name, x in inputs.items()}
            error = imputed(model, filled, available, target, window, stride) - inputs[target]
            sums[(target, given)]["squared"].append((error**2).sum(dim=(2, 3)))
            sums[(target, given)]["absolute"].append(error.abs().sum(dim=(2, 3)))
    # Each target's squared deviation per tile from the part's mean: a second pass, once the mean is known.
    pixels = data[0]["label"].numel()
    means = {name: torch.cat(totals[name]).sum(0) / (len(tiles) * pixels) for name in modalities}
    deviation: dict[str, list[torch.Tensor]] = defaultdict(list)
    for batch in loader:
        for name in modalities:
            centred = batch["inputs"][name] - means[name].view(1, -1, 1, 1)
            deviation[name].append((centred**2).sum(dim=(2, 3)))
    entries = [
        {
            "target": target,
            "given": list(given),
            "squared_error": torch.cat(parts["squared"]).tolist(),  # [tile][band]
            "absolute_error": torch.cat(parts["absolute"]).tolist(),
            "squared_deviation": torch.cat(deviation[target]).tolist(),
        }
        for (target, given), parts in sums.items()
    ]
    return tiles, pixels, entries


def measure(checkpoint: Path) -> dict[str, Any]:
    """One checkpoint's measurement record (module docstring)."""
    started = time.perf_counter()
    payload = load_checkpoint(checkpoint)
    spec = METHODS.get(payload["method"]["name"])
    facts, config = payload["dataset"], payload["config"]
    model = model_from_checkpoint(spec, payload, facts["modalities"], len(facts["classes"]), checkpoint)
    if not callable(getattr(model, "complete", None)):
        raise MeasurementError(
            f"{checkpoint}: method {spec.name!r} does not impute (no `complete`); "
            "measure an ae, cgan or gemmnet checkpoint"
        )
    model.eval()
    store = DatasetRef(name=facts["name"], spec=DATASETS.get(facts["name"])).materialize(config["dataset"]).path
    if file_sha256(store) != facts["fingerprint"]:
        raise MeasurementError(
            f"{checkpoint}: the store {store} is not the one the run trained on (fingerprint differs)"
        )
    protocol = config["protocol"]
    data = TileDataset(
        store,
        split=protocol["split"],
        part="test",
        modalities=list(facts["modalities"]),
        label_variant=protocol["label_variant"],
    )
    tiles, pixels, entries = measure_model(model, data, protocol.get("window"), protocol.get("stride"))
    return {
        "format": FORMAT,
        "checkpoint": {"path": str(checkpoint), "sha256": file_sha256(checkpoint, use_cache=False)},
        "method": payload["method"],
        "label": config["run"].get("label"),
        "seed": config["run"]["seed"],
        "selected_step": payload["training"]["selected_step"] if payload.get("training") else None,
        "dataset": {**facts, "config": config["dataset"]},
        "part": "test",
        "window": protocol.get("window"),
        "stride": protocol.get("stride"),
        "tiles": tiles,
        "pixels_per_tile": pixels,
        "entries": entries,
        "seconds": round(time.perf_counter() - started, 1),
        "git": git_state(),
        "env": collect_environment("cpu"),
    }


def checkpoint_of(source: Path) -> tuple[Path, str | None]:
    """A checkpoint given directly, or the one a run record names (`method.checkpoint`: path and sha256, which
    must still match, so that a measurement is provably of that record's model) with the record's run id."""
    if source.suffix != ".json":
        return source, None
    record = json.loads(source.read_text())
    named = (record.get("method") or {}).get("checkpoint") or {}
    path = Path(named.get("path") or "")
    if not named.get("path") or not path.is_file():
        raise MeasurementError(
            f"{source}: its checkpoint {named.get('path')!r} is not on this machine; retrain it or leave the record out"
        )
    if file_sha256(path) != named.get("sha256"):
        raise MeasurementError(f"{source}: {path} is no longer the checkpoint the record scored (sha256 differs)")
    return path, record.get("run_id")


def write_atomically(path: Path, record: Mapping[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(temporary, path)


# ------------------------------------------------------------------------------------------------- report
def _level(record: Mapping[str, Any]) -> float:
    return float(record["dataset"]["config"]["redundancy"])


def load(folder: Path) -> dict[tuple[str, float], dict[int, dict]]:
    """(method, level) -> seed -> record; two records of one cell and seed are an error."""
    cells: dict[tuple[str, float], dict[int, dict]] = defaultdict(dict)
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("format") != FORMAT:
            continue
        cell = cells[(record["method"]["name"], _level(record))]
        if record["seed"] in cell:
            raise MeasurementError(
                f"{path}: a second record of {record['method']['name']} at {_level(record):g}, seed {record['seed']}"
            )
        cell[record["seed"]] = record
    return cells


def _arrays(records: Mapping[int, dict], target: str, given: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(R, U, C) squared error and squared deviation of one (target, given) over seeds, tiles, bands."""
    errors, deviations = [], []
    for seed in sorted(records):
        entry = next(e for e in records[seed]["entries"] if e["target"] == target and e["given"] == list(given))
        errors.append(entry["squared_error"])
        deviations.append(entry["squared_deviation"])
    tiles = {tuple(records[seed]["tiles"]) for seed in records}
    if len(tiles) != 1:
        raise MeasurementError(f"the seeds of one cell were measured on different test tiles ({target} from {given})")
    return np.asarray(errors, dtype=np.float64), np.asarray(deviations, dtype=np.float64)


def r2_replicates(errors: np.ndarray, deviations: np.ndarray, n_boot: int, rng_seed: int) -> tuple[float, np.ndarray]:
    """Mean-over-seeds R^2 (bands averaged) and its (B,) hierarchical bootstrap replicates: seeds drawn with
    replacement, the test tiles drawn once per replicate for every seed (they are the same tiles)."""
    point = float(np.mean(1.0 - errors.sum(1) / deviations.sum(1)))
    resampling = st.draw_resampling(errors.shape[0], errors.shape[1], n_boot, rng_seed)
    counts = resampling.unit_counts[:, 0, :]  # (B, U)
    per_seed = 1.0 - np.einsum("bu,ruc->brc", counts, errors) / np.einsum("bu,ruc->brc", counts, deviations)
    per_seed = per_seed.mean(axis=2)  # (B, R): bands averaged
    drawn = np.take_along_axis(per_seed, resampling.seed_draws, axis=1)
    return point, drawn.mean(axis=1)


def _r2(value: float, sign: str = "") -> str:
    """Two decimals, rounded before formatting so that a value just below 0 prints 0.00, not -0.00."""
    return f"{round(value, 2) + 0.0:{sign}.2f}"


def _interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    tail = (1.0 - level) / 2
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    return float(low), float(high)


def report(folder: Path, n_boot: int = 2000) -> str:
    cells = load(folder)
    if not cells:
        raise MeasurementError(f"{folder}: no {FORMAT} records; measure checkpoints first")
    methods = sorted({method for method, _ in cells})
    levels = sorted({level for _, level in cells})
    lines = [
        f"R² of the imputed modality on the test part (1: perfect, 0: the test mean; bands averaged), mean over "
        f"seeds [95 % hierarchical interval], from `{folder.as_posix()}` (benchmarks/imputation_recovery.py). "
        "⚠: fewer than 3 seeds.",
        "",
        "| method | target ← given | "
        + " | ".join(f"redundancy {level:g}" for level in levels)
        + f" | change {levels[0]:g} → {levels[-1]:g} |",
        "|---|---|" + "---|" * (len(levels) + 1),
    ]
    for method in methods:
        first = next(iter(next(cell for (m, _), cell in cells.items() if m == method).values()))
        for target, given in ((e["target"], tuple(e["given"])) for e in first["entries"]):
            row, replicates = [], {}
            for index, level in enumerate(levels):
                records = cells.get((method, level))
                if not records:
                    row.append("–")
                    continue
                point, reps = r2_replicates(*_arrays(records, target, given), n_boot, rng_seed=index)
                replicates[level] = (point, reps)
                low, high = _interval(reps)
                warn = "" if len(records) >= 3 else " ⚠"
                row.append(f"{_r2(point)} [{_r2(low)}, {_r2(high)}]{warn}")
            ends = [replicates.get(levels[0]), replicates.get(levels[-1])]
            if len(levels) > 1 and all(ends):
                (x, reps_x), (y, reps_y) = ends
                low, high = _interval(reps_y - reps_x)
                row.append(f"{_r2(y - x, '+')} [{_r2(low, '+')}, {_r2(high, '+')}]")
            else:
                row.append("–")
            lines.append(f"| {method} | {target} ← {' + '.join(given)} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("measure", help="measure checkpoints, one JSON each")
    run.add_argument("sources", type=Path, nargs="+", help="checkpoints, or run records naming their checkpoint")
    run.add_argument("--out", type=Path, required=True)
    summary = commands.add_parser("report", help="the R² table of a folder of measurements")
    summary.add_argument("folder", type=Path)
    summary.add_argument("--doc", type=Path, help="write the table between this page's markers")
    summary.add_argument("--marker", default="imputation-recovery", help="the page block's name (page_block.py)")
    args = parser.parse_args(argv)
    if args.command == "report":
        try:
            table = report(args.folder)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        if args.doc:
            replace_block(args.doc, args.marker, table)
        else:
            print(table, end="")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for source in args.sources:
        try:
            checkpoint, run_id = checkpoint_of(source)
            record = {**measure(checkpoint), "run_id": run_id}
        except UserError as error:  # a missing or changed checkpoint, a method that does not impute, ...
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        name = f"{record['method']['name']}-r{_level(record):g}-seed{record['seed']}.json"
        write_atomically(args.out / name, record)
        print(f"{name}: {record['seconds']} s", file=sys.stderr)
    return 2 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
