"""What a run record says about the software and hardware it ran on.

"Results differ" in this field is often a version, a GPU or an uncommitted change: every record carries
the library versions, the device, the CPU, the OS and the git commit (with a dirty flag and what made it
dirty) of the mmbench install that produced it.
"""

from __future__ import annotations

import os
import platform
import subprocess
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
