"""What each speed-up gives a method's CPU training step, measured against the step before issue 20.

    python benchmarks/step_speedups.py [--method stars] [--steps 6] [--warmup 2] [--rounds 2] [--no-compile]

Each variant runs in its own Python process (threads and inductor state cannot be undone in-process), on
the engine's own step (mmbench/bench/step_setup.py: the model, update rule, loss and loader `mmbench run`
builds), batch 8, 96 px, and times `steps` steps after `warmup`: wall (`time.perf_counter`) and process
CPU (`time.process_time`) per step, with the load average before and after. Read the CPU column when the
machine is shared: it moves much less with other processes than the wall time. Variants:

- threads1: one intra-op thread and the step as it was before issue 20 (`memory_format: contiguous`,
  `fused_optimizer: false`, STARS' `reuse_across_branches: false`): the baseline of the others
- threads2: the baseline with two intra-op threads
- channels_last, fused, reuse: the baseline with that one setting switched on (reuse: STARS only)
- defaults: one thread and the method's shipped defaults (what `mmbench run` now takes on a 2-core machine)
- workers1: the baseline with `num_workers: 1` (data loaded by one DataLoader worker process, overlapped)
- compile: the baseline with `run.compile`'s `compile_model` (inductor on CPU; mmbench/engine/speed.py); the
  first step's time (compilation) is reported apart, and a failure is reported, not raised

Variants are interleaved over `rounds` (compile once) so a change in the machine's load hits all of them.
Each variant also reports the loss of its last step: same seed, same batches, so a variant that changes the
numerics shows a different loss (the tests that bound the difference: tests/test_speed_settings.py).
Results: JSON to bench/step-speedups.json and a Markdown table on stdout (docs/results/step-profile.md
quotes it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("threads1", "threads2", "channels_last", "fused", "reuse", "defaults", "workers1", "compile")
BEFORE = {"method.train.memory_format": "contiguous", "method.train.fused_optimizer": "false"}
SWITCH = {
    "channels_last": ("method.train.memory_format", "channels_last"),
    "fused": ("method.train.fused_optimizer", "true"),
    "reuse": ("method.reuse_across_branches", "true"),
}


def has_reuse(method: str) -> bool:
    from mmbench.config import load_defaults
    from mmbench.registry import METHODS

    return "reuse_across_branches" in load_defaults(METHODS.get(method).defaults, method)


def overrides(variant: str, method: str) -> tuple[str, ...]:
    """--set strings of `variant`: the pre-issue-20 step, with the variant's one setting switched on."""
    if variant == "defaults":
        return ()
    before = dict(BEFORE)
    if has_reuse(method):
        before["method.reuse_across_branches"] = "false"
    elif variant == "reuse":
        raise SystemExit(f"{method} has no reuse_across_branches switch")
    if variant in SWITCH:
        key, value = SWITCH[variant]
        before[key] = value
    return tuple(f"{key}={value}" for key, value in before.items())


def measure(variant: str, method: str, steps: int, warmup: int) -> dict:
    """Run in the child: build the engine's step with the variant's settings, time it."""
    import torch

    torch.set_num_threads(2 if variant == "threads2" else 1)
    from mmbench.bench.step_setup import build_step, resolve_store
    from mmbench.engine.speed import compile_model

    store = resolve_store(None)
    folder = tempfile.mkdtemp(prefix="mmbench-speedup-")
    torch.manual_seed(0)
    parts = build_step(
        method,
        store=store,
        batch_size=8,
        size=96,
        device="cpu",
        run_dir=Path(folder),
        overrides=overrides(variant, method),
    )
    if variant == "workers1":
        parts.settings["num_workers"] = 1
    if variant == "compile":
        compile_model(parts.model)
    batches = parts.batches(warmup + steps)
    result: dict = {"variant": variant, "threads": torch.get_num_threads(), "load_before": os.getloadavg()}
    wall, cpu, terms = [], [], {}
    for step in range(warmup + steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        terms = parts.update.step(step, [next(batches) for _ in range(parts.settings["accumulate"])], parts.loss)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    result.update(
        first_step_wall=wall[0],
        first_step_cpu=cpu[0],
        wall=wall[warmup:],
        cpu=cpu[warmup:],
        last_loss=terms.get("loss"),
        load_after=os.getloadavg(),
    )
    return result


def child(variant: str, method: str, steps: int, warmup: int, timeout: int) -> dict:
    command = [sys.executable, __file__, "--child", variant, "--method", method]
    command += ["--steps", str(steps), "--warmup", str(warmup)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"variant": variant, "error": f"timed out after {timeout} s", "load_after": os.getloadavg()}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"variant": variant, "error": tail[:300], "load_after": os.getloadavg()}
    return json.loads(lines[-1])


