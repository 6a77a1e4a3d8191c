"""Does the small training batch of DIS2's compensation encoders bias its evaluation?

DIS2's compensation encoder C_{s->t} (methods/dis2/model.py, `Dis2.loss_terms`) runs in training only on the
rows whose pattern has s and lacks t: with 3 modalities and the per-sample sampler, about 2.7 of a batch's 8
rows, sometimes 1. Its BatchNorm therefore normalises with the statistics of a few rows in training and with
running statistics averaged over those small batches in evaluation. Every input row is modality s's real data
whatever the pattern, so this is the small-batch question, not the pattern defect of GEMMNet's version 3
(docs/methods/gemmnet.md, "Version 4").

This recalibrates only the compensation encoders' BatchNorm running statistics of a trained checkpoint on the
run's own training part (its crop size and augmentation; the training tiles in turn, each crop drawn from the
key (seed, step, slot) as `TileDataset.sample` draws a training crop) and writes two
checkpoints to evaluate with `mmbench eval CKPT --protocol last1`:

- `full`: every recalibration batch has all 8 rows (the population statistics evaluation should use);
- `train-sized`: the same crops, each row kept with probability 1/3 per encoder (about the rows training gives
  C_{s->t}; an empty draw keeps one row): the control, which separates the effect of the batch size from that
  of recalibrating at all (the recorded statistics are an exponential average weighted to the last steps).

Usage: `python benchmarks/dis2_compensation_bn.py CHECKPOINT OUT_DIR [--batches 64] [--seed 0]`
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mmbench.context import DatasetRef
from mmbench.engine.batches import training_data
from mmbench.engine.checkpoint import load_checkpoint
from mmbench.registry import DATASETS, METHODS
from mmbench.runs.fragile import model_from_checkpoint


def _compensation_norms(model: torch.nn.Module) -> list[torch.nn.BatchNorm2d]:
    return [module for module in model.compensation.modules() if isinstance(module, torch.nn.BatchNorm2d)]


@torch.no_grad()
def recalibrate(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], keep: float | None, seed: int) -> None:
    """Reset the compensation encoders' running statistics and re-estimate them as a cumulative average over
    `batches` (each encoder sees its source modality's rows; `keep`: the probability a row is kept)."""
    norms = _compensation_norms(model)
    momenta = [norm.momentum for norm in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average: every batch counts alike
        norm.train()
    generator = torch.Generator().manual_seed(seed)
    names = model.modality_names
    for inputs in batches:
        for t in names:
            for s in names:
                if s == t:
                    continue
                x = inputs[s]
                if keep is not None:
                    rows = torch.rand(x.shape[0], generator=generator) < keep
                    if not bool(rows.any()):
                        rows[torch.randint(x.shape[0], (1,), generator=generator)] = True
                    x = x[rows]
                model.compensation[t][s](x)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--batches", type=int, default=64, help="recalibration batches, each of the run's batch size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    payload = load_checkpoint(args.checkpoint)
    spec = METHODS.get(payload["method"]["name"])
    if spec.name != "dis2":
        raise SystemExit(f"{args.checkpoint}: a {spec.name} checkpoint; this diagnostic is for dis2")
    facts = payload["dataset"]
    config = payload["config"]
    settings = config["method"]["train"]
    store = DatasetRef(name=facts["name"], spec=DATASETS.get(facts["name"])).materialize(config["dataset"]).path
    data = training_data(
        store,
        split=config["protocol"]["split"],
        label_variant=config["protocol"]["label_variant"],  # as the trainer reads them
        modalities=list(facts["modalities"]),
        settings=settings,
        seed=args.seed,
    )
    size = settings["batch_size"]
    batches = []
    for step in range(args.batches):
        samples = [data.sample((step * size + slot) % len(data), (args.seed, step, slot)) for slot in range(size)]
        batches.append({name: torch.stack([s["inputs"][name] for s in samples]) for name in facts["modalities"]})
    args.out.mkdir(parents=True, exist_ok=True)
    for label, keep in (("full", None), ("train-sized", 1 / 3)):
        model = model_from_checkpoint(spec, payload, facts["modalities"], len(facts["classes"]), args.checkpoint)
        recalibrate(model, batches, keep, args.seed)
        target = args.out / f"{label}.ckpt"
        torch.save({**payload, "model": model.state_dict()}, target)
        print(f"{label}: {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
