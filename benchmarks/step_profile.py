"""Regenerate the step-profile tables of docs/results/step-profile.md (issue 20, item 1).

    python benchmarks/step_profile.py [--threads 1] [--steps 5] [--warmup 2] [METHOD ...]

Profiles every trainable registered method (or those named) with `mmbench bench step`'s own code
(mmbench/bench/step.py) at the CPU-default config, batch 8, 96 px, on the cached synthetic store, and
rewrites only the part of the doc between the `step-profile` markers: the machine, torch version, threads
and load average (before and after) are written with the tables; the readings around them are kept.
The JSON of the run goes to bench/step-profile.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import time
from pathlib import Path

import torch

from mmbench.atomic import write_json_atomic, write_text_atomic
from mmbench.bench.step import profile_method, result_document
from mmbench.bench.step_report import markdown_table
from mmbench.bench.step_setup import NotTrainable, check_trainable, resolve_store
from mmbench.registry import METHODS

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "results" / "step-profile.md"
BEGIN, END = "<!-- step-profile:begin -->", "<!-- step-profile:end -->"


def trainable_methods() -> list[str]:
    names = []
    for name in METHODS.names():
        try:
            check_trainable(name)
        except NotTrainable:
            continue
        names.append(name)
    return names


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("methods", nargs="*")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "step-profile.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = args.methods or trainable_methods()
    store = resolve_store(None)
    before, started = load(), time.perf_counter()
    profiles = []
    for name in methods:
        profiles.append(profile_method(name, store=store, steps=args.steps, warmup=args.warmup, device="cpu"))
        print(f"{name}: {profiles[-1].seconds_per_step:.3f} s/step (load {load()})", flush=True)
    after = load()
    write_json_atomic(
        args.json, result_document(profiles, device="cpu", command="python benchmarks/step_profile.py", store=store[1])
    )
    header = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `python benchmarks/step_profile.py"
        f"{' --threads ' + str(args.threads) if args.threads else ''}`: {cpu_model()}, {os.cpu_count()} logical "
        f"CPUs, torch {torch.__version__}, {torch.get_num_threads()} intra-op / {torch.get_num_interop_threads()} "
        f"inter-op threads, {args.steps} timed steps after {args.warmup} warm-up steps per method, batch 8, 96 px, "
        f"protocol last1, store `{store[1].name}`. Load average (1, 5, 15 min) {before} before, {after} after "
        f"({time.perf_counter() - started:.0f} s in all).\n"
    )
    block = f"{BEGIN}\n{header}\n{markdown_table(profiles)}{END}"
    text = args.doc.read_text() if args.doc.exists() else f"# Training step profile\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.DOTALL)
    write_text_atomic(args.doc, text)
    print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
