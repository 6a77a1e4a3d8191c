"""What a run record says about the software and hardware it ran on.

"Results differ" in this field is often a version, a GPU or an uncommitted change: every record carries
the library versions, the device, the CPU, the OS and the git commit (with a dirty flag and what made it
dirty) of the mmbench install that produced it. It is also the CPU itself: the same commit, data, seed and
thread count trained STARS to a validation score of 44.33 at step 250 on one development VM and 43.72 on
another, while a rerun on the same VM is bit-identical (docs/run-record.md, "Same seed, same numbers").
Both VMs reported the same model name, so a record also carries `cpu_numerics`: what decides how the CPU
rounds.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import mmbench
from mmbench.records.provenance import checkout_state

TRACKED_PACKAGES: tuple[str, ...] = ("torch", "triton", "kornia", "h5py", "numpy", "xformers", "pyyaml", "rich")


def package_version(name: str) -> str | None:
    """Installed version from package metadata, without importing the package (fast, no side effects)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_description() -> str:
    """The CPU model name as the OS reports it (platform.processor() is often empty on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_numerics() -> dict[str, Any]:
    """What decides a CPU's float rounding in a run: torch's vector ISA for its own kernels
    (`torch.backends.cpu.get_cpu_capability()`: DEFAULT, AVX2, AVX512, ...), and the processor's family,
    model and stepping and a digest of its feature flags, by which oneDNN picks convolution kernels. Two records
    that differ here may differ in their last bits, and a training amplifies those bits: the board flags a row
    whose seeds ran on more than one (mmbench/leaderboard/board.py)."""
    import torch

    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    break  # the first processor's block is enough: the cores of one machine match
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    flags = " ".join(sorted(fields.get("flags", "").split()))
    return {
        "isa": torch.backends.cpu.get_cpu_capability(),
        "vendor": fields.get("vendor_id"),
        "family": fields.get("cpu family"),
        "model": fields.get("model"),
        "stepping": fields.get("stepping"),
        "flags_sha256": hashlib.sha256(flags.encode()).hexdigest()[:16] if flags else None,
    }


def cpu_signature(env: Mapping[str, Any]) -> str | None:
    """One string naming a record's `cpu_numerics` (None for records written before the field existed)."""
    numerics = env.get("cpu_numerics")
    if not isinstance(numerics, Mapping):
        return None
    parts = (numerics.get("isa"), numerics.get("family"), numerics.get("model"), numerics.get("stepping"))
    return "/".join(str(part) for part in parts) + f" flags {numerics.get('flags_sha256')}"


def torch_runtime(device: str | None = None) -> dict[str, Any]:
    """CUDA/cuDNN versions and the name of the device the run computes on."""
    import torch

    info: dict[str, Any] = {
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "device": device,
        "device_name": None,
    }
    if device is not None and device.startswith("cuda") and torch.cuda.is_available():
        info["device_name"] = torch.cuda.get_device_name(torch.device(device))
        info["driver"] = _nvidia_driver()
    elif device == "cpu":
        info["device_name"] = cpu_description()
    return info


def collect_environment(device: str | None = None) -> dict[str, Any]:
    """The `env` block of a run record."""
    env: dict[str, Any] = {
        "mmbench": mmbench.__version__,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "os": platform.platform(),
        "cpu": cpu_description(),
        "cpu_count": os.cpu_count(),
        "torch_threads": None,
        "packages": {name: package_version(name) for name in TRACKED_PACKAGES},
    }
    # The record schema names these at the top level of `env` too, as users look for them first.
    for name in ("torch", "triton", "kornia", "h5py"):
        env[name] = env["packages"][name]
    runtime = torch_runtime(device)
    import torch

    env["torch_threads"] = torch.get_num_threads()
    env["cpu_numerics"] = cpu_numerics()
    env.update(runtime)
    return env


@lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the mmbench source tree this process imported, or nulls when installed
    from a wheel. The tree must be mmbench's own: a venv inside some other repository does not count.

    Dirty means a change under mmbench's source paths (mmbench/records/provenance.py: the package folders
    of pyproject.toml's package-dir, pyproject.toml and setup.py), and `dirty_paths` says which; stray
    untracked files elsewhere in the checkout do not count."""
    package_dir = Path(mmbench.__file__).resolve().parent
    unknown: dict[str, Any] = {
        "commit": None,
        "dirty": None,
        "dirty_paths": None,
        "diff_sha256": None,
        "source": str(package_dir),
    }
    top = _git(package_dir, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() / "mmbench" != package_dir:
        return unknown
    state = checkout_state(Path(top))
    if state["commit"] is None or state["dirty"] is None:
        return unknown
    return {**state, "source": top}


def _git(cwd: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _nvidia_driver() -> str | None:
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else None