def summary(results: list[dict]) -> list[str]:
    rows = [
        "| round | variant | steps timed | median wall s/step | min wall | median cpu s/step | vs threads1 (cpu) | "
        "first step wall | last loss | load before → after |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for round_index in sorted({result.get("round", 1) for result in results}):
        rows += summary_rows([result for result in results if result.get("round", 1) == round_index], round_index)
    return rows


def summary_rows(results: list[dict], round_index: int) -> list[str]:
    rows = []
    by_variant: dict[str, list[dict]] = {}
    for result in results:
        by_variant.setdefault(result["variant"], []).append(result)
    base = None
    for variant in VARIANTS:
        runs = by_variant.get(variant, [])
        good = [run for run in runs if "error" not in run]
        if runs and not good:
            rows.append(f"| {round_index} | {variant} | failed: {runs[0]['error']} | | | | | | | |")
            continue
        if not good:
            continue
        wall = [value for run in good for value in run["wall"]]
        cpu = [value for run in good for value in run["cpu"]]
        median_cpu = statistics.median(cpu)
        base = median_cpu if variant == "threads1" else base
        ratio = f"{base / median_cpu:.2f}x" if base else "-"
        loads = f"{good[0]['load_before'][0]:.2f} → {good[-1]['load_after'][0]:.2f}"
        loss = good[-1]["last_loss"]
        rows.append(
            f"| {round_index} | {variant} | {len(wall)} | {statistics.median(wall):.3f} | {min(wall):.3f} | "
            f"{median_cpu:.3f} | "
            f"{ratio} | {statistics.median(run['first_step_wall'] for run in good):.1f} | "
            f"{loss:.6f} | {loads} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=VARIANTS)
    parser.add_argument("--method", default="stars")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--compile-timeout", type=int, default=900)
    parser.add_argument("--variants", nargs="*", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "step-speedups.json")
    parser.add_argument("--summary", type=Path, help="print the table of a saved --out JSON; measure nothing")
    args = parser.parse_args()
    if args.summary:
        print("\n".join(summary(json.loads(args.summary.read_text())["results"])))
        return
    if args.child:
        try:
            print(json.dumps(measure(args.child, args.method, args.steps, args.warmup)))
        except Exception:  # the parent reports the failure (torch.compile may fail on a CPU toolchain)
            traceback.print_exc()
            raise SystemExit(1) from None
        return
    results = []
    for round_index in range(args.rounds):
        for variant in args.variants:
            if variant == "compile" and (args.no_compile or round_index > 0):
                continue
            if variant == "reuse" and not has_reuse(args.method):
                continue
            timeout = args.compile_timeout if variant == "compile" else 600
            results.append({**child(variant, args.method, args.steps, args.warmup, timeout), "round": round_index + 1})
            print(f"round {round_index + 1} {variant}: {json.dumps(results[-1])[:300]}", flush=True)
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"method": args.method, "cpu_count": os.cpu_count(), "results": results}, indent=1))
    print("\n".join(summary(results)))


if __name__ == "__main__":
    main()
