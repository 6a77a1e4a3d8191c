"""docs/synthetic.md's redundancy tables: what each modality carries, per `redundancy` level of the synthetic
benchmark version 2 (datasets/synthetic_couplings.py).

For each level it generates the default store (datasets/synthetic.yaml: 72 tiles, 32 of them test) and prints
1. the R^2 on the test part of a small convolutional regressor predicting each modality from the other two
   (`mmbench.datasets.synthetic_probes.recoverability_r2`, mean over `--seeds` fits), and
2. the per-class F1 of the per-pixel naive-Bayes probe (`class_f1`) for each single modality.

Usage: `OMP_NUM_THREADS=1 python benchmarks/synthetic_recoverability.py [--levels 0 0.5 1] [--seeds 2]`.
Markdown goes to stdout; the time per level to stderr.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mmbench.data.store_reader import TileStore
from mmbench.datasets.synthetic import CLASSES, SyntheticConfig, write_synthetic
from mmbench.datasets.synthetic_probes import class_f1, recoverability_r2

MODALITIES = ("optical", "dsm", "sar")


def level_tables(redundancy: float, seeds: int, steps: int, folder: Path) -> tuple[list[float], dict]:
    config = SyntheticConfig(tiles=72, test_share=0.45, version=2, redundancy=redundancy)
    started = time.perf_counter()
    store_path = write_synthetic(folder / f"r{redundancy:g}.h5", config)
    generated = time.perf_counter() - started
    with TileStore(store_path) as store:
        r2 = []
        for target in MODALITIES:
            sources = [m for m in MODALITIES if m != target]
            fits = [recoverability_r2(store, target, sources, steps=steps, seed=seed) for seed in range(seeds)]
            r2.append(float(np.mean(fits)))
        f1 = {m: class_f1(store, (m,)) for m in MODALITIES}
        f1["all three"] = class_f1(store, MODALITIES)
    print(
        f"redundancy {redundancy:g}: generated in {generated:.1f} s, probed in "
        f"{time.perf_counter() - started - generated:.0f} s",
        file=sys.stderr,
    )
    return r2, f1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--seeds", type=int, default=2, help="regressor fits per target (different init and crops)")
    parser.add_argument("--steps", type=int, default=400, help="regressor training steps")
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for level in args.levels:
            results[level] = level_tables(level, args.seeds, args.steps, Path(folder))

    print("R^2 of each modality predicted from the other two (test part):\n")
    print("| redundancy | optical | dsm | sar |")
    print("|---|---|---|---|")
    for level, (r2, _) in results.items():
        print(f"| {level:g} | " + " | ".join(f"{value:.2f}" for value in r2) + " |")
    print("\nPer-class F1 (%) of the per-pixel probe, one modality (test part):\n")
    print("| redundancy | modality | " + " | ".join(CLASSES) + " | mean |")
    print("|---|---|" + "---|" * (len(CLASSES) + 1))
    for level, (_, f1) in results.items():
        for modality, scores in f1.items():
            cells = " | ".join(f"{100 * v:.1f}" for v in scores)
            print(f"| {level:g} | {modality} | {cells} | {100 * scores.mean():.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
