"""Regenerate the step-profile tables of docs/results/step-profile.md (issue 20, item 1).

    python benchmarks/step_profile.py [--threads 1] [--steps 5] [--warmup 2] [METHOD ...]

Profiles every trainable registered method (or those named) with `mmbench bench step`, one process per
method (so each peak memory is the method's own), at the CPU-default config, batch 8, 96 px, on the cached
synthetic store, and
rewrites only the part of the doc between the `step-profile` markers: the machine, torch version, threads
and load average (before and after) are written with the tables; the readings around them are kept.
The JSON of the run goes to bench/step-profile.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mmbench.atomic import write_json_atomic, write_text_atomic
from mmbench.bench.step import StepProfile
from mmbench.bench.step_report import markdown_table
from mmbench.bench.step_setup import resolve_store, trainable_methods

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "results" / "step-profile.md"
BEGIN, END = "<!-- step-profile:begin -->", "<!-- step-profile:end -->"


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
    parser.add_argument("--from-json", action="store_true", help="rewrite the doc from --json; profile nothing")
    args = parser.parse_args()
    if args.from_json:
        document = json.loads(args.json.read_text())
        profiles = [to_profile(result) for result in document["results"]]
        loads = [", ".join(f"{value:.2f}" for value in p.load_average) for p in profiles]
        write_doc(args.doc, profiles, document["created"], loads[0], loads[-1], document["store"], None)
        return
    methods = args.methods or trainable_methods()
    store = resolve_store(None)  # generated here once, before the per-method processes read it
    started = time.perf_counter()
    profiles, documents = [], []
    with tempfile.TemporaryDirectory(prefix="mmbench-step-profile-") as folder:
        for name in methods:
            documents.append(profile_in_own_process(name, args, Path(folder)))
            profiles.append(to_profile(documents[-1]["results"][0]))
            print(f"{name}: {profiles[-1].seconds_per_step:.3f} s/step (load {load()})", flush=True)
    before, after = (", ".join(f"{value:.2f}" for value in p.load_average) for p in (profiles[0], profiles[-1]))
    combined = {**documents[0], "command": "python benchmarks/step_profile.py"}
    combined["results"] = [document["results"][0] for document in documents]
    combined["median_step_wall"] = {k: v for d in documents for k, v in d["median_step_wall"].items()}
    write_json_atomic(args.json, combined)
    created = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())
    write_doc(args.doc, profiles, created, before, after, store[1], time.perf_counter() - started)


def profile_in_own_process(method: str, args: argparse.Namespace, folder: Path) -> dict:
    """`mmbench bench step METHOD` in a fresh process: the peak resident set is this method's alone (memory a
    previous method's step took is not handed back to the system by the allocator)."""
    out = folder / f"{method}.json"
    command = [sys.executable, "-m", "mmbench", "--quiet", "bench", "step", method, "--device", "cpu"]
    command += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--out", str(out)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def to_profile(result: dict) -> StepProfile:
    fields = {field.name for field in dataclasses.fields(StepProfile)}
    return StepProfile(**{key: value for key, value in result.items() if key in fields})


def write_doc(
    doc: Path,
    profiles: list[StepProfile],
    created: str,
    before: str,
    after: str,
    store: str | Path,
    seconds: float | None,
) -> None:
    """Replace the generated block of `doc` (machine, versions, threads, load average, tables)."""
    first = profiles[0]
    header = (
        f"Measured {created} with `python benchmarks/step_profile.py"
        f"{' --threads ' + str(first.threads) if first.threads == 1 else ''}`: {cpu_model()}, {os.cpu_count()} "
        f"logical CPUs, torch {torch.__version__}, {first.threads} intra-op / {first.interop_threads} inter-op "
        f"threads, {first.steps} timed steps after {first.warmup} warm-up steps per method, batch "
        f"{first.batch_size}, {first.size} px, protocol last1, store `{Path(store).name}`. Load average (1, 5, 15 "
        f"min) {before} at the first method, {after} at the last"
        f"{f' ({seconds:.0f} s in all)' if seconds else ''}.\n"
    )
    block = f"{BEGIN}\n{header}\n{markdown_table(profiles)}{END}"
    text = doc.read_text() if doc.exists() else f"# Training step profile\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.DOTALL)
    write_text_atomic(doc, text)
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
