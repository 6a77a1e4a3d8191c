"""PSA's share of a default CPU STARS training step: the time of PSA alone over the time of the step.

    python benchmarks/psa_share.py [--threads 1] [--repeats 20]

PSA here is everything `psa.enabled` adds: the projection head, the class-balanced sampling, the
gathers and the InfoNCE terms, forward and backward. It is timed *alone*, on the step's own embeddings
held as leaves (so its backward stops where the network's would continue), and the full step is
timed with PSA on; the share is their ratio. Both use the minimum over interleaved repeats, which is
the least sensitive statistic to other processes on a shared 2-core machine (the median is printed
beside it). Also used by benchmarks/stars_ablation.py and benchmarks/test_stars_step.py.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from mmbench.config import load_defaults
from mmbench.method import TrainStep, build_method
from mmbench.registry import METHODS

MODALITIES = {"optical": 3, "dsm": 1, "sar": 1}


def default_batch(config: dict, seed: int = 0) -> dict:
    """A batch shaped like the default CPU recipe's (batch size, crop) with the synthetic modalities."""
    size, crop = config["train"]["batch_size"], config["train"]["crop_size"]
    generator = torch.Generator().manual_seed(seed)
    return {
        "inputs": {n: torch.randn(size, c, crop, crop, generator=generator) for n, c in MODALITIES.items()},
        "label": torch.randint(0, 6, (size, crop, crop), generator=generator),
        "available": torch.ones(size, len(MODALITIES), dtype=torch.bool),
        "slots": torch.arange(size),
    }


def stars_model(psa: dict | None = None, **overrides: object) -> torch.nn.Module:
    spec = METHODS.get("stars")
    config = load_defaults(spec.defaults, "stars")
    config = {**config, **overrides, "psa": {**config["psa"], **(psa or {})}}
    torch.manual_seed(0)
    return build_method(spec, MODALITIES, 6, config)


def step_runner(model: torch.nn.Module, batch: dict) -> Callable[[int], None]:
    def run(step: int) -> None:
        model.zero_grad(set_to_none=True)
        model.training_loss(batch, TrainStep(step, 0, 0, 255, 6))["loss"].backward()

    return run


def psa_runner(model: torch.nn.Module, batch: dict) -> Callable[[int], None]:
    """PSA alone on the embeddings of one real step (leaves), forward and backward."""
    from mmbench.sampling import sample_availability

    info = TrainStep(0, 0, 0, 255, 6)
    with torch.no_grad():
        everything = batch["available"]
        features = model.encode_available(batch["inputs"], everything)
        _, full, _ = model._decode(features, everything)
        missing = sample_availability(
            model.config["missing_sampler"], len(MODALITIES), batch["slots"].tolist(), (0, 0, 0), include_full=False
        )
        _, translated, _ = model._decode(features, missing)
    full = {k: v.clone().requires_grad_(True) for k, v in full.items()}
    translated = {k: v.clone().requires_grad_(True) for k, v in translated.items()}

    def run(step: int) -> None:
        model.zero_grad(set_to_none=True)
        step_info = TrainStep(step, 0, info.seed, 255, 6)
        model._psa_loss(full, translated, missing, batch["label"], step_info, None).backward()

    return run


def interleaved(runners: dict[str, Callable[[int], None]], repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in runners}
    for step in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run(step)
            times[name].append(time.perf_counter() - start)
    return {name: values[2:] for name, values in times.items()}  # the first two warm up


VARIANTS = {
    "both, cpu InfoNCE": {"branch": "both", "backend": "cpu"},
    "both, reference InfoNCE": {"branch": "both", "backend": "torch"},
    "v1 (reference InfoNCE, whole-map projection)": {"branch": "v1", "backend": "torch"},
}


def measure(threads: int = 1, repeats: int = 20, variants: dict[str, dict] | None = None) -> dict[str, dict]:
    """Step and PSA times of each variant (PSA settings), interleaved; shares from the minima and medians."""
    variants = VARIANTS if variants is None else variants
    torch.set_num_threads(threads)
    batch = default_batch(load_defaults(METHODS.get("stars").defaults, "stars"))
    runners = {}
    for name, psa in variants.items():
        model = stars_model(psa)
        runners[f"step {name}"] = step_runner(model, batch)
        runners[f"psa {name}"] = psa_runner(model, batch)
    times = interleaved(runners, repeats)
    result = {}
    for name in variants:
        step, psa = times[f"step {name}"], times[f"psa {name}"]
        result[name] = {
            "step_min_s": min(step),
            "step_median_s": statistics.median(step),
            "psa_min_s": min(psa),
            "psa_median_s": statistics.median(psa),
            "share_min": min(psa) / min(step),
            "share_median": statistics.median(psa) / statistics.median(step),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    for name, row in measure(args.threads, args.repeats).items():
        print(
            f"{name}: step {row['step_min_s'] * 1e3:.0f} ms (median {row['step_median_s'] * 1e3:.0f}), "
            f"PSA {row['psa_min_s'] * 1e3:.1f} ms (median {row['psa_median_s'] * 1e3:.1f}), "
            f"share {100 * row['share_min']:.1f} % (medians {100 * row['share_median']:.1f} %)"
        )


if __name__ == "__main__":
    main()
