"""Runs `tests/triton_kernels` in its own pytest process under Triton's interpreter.

`TRITON_INTERPRET` must be set before triton is imported, and the interpreter must not share a
process with compiled kernels, so CI's single `pytest` starts a child session for the kernel tests.
The child's summary line is checked, not just its exit code: a session that collected nothing fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mmbench.kernels.triton_runtime import interpreter_requested, triton_available

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.skipif(not triton_available(), reason="triton is not installed (it is a Linux-only dependency)"),
    pytest.mark.skipif(interpreter_requested(), reason="this session is an interpreter session: it ran them itself"),
]


def test_kernels_match_references_under_the_interpreter(tmp_path):
    env = {**os.environ, "TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(REPO_ROOT / "tests" / "triton_kernels"),
        "-q",
        "-p",
        "no:cacheprovider",
        "--basetemp",
        str(tmp_path / "basetemp"),
        "-m",
        "not gpu",
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"interpreter session failed:\n{output[-6000:]}"
    summary = re.search(r"(\d+) passed", output)
    assert summary and int(summary.group(1)) >= 30, f"too few kernel tests ran:\n{output[-3000:]}"
    print(output.strip().splitlines()[-1])
