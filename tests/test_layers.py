"""The layer contracts (pyproject.toml [tool.importlinter], docs/architecture.md) hold, and can fail.

`.ci/lint-imports` runs import-linter on the installed layout; here it runs on a copy of the sources, once
as they are and once with a deliberate upward import or cycle, which must break the contract and name it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("mmbench", "methods", "datasets", "kernels", "protocols")


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("layers")
    for folder in SOURCES:
        shutil.copytree(REPO / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__", "*.h5"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    return copy


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / ".ci" / "lint-imports"), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_layer_contracts_hold(source_copy):
    result = lint(source_copy)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        (
            "mmbench/data/store_format.py",
            "import mmbench.methods",
            "mmbench.data is not allowed to import mmbench.methods",
        ),
        (
            "kernels/psa.py",
            "import mmbench.evaluation.metrics",
            "mmbench.kernels is not allowed to import mmbench.evaluation",
        ),
        (
            "mmbench/evaluation/metrics.py",
            "import mmbench.engine.trainer",
            "mmbench.evaluation is not allowed to import mmbench.engine",
        ),
        (
            "mmbench/leaderboard/collect.py",
            "import mmbench.leaderboard.board",
            "No cycles are allowed in mmbench.leaderboard",
        ),
    ],
)
def test_an_upward_import_or_a_cycle_breaks_the_contract(tmp_path, source_copy, module, line, expected):
    broken = tmp_path / "tree"
    shutil.copytree(source_copy, broken)
    target = broken / module
    target.write_text(target.read_text() + f"\n{line}  # deliberate violation\n")
    result = lint(broken)
    assert result.returncode != 0
    assert expected in result.stdout, result.stdout[-3000:]
