"""How much of a withheld modality do the methods recover? (the redundancy study's "from where")

The redundancy study (docs/results/redundancy-study.md) scores segmentation only; whether a method actually
recovers the structure the `redundancy` knob makes recoverable (docs/synthetic.md, "What each level makes
recoverable") is a separate question. This measures it on trained checkpoints, in the space each method
recovers in:

- imputation methods (the imputation block's `complete(inputs, available)`, methods/blocks/imputation.py: ae,
  cgan, gemmnet): the imputed input, one scored group per band, on whole tiles or the protocol's windows
  averaged where they overlap, missing inputs filled with 0 as the evaluation engine fills them;
- STARS (`Stars.translated_shared`, methods/stars/model.py): the shared features the decoder gets for the
  missing modality (the mean of the translations from the given ones; with `translator: copy`, of their own
  shared features), one scored group per pyramid level with channels pooled, against the missing modality's
  real shared features; also their mean cosine similarity, the translation loss's own measure. With learned
  translators the same model's untranslated features (the given modalities' own shared features averaged, what
  `translator: copy` would hand over) are scored too, so the translators' contribution is read within a model.

`measure CHECKPOINT_OR_RECORD... --out DIR`: for every target modality and every non-empty set of the others
given, per test tile and group, the squared and absolute error and the real target's squared deviation from its
mean over the test part (per channel); for shared features also the summed cosine similarity. A run record
stands for the checkpoint it names (its sha256 checked). One JSON per checkpoint (written, then renamed) with
the checkpoint's sha256, method, seed, dataset settings and fingerprint, this script's sha256, mmbench's
version, git state and hardware.

`report DIR [--doc PAGE]`: per space, measure, config, redundancy level, target and given set, R² = 1 −
Σ squared error / Σ squared deviation per group, groups averaged (as `recoverability_r2` of
mmbench/datasets/synthetic_probes.py averages bands), mean over seeds with a hierarchical percentile interval
(seeds, then test tiles, `draw_resampling`), and the change from the lowest level to the highest (the levels
resampled independently); written between the page's `imputation-recovery` markers (page_block.py).

The DSM target here is the stored DSM, terrain included (no other modality sees the terrain), where
docs/synthetic.md's regressor predicts the DSM's height above a smoothed minimum: DSM rows of the two are not
comparable, optical and SAR rows are.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from page_block import replace_block  # benchmarks/page_block.py: scripts run with benchmarks/ on sys.path

from mmbench.context import DatasetRef
from mmbench.data.loader import TileDataset
from mmbench.engine.checkpoint import load_checkpoint
from mmbench.errors import UserError
from mmbench.evaluation.tiling import WindowRegion, average_over_windows
from mmbench.leaderboard import statistics as st
from mmbench.leaderboard.table_statistics import MIN_SEEDS
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
    """The model's imputation of `target` over whole tiles, on the evaluation runner's windows (overlaps averaged;
    mmbench/evaluation/tiling.py)."""
    height, width = next(iter(inputs.values())).shape[-2:]

    def imputation_of(region: WindowRegion) -> list[torch.Tensor]:
        crops = {name: x[..., region[0], region[1]] for name, x in inputs.items()}
        return [model.complete(crops, available)[target]]

    return average_over_windows(height, width, window, stride, imputation_of)[0]


class MeasurementError(UserError):
    """A user-facing failure: one line naming the thing and the fix; the script exits 2."""


class NotMeasurable(MeasurementError):
    """A method that neither imputes nor translates: skipped with a line when others are measured (a glob over
    a sweep's records takes in every method), an error when nothing else is."""


Views = list[torch.Tensor]  # one (B, C_k, H_k, W_k) tensor per scored group k: a band, or a pyramid level


class InputImputation:
    """Methods with the imputation block's `complete` (ae, cgan, gemmnet): the imputed input, one group per band."""

    space = "input"

    def __init__(self, model: Any, window: int | None, stride: int | None) -> None:
        self.model, self.window, self.stride = model, window, stride

    def prepare(self, inputs: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
        return inputs

    def real(self, prepared: Mapping[str, torch.Tensor], target: str) -> Views:
        return list(prepared[target].split(1, dim=1))

    def estimates(self, prepared: Mapping[str, torch.Tensor], target: str, given: Sequence[str]) -> dict[str, Views]:
        """The imputed target (one variant, key "")."""
        names = self.model.modality_names
        rows = prepared[target].shape[0]
        available = torch.tensor([[name in given for name in names]] * rows)
        filled = {name: x if name in given else torch.zeros_like(x) for name, x in prepared.items()}
        return {"": list(imputed(self.model, filled, available, target, self.window, self.stride).split(1, dim=1))}


class SharedTranslation:
    """STARS (`translated_shared`): the shared features the decoder gets for a missing modality, one group per
    pyramid level (channels pooled), against that modality's real shared features on whole tiles."""

    space = "shared features"

    def __init__(self, model: Any) -> None:
        self.model = model

    def prepare(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        rows = next(iter(inputs.values())).shape[0]
        return self.model.encode_available(inputs, torch.ones(rows, len(self.model.modality_names), dtype=torch.bool))

    def real(self, prepared: Mapping[str, Any], target: str) -> Views:
        return list(prepared[target]["shared"])

    def estimates(self, prepared: Mapping[str, Any], target: str, given: Sequence[str]) -> dict[str, Views]:
        """What the decoder gets (key ""); with learned translators also the given modalities' own shared
        features averaged (key "_untranslated": what `translator: copy` would hand over in this same model), so
        that the translators' contribution is read within one model."""
        names = self.model.modality_names
        rows = prepared[target]["shared"][0].shape[0]
        available = torch.tensor([[name in given for name in names]] * rows)
        sources = {name: prepared[name] for name in given}
        levels = range(len(prepared[target]["shared"]))
        variants = {"": [self.model.translated_shared(sources, available, target, level) for level in levels]}
        if self.model.config["translator"] != "copy":
            variants["_untranslated"] = [
                torch.stack([prepared[name]["shared"][level] for name in given]).mean(0) for level in levels
            ]
        return variants


def scorer_for(model: Any, window: int | None, stride: int | None) -> InputImputation | SharedTranslation:
    """The space a model recovers a missing modality in: STARS' shared features, or an imputation method's
    input; any other method is `NotMeasurable`."""
    if callable(getattr(model, "translated_shared", None)):
        if window is not None:
            raise MeasurementError("shared-feature recovery is measured on whole tiles; the run evaluates windows")
        return SharedTranslation(model)
    if callable(getattr(model, "complete", None)):
        return InputImputation(model, window, stride)
    raise NotMeasurable(
        f"method {type(model).__name__} neither imputes (`complete`) nor translates (`translated_shared`); "
        "measure an ae, cgan, gemmnet or stars checkpoint"
    )


@torch.inference_mode()
def measure_model(
    scorer: InputImputation | SharedTranslation, data: TileDataset, batch_size: int = 4
) -> tuple[list[str], list[dict[str, Any]]]:
    """Tile names, and per (target, given) the per-tile, per-group sums of the scorer's estimates' squared and
    absolute errors and of the real target's squared deviation from its mean over `data` (per channel)."""
    modalities = list(data.modalities)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0)
    pairs = given_sets(modalities)
    errors: dict[tuple[str, tuple[str, ...]], dict[str, list]] = {pair: defaultdict(list) for pair in pairs}
    moments: dict[str, dict[str, list]] = {name: defaultdict(list) for name in modalities}
    tiles: list[str] = []
    for batch in loader:
        tiles.extend(str(int(index)) for index in batch["index"])
        prepared = scorer.prepare(batch["inputs"])
        for name in modalities:
            real = [view.double() for view in scorer.real(prepared, name)]
            moments[name]["sum"].append([view.sum(dim=(2, 3)) for view in real])  # (B, C_k) per group
            moments[name]["squares"].append([(view**2).sum(dim=(2, 3)) for view in real])
            moments[name]["pixels"] = [view.shape[2] * view.shape[3] for view in real]
        for target, given in pairs:
            real = [view.double() for view in scorer.real(prepared, target)]
            sums = errors[(target, given)]
            for variant, views in scorer.estimates(prepared, target, given).items():
                estimate = [view.double() for view in views]
                difference = [e - r for e, r in zip(estimate, real, strict=True)]
                sums["squared_error" + variant].append(torch.stack([(d**2).sum(dim=(1, 2, 3)) for d in difference], 1))
                sums["absolute_error" + variant].append(
                    torch.stack([d.abs().sum(dim=(1, 2, 3)) for d in difference], 1)
                )
                if scorer.space == "shared features":  # the translation loss's measure (methods/stars/model.py)
                    cosines = [
                        F.cosine_similarity(e, r, dim=1).sum(dim=(1, 2)) for e, r in zip(estimate, real, strict=True)
                    ]
                    sums["cosine_sum" + variant].append(torch.stack(cosines, 1))
    entries = []
    for (target, given), parts in errors.items():
        entry = {
            "target": target,
            "given": list(given),
            "squared_deviation": squared_deviation(moments[target], len(tiles)).tolist(),  # [tile][group]
            "positions": [moments[target]["pixels"]] * len(tiles),  # [tile][group]: positions per channel
        }
        # squared_error, absolute_error (and cosine_sum): [tile][group], per estimate variant (`estimates`)
        entry.update({key: torch.cat(values).tolist() for key, values in parts.items()})
        entries.append(entry)
    return tiles, entries


def squared_deviation(moments: Mapping[str, Any], tiles: int) -> torch.Tensor:
    """(tiles, groups): each tile's sum over a group's channels and pixels of (x − mean)², the mean per channel
    over every tile: Σx² − 2·mean·Σx + n·mean² from the per-tile sums."""
    columns = []
    for group, pixels in enumerate(moments["pixels"]):
        sums = torch.cat([batch[group] for batch in moments["sum"]])  # (tiles, C)
        squares = torch.cat([batch[group] for batch in moments["squares"]])
        mean = sums.sum(0) / (tiles * pixels)
        columns.append((squares - 2 * mean * sums + pixels * mean**2).sum(1))
    return torch.stack(columns, 1)


def measure(checkpoint: Path) -> dict[str, Any]:
    """One checkpoint's measurement record (module docstring)."""
    started = time.perf_counter()
    payload = load_checkpoint(checkpoint)
    spec = METHODS.get(payload["method"]["name"])
    facts, config = payload["dataset"], payload["config"]
    model = model_from_checkpoint(spec, payload, facts["modalities"], len(facts["classes"]), checkpoint)
    model.eval()
    protocol = config["protocol"]
    scorer = scorer_for(model, protocol.get("window"), protocol.get("stride"))
    store = DatasetRef(name=facts["name"], spec=DATASETS.get(facts["name"])).materialize(config["dataset"]).path
    if file_sha256(store) != facts["fingerprint"]:
        raise MeasurementError(
            f"{checkpoint}: the store {store} is not the one the run trained on (fingerprint differs)"
        )
    data = TileDataset(
        store,
        split=protocol["split"],
        part="test",
        modalities=list(facts["modalities"]),
        label_variant=protocol["label_variant"],
    )
    tiles, entries = measure_model(scorer, data)
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
        "space": scorer.space,
        "tiles": tiles,
        "entries": entries,
        "seconds": round(time.perf_counter() - started, 1),
        "measured_by": {
            "script": "benchmarks/imputation_recovery.py",
            "sha256": file_sha256(__file__, use_cache=False),
        },
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
    """The record as JSON, its metadata indented and each entry's per-tile arrays on one line (a record is read
    by people for its metadata and by `report` for its arrays); written to a temporary file, then renamed."""
    head = json.dumps({key: value for key, value in record.items() if key != "entries"}, indent=1)
    entries = ",\n".join("  " + json.dumps(entry, separators=(",", ":")) for entry in record["entries"])
    temporary = path.with_suffix(".tmp")
    temporary.write_text(head[: -len("\n}")] + ',\n "entries": [\n' + entries + "\n ]\n}\n")
    os.replace(temporary, path)


# ------------------------------------------------------------------------------------------------- report
def _level(record: Mapping[str, Any]) -> float:
    return float(record["dataset"]["config"]["redundancy"])


def config_name(record: Mapping[str, Any]) -> str:
    """The study's name of a record's method config: its run label without the `-r<level>` suffix the
    redundancy suite adds (`stars-translator-copy-r0` -> `stars-translator-copy`), else the method's name."""
    label = record.get("label") or record["method"]["name"]
    return re.sub(r"-r[0-9.]+$", "", label)


SPACES = {
    "input": "the imputed input (bands averaged)",
    "shared features": "the shared features the decoder gets for the missing modality (channels pooled, pyramid "
    "levels averaged)",
}


def load(folder: Path) -> dict[tuple[str, str, float], dict[int, dict]]:
    """(space, config, level) -> seed -> record; two records of one cell and seed are an error."""
    cells: dict[tuple[str, str, float], dict[int, dict]] = defaultdict(dict)
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("format") != FORMAT:
            continue
        name = config_name(record)
        cell = cells[(record["space"], name, _level(record))]
        if record["seed"] in cell:
            raise MeasurementError(f"{path}: a second record of {name} at {_level(record):g}, seed {record['seed']}")
        cell[record["seed"]] = record
    return cells


def _arrays(
    records: Mapping[int, dict], target: str, given: Sequence[str], keys: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """(seeds, tiles, groups) arrays of one (target, given) entry's two `keys` over a cell's seeds."""
    columns: tuple[list, list] = ([], [])
    for seed in sorted(records):
        entry = next(e for e in records[seed]["entries"] if e["target"] == target and e["given"] == list(given))
        for column, key in zip(columns, keys, strict=True):
            column.append(entry[key])
    if len({tuple(records[seed]["tiles"]) for seed in records}) != 1:
        raise MeasurementError(f"the seeds of one cell were measured on different test tiles ({target} from {given})")
    return np.asarray(columns[0], dtype=np.float64), np.asarray(columns[1], dtype=np.float64)


def ratio_replicates(
    numerators: np.ndarray, denominators: np.ndarray, n_boot: int, rng_seed: int
) -> tuple[float, np.ndarray]:
    """Mean over seeds of Σ_tiles numerator / Σ_tiles denominator (per group, then groups averaged), and its
    (B,) hierarchical bootstrap replicates: seeds drawn with replacement, the test tiles drawn once per replicate
    for every seed (every seed was measured on the same tiles). Arrays: (seeds, tiles, groups)."""
    point = float(np.mean(numerators.sum(1) / denominators.sum(1)))
    resampling = st.draw_resampling(numerators.shape[0], numerators.shape[1], n_boot, rng_seed)
    counts = resampling.unit_counts[:, 0, :]  # (B, U)
    per_seed = np.einsum("bu,ruc->brc", counts, numerators) / np.einsum("bu,ruc->brc", counts, denominators)
    drawn = np.take_along_axis(per_seed.mean(axis=2), resampling.seed_draws, axis=1)  # groups averaged
    return point, drawn.mean(axis=1)


def r2_replicates(errors: np.ndarray, deviations: np.ndarray, n_boot: int, rng_seed: int) -> tuple[float, np.ndarray]:
    """R² = 1 − Σ squared error / Σ squared deviation, per group, groups averaged (`ratio_replicates`)."""
    point, replicates = ratio_replicates(errors, deviations, n_boot, rng_seed)
    return 1.0 - point, 1.0 - replicates


def cosine_replicates(sums: np.ndarray, positions: np.ndarray, n_boot: int, rng_seed: int) -> tuple[float, np.ndarray]:
    """Mean cosine similarity over positions, per group, groups averaged (`ratio_replicates`)."""
    return ratio_replicates(sums, positions, n_boot, rng_seed)


MEASURES = {  # heading ({space}: SPACES) -> (entry keys of numerator and denominator, replicates)
    "R² of {space}": (("squared_error", "squared_deviation"), r2_replicates),
    "Mean cosine similarity of {space}": (("cosine_sum", "positions"), cosine_replicates),
    "R² of the given modalities' own shared features, averaged, against the missing one's, in the same model (what "
    "`translator: copy` would hand over; levels averaged)": (
        ("squared_error_untranslated", "squared_deviation"),
        r2_replicates,
    ),
    "Mean cosine similarity of the given modalities' own shared features, averaged, against the missing one's, in "
    "the same model": (("cosine_sum_untranslated", "positions"), cosine_replicates),
}


def _r2(value: float, sign: str = "") -> str:
    """Two decimals, rounded before formatting so that a value just below 0 prints 0.00, not -0.00."""
    return f"{round(value, 2) + 0.0:{sign}.2f}"


def report(folder: Path, n_boot: int = 2000) -> str:
    """One table per space and measure (R² of imputed inputs; R² and mean cosine similarity of translated shared
    features): per config, level, target and given set, and the change from the lowest level to the highest."""
    cells = load(folder)
    if not cells:
        raise MeasurementError(f"{folder}: no {FORMAT} records; measure checkpoints first")
    levels = sorted({level for _, _, level in cells})
    lines = [
        f"Generated by `python benchmarks/imputation_recovery.py report {folder.as_posix()}`: test part, mean over "
        "seeds [95 % hierarchical interval over seeds and tiles]. R²: 1 is perfect, 0 no better than the part's "
        "mean. ⚠: fewer than 3 seeds.",
    ]
    for space in sorted({space for space, _, _ in cells}):
        names = sorted({n for s_, n, _ in cells if s_ == space})
        first = {
            n: next(iter(next(c for (s_, m, _), c in cells.items() if (s_, m) == (space, n)).values())) for n in names
        }
        for heading, (keys, replicates) in MEASURES.items():
            measured = [name for name in names if keys[0] in first[name]["entries"][0]]
            if not measured:
                continue
            lines += [
                "",
                heading.format(space=SPACES.get(space, space)) + ":",
                "",
                "| config | target ← given | "
                + " | ".join(f"redundancy {level:g}" for level in levels)
                + f" | change {levels[0]:g} → {levels[-1]:g} |",
                "|---|---|" + "---|" * (len(levels) + 1),
            ]
            for name in measured:
                for target, given in ((e["target"], tuple(e["given"])) for e in first[name]["entries"]):
                    per_level = [cells.get((space, name, level)) for level in levels]
                    row = _row(per_level, target, given, keys, replicates, n_boot)
                    lines.append(f"| {name} | {target} ← {' + '.join(given)} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _row(
    per_level: Sequence[Mapping[int, dict] | None],
    target: str,
    given: Sequence[str],
    keys: tuple[str, str],
    replicates_of: Any,
    n_boot: int,
) -> list[str]:
    """The cells of one (config, target, given) row: each level's value and interval, then the change from the
    first level to the last (levels resampled independently: different trainings on different stores)."""
    row, replicates = [], []
    for index, records in enumerate(per_level):
        if not records:
            row.append("–")
            replicates.append(None)
            continue
        point, reps = replicates_of(*_arrays(records, target, given, keys), n_boot, rng_seed=index)
        replicates.append((point, reps))
        low, high = st.percentile_bounds(reps, 0.95)
        row.append(f"{_r2(point)} [{_r2(low)}, {_r2(high)}]" + ("" if len(records) >= MIN_SEEDS else " ⚠"))
    if len(per_level) > 1 and replicates[0] and replicates[-1]:
        (x, reps_x), (y, reps_y) = replicates[0], replicates[-1]
        low, high = st.percentile_bounds(reps_y - reps_x, 0.95)
        warn = "" if min(len(per_level[0]), len(per_level[-1])) >= MIN_SEEDS else " ⚠"
        row.append(f"{_r2(y - x, '+')} [{_r2(low, '+')}, {_r2(high, '+')}]{warn}")
    else:
        row.append("–")
    return row


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
    failed = measured = 0
    for source in args.sources:
        try:
            checkpoint, run_id = checkpoint_of(source)
            record = {**measure(checkpoint), "run_id": run_id}
        except NotMeasurable as error:
            print(f"skipped: {source}: {error}", file=sys.stderr)
            continue
        except UserError as error:  # a missing or changed checkpoint, a store that is not the run's, ...
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        name = f"{config_name(record)}-r{_level(record):g}-seed{record['seed']}.json"
        write_atomically(args.out / name, record)
        measured += 1
        print(f"{name}: {record['seconds']} s", file=sys.stderr)
    if not measured and not failed:
        print("error: none of the checkpoints imputes or translates; nothing was measured", file=sys.stderr)
    return 2 if failed or not measured else 0


if __name__ == "__main__":
    raise SystemExit(main())
