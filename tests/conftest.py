"""Shared fixtures: temporary plugin distributions on sys.path, and registries reset around each test."""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from plugin_factory import make_distribution, make_dummy_plugin  # noqa: E402

from mmbench import console  # noqa: E402
from mmbench.registry import refresh_all  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def _kernel_tests_run_in_this_session() -> bool:
    """Triton kernel tests run here on CUDA (compiled) or when this session is the interpreter's own."""
    import torch

    from mmbench.kernels.triton_runtime import interpreter_requested, triton_available

    return triton_available() and (interpreter_requested() or torch.cuda.is_available())


# Otherwise `test_triton_interpreter.py` runs them in a separate pytest process with TRITON_INTERPRET=1.
collect_ignore = [] if _kernel_tests_run_in_this_session() else ["triton_kernels"]
_counter = itertools.count()


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the whole test session (generated stores are reused), never the user's own."""
    return tmp_path_factory.mktemp("mmbench-cache")


@pytest.fixture(autouse=True)
def _fresh_registries_and_wide_console(monkeypatch: pytest.MonkeyPatch, session_cache: Path) -> Iterator[None]:
    """Each test discovers plugins anew; rich renders 200 columns wide so assertions see whole cells."""
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("MMBENCH_CACHE", str(session_cache))
    console.stdout.cache_clear()
    console.stderr.cache_clear()
    refresh_all()
    yield
    refresh_all()
    console.stdout.cache_clear()
    console.stderr.cache_clear()


@pytest.fixture
def install_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Make a distribution visible to this process (and to subprocesses through PYTHONPATH)."""

    def install(name: str, entry_points: dict, files: dict | None = None, version: str = "1.0.0") -> Path:
        root = make_distribution(tmp_path / f"site{next(_counter)}", name, entry_points, files, version)
        _put_on_path(root, monkeypatch)
        return root

    return install


@pytest.fixture
def dummy_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The dummy method/protocol/dataset plugin, under a package name unique to this test."""
    index = next(_counter)
    root = make_dummy_plugin(tmp_path / f"dummy{index}", package=f"mmb_dummy_{index}")
    _put_on_path(root, monkeypatch)
    return root


@pytest.fixture
def tiny_methods(install_dist, monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the test-only methods of tests/tiny_methods.py (also for subprocesses)."""
    install_dist(
        "mmb-tiny-methods",
        {
            "mmbench.methods": {
                "tiny-fusion": "tiny_methods:SPEC",
                "tiny-fusion-plain": "tiny_methods:PLAIN_SPEC",
                "tiny-trainable": "tiny_methods:TRAINABLE_SPEC",
                "tiny-diverging": "tiny_methods:DIVERGING_SPEC",
                "tiny-adversarial": "tiny_methods:ADVERSARIAL_SPEC",
            }
        },
    )
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent) + os.pathsep + os.environ["PYTHONPATH"])


def _put_on_path(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(root))
    existing = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(root) + (os.pathsep + existing if existing else ""))
    refresh_all()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for the test (pins are computed with one; other counts may reorder float sums),
    the process's count back afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
