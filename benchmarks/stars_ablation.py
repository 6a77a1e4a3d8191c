"""STARS' one-factor ablations and the shared-encoder norm study on the synthetic benchmark, over seeds.

    python benchmarks/stars_ablation.py run --out runs/stars-ablation --seeds 0 1 2 --workers 2
    python benchmarks/stars_ablation.py report --out runs/stars-ablation --doc docs/results/stars-synthetic.md

`run` trains every variant once per seed (`mmbench run METHOD --protocol last1 --dataset synthetic`),
then evaluates the selected checkpoint under `minority` (`mmbench eval`), and writes one
`job.json` per (variant, seed) only when both records exist: it is resumable (finished jobs are
skipped, a half-finished one is redone from scratch in a fresh folder) and runs `--workers`
jobs at once, each single-threaded (OMP_NUM_THREADS=1), so two jobs use the two cores of the
reference machine. Jobs go seed by seed, so a stopped study still has every variant at the same
seeds. `report` builds the page from the job files and the records only: mean ± sample standard
deviation over seeds, n, and every seed's value.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# name -> (method, --set overrides); the first STARS row is the reference the others change one factor of.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "STARS v2 (defaults)": ("stars", []),
    "PSA version-1 pairing (psa.branch=v1)": ("stars", ["method.psa.branch=v1"]),
    "no PSA": ("stars", ["method.psa.enabled=false"]),
    "uniform sampling, same count": ("stars", ["method.psa.sampling=uniform"]),
    "translator copy (loss kept)": ("stars", ["method.translator=copy"]),
    "ShaSpec-style (copy, no translation loss, L1 0.1)": (
        "stars",
        ["method.translator=copy", "method.loss.translation=0", "method.loss.shared_alignment=0.1"],
    ),
    "no stop-gradient": ("stars", ["method.stop_gradient=false"]),
    "STARS shared_norm=per_call": ("stars", ["method.shared_norm=per_call"]),
    "STARS shared_norm=per_modality": ("stars", ["method.shared_norm=per_modality"]),
    "ShaSpec shared_norm=joint": ("shaspec", []),
    "ShaSpec shared_norm=per_call": ("shaspec", ["method.shared_norm=per_call"]),
    "ShaSpec shared_norm=per_modality": ("shaspec", ["method.shared_norm=per_modality"]),
}


def slug(name: str) -> str:
    keep = "".join(c if c.isalnum() else "-" for c in name.lower())
    return "-".join(part for part in keep.split("-") if part)


def newest_record(folder: Path) -> Path:
    return max(folder.rglob("result.json"), key=lambda p: p.stat().st_mtime)


def mmbench(args: list[str], log: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with log.open("a") as handle:
        subprocess.run([sys.executable, "-m", "mmbench", *args], check=True, stdout=handle, stderr=handle, env=env)


def run_job(name: str, seed: int, out: Path, common: list[str]) -> str:
    method, overrides = VARIANTS[name]
    folder = out / slug(name) / f"seed{seed}"
    done = folder / "job.json"
    if done.exists():
        return f"skip {name} seed {seed}"
    if folder.exists():
        shutil.rmtree(folder)  # an interrupted job: redo it whole, so its records come from one run
    folder.mkdir(parents=True)
    log = folder / "log.txt"
    sets = [item for override in [*common, *overrides] for item in ("--set", override)]
    started = time.time()
    base = ["--dataset", "synthetic", "--seed", str(seed)]
    mmbench(["run", method, "--protocol", "last1", *base, "--out", str(folder / "last1"), *sets], log)
    trained = newest_record(folder / "last1")
    checkpoint = json.loads(trained.read_text())["method"]["checkpoint"]["path"]
    mmbench(["eval", checkpoint, "--protocol", "minority", *base, "--out", str(folder / "minority")], log)
    minority = newest_record(folder / "minority")
    job = {
        "variant": name,
        "method": method,
        "seed": seed,
        "overrides": [*common, *overrides],
        "last1": str(trained.relative_to(out)),
        "minority": str(minority.relative_to(out)),
        "wall_s": round(time.time() - started, 1),
    }
    partial = done.with_suffix(".tmp")
    partial.write_text(json.dumps(job, indent=2) + "\n")
    partial.replace(done)
    return f"done {name} seed {seed} in {job['wall_s']:.0f} s"


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    names = [name for name in VARIANTS if not args.only or any(part in name for part in args.only)]
    jobs = [(name, seed) for seed in args.seeds for name in names]
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(run_job, name, seed, out, args.set) for name, seed in jobs]
        for future in futures:
            try:
                print(future.result(), flush=True)
            except subprocess.CalledProcessError as error:
                print(f"FAILED: {error}", flush=True)


# -- report ------------------------------------------------------------------------------------------------
def pct(values: list[float]) -> str:
    """mean ± sample std in percent (n = 1: the value alone)."""
    values = [100 * v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def load_jobs(out: Path) -> dict[str, list[dict]]:
    jobs: dict[str, list[dict]] = {}
    for path in sorted(out.rglob("job.json")):
        job = json.loads(path.read_text())
        job["last1_record"] = json.loads((out / job["last1"]).read_text())
        job["minority_record"] = json.loads((out / job["minority"]).read_text())
        jobs.setdefault(job["variant"], []).append(job)
    return {name: sorted(jobs[name], key=lambda j: j["seed"]) for name in VARIANTS if name in jobs}


def summary(jobs: list[dict]) -> dict[str, list[float]]:
    rows: dict[str, list[float]] = {}
    for job in jobs:
        last1, minority = job["last1_record"], job["minority_record"]["aggregate"]
        values = {f"mIoU {s['name']}": s["metrics"]["miou"] for s in last1["scenarios"]}
        values["mean"] = last1["aggregate"]["mean"]["miou"]
        values["worst"] = last1["aggregate"]["worst"]["miou"]
        values["minority mean"] = minority["minority_miou"]["mean"]
        values["minority worst"] = minority["minority_miou"]["worst"]
        values["selected step"] = last1["method"]["checkpoint"]["selected_step"] / 100
        for key, value in values.items():
            rows.setdefault(key, []).append(value)
    return rows


def report(args: argparse.Namespace) -> None:
    out, doc = Path(args.out), Path(args.doc)
    jobs = load_jobs(out)
    if not jobs:
        raise SystemExit(f"no finished jobs under {out}")
    first = next(iter(jobs.values()))[0]
    train = first["last1_record"]["config"]["method"]["train"]
    seeds = sorted({job["seed"] for variant_jobs in jobs.values() for job in variant_jobs})
    overrides = " ".join(f"--set {item}" for item in first["overrides"] if item.startswith("method.train."))
    columns = list(summary([first]))
    lines = [
        "# STARS: one-factor ablations and the shared-encoder norm on the synthetic benchmark",
        "",
        f"Produced by `python benchmarks/stars_ablation.py run --out {args.out} --seeds "
        f"{' '.join(map(str, seeds))} --workers 2 {overrides}` and `... report` from the run records (copied",
        f"to `docs/results/records/{doc.stem}/`). Every cell is **mean ± sample standard deviation over seeds**",
        f"(n in the last column), in percent. Training budget: **{train['iterations']} iterations** (validation",
        f"every {train['val_every']}) of the default CPU recipe, everything else at each method's defaults, on the",
        "synthetic benchmark's default store; `last1` = one modality left; `minority` = car and clutter under",
        "the last1 scenarios. These describe mmbench's reconstruction on synthetic data, not the paper.",
        "",
        "| variant | " + " | ".join(columns[:-1]) + " | selected step | n |",
        "|---" * (len(columns) + 2) + "|",
    ]
    for name, variant_jobs in jobs.items():
        rows = summary(variant_jobs)
        steps = "/".join(str(int(v * 100)) for v in rows["selected step"])
        cells = [pct(rows[c]) for c in columns[:-1]]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {steps} | {len(variant_jobs)} |")
    lines += ["", "Per seed (mean last1 mIoU / minority mean mIoU, %):", ""]
    for name, variant_jobs in jobs.items():
        rows = summary(variant_jobs)
        per_seed = ", ".join(
            f"seed {j['seed']}: {100 * m:.1f} / {100 * n:.1f}"
            for j, m, n in zip(variant_jobs, rows["mean"], rows["minority mean"], strict=True)
        )
        lines.append(f"- {name}: {per_seed}")
    copy_records(jobs, out, doc)
    doc.parent.mkdir(parents=True, exist_ok=True)
    generated = "\n".join(lines) + "\n"
    marker = "<!-- generated table ends -->"
    tail = doc.read_text().split(marker, 1)[1] if doc.exists() and marker in doc.read_text() else "\n"
    doc.write_text(generated + "\n" + marker + tail)
    print(generated)


def copy_records(jobs: dict[str, list[dict]], out: Path, doc: Path) -> None:
    folder = doc.parent / "records" / doc.stem
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, variant_jobs in jobs.items():
        for job in variant_jobs:
            for protocol in ("last1", "minority"):
                target = folder / f"{slug(name)}-seed{job['seed']}-{protocol}.json"
                shutil.copyfile(out / job[protocol], target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    runner = commands.add_parser("run")
    runner.add_argument("--out", default="runs/stars-ablation")
    runner.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    runner.add_argument("--workers", type=int, default=2)
    runner.add_argument("--only", nargs="*", help="variants whose name contains one of these")
    runner.add_argument(
        "--set", action="append", default=[], help="override for every run, e.g. method.train.iterations=500"
    )
    reporter = commands.add_parser("report")
    reporter.add_argument("--out", default="runs/stars-ablation")
    reporter.add_argument("--doc", default="docs/results/stars-synthetic.md")
    args = parser.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
