"""Load a version-1 reference of tests/ (tests/stars_v1_reference.py, tests/mmformer_v1_reference.py) and
compute it on this machine.

Why: the version-1 pins were once stored as files computed on an earlier development machine, and on a
later one (an AVX-512 CPU) the same code differed from them in the last bits, so a stored pin is bit-exact
only where it was made. The references read the old code from git; running them in the test compares the
old and the current code on the same machine, which is what "bit for bit" means. Without the
git history (an sdist, a shallow clone) the comparison cannot be made and the test is skipped, saying why.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def reference_pins(reference: str, commit: str) -> dict:
    """`tests/<reference>.py`'s `compute_pins()`, or a skip when git cannot show `commit`."""
    found = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True)
    if found.returncode != 0:
        pytest.skip(f"needs the git history (commit {commit}) to run the old code; this checkout has none")
    spec = importlib.util.spec_from_file_location(reference, ROOT / "tests" / f"{reference}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compute_pins()
