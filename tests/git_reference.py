"""Load a version-1 reference of tests/ (tests/stars_v1_reference.py, tests/mmformer_v1_reference.py) and
compute it on this machine.

Why: the version-1 pins were once stored as files computed on an earlier development machine, and on a
later one (an AVX-512 CPU) the same code differed from them in the last bits, so a stored pin is bit-exact
only where it was made. The references read the old code from git; running them in the test compares the
old and the current code on the same machine, which is what "bit for bit" means. Without the
git history (an sdist, a shallow clone) the comparison cannot be made and the test is skipped, saying why.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import ModuleType

import pytest
from module_files import load_module

ROOT = Path(__file__).resolve().parents[1]


def load_module_at(commit: str, path: str, name: str, folder: Path) -> ModuleType:
    """Import `path` as it was at `commit` under the module name `name`.

    The old source is written to `folder` (a temporary directory the caller owns) because the import
    machinery loads files, and a distinct `name` keeps it apart from the current module of the same path.
    """
    source = subprocess.run(
        ["git", "show", f"{commit}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    file = folder / f"{name}.py"
    file.write_text(source)
    return load_module(name, file)


def reference_pins(reference: str, commit: str) -> dict:
    """`tests/<reference>.py`'s `compute_pins()`, or a skip when git cannot show `commit`."""
    found = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True)
    if found.returncode != 0:
        pytest.skip(f"needs the git history (commit {commit}) to run the old code; this checkout has none")
    return load_module(reference, ROOT / "tests" / f"{reference}.py").compute_pins()
