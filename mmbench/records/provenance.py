"""Which code produced a record: the git state of a source checkout, and each plugin's distribution.

"Dirty" (issue 18, item 3) means the checkout's *sources* differ from its commit: only changes under the
source paths count, i.e. `git status --porcelain --untracked-files=all -- <source paths>` is not empty, where
the source paths are the project's package folders (pyproject.toml's `[tool.setuptools] package-dir`
folders when it maps them, else every top-level folder with an `__init__.py`, plus `src/`) and its build
files (pyproject.toml, setup.py, setup.cfg). A tracked file modified there, or an untracked file there
(a new module that can be imported), makes the tree dirty; a stray untracked file at the top of the
checkout, a note in docs/ or a run folder does not. The record says which paths made it dirty
(`dirty_paths`: their count and the first MAX_DIRTY_PATHS).

A plugin's distribution comes from the entry point that registered it (importlib.metadata); a distribution
installed from a local folder in editable mode says so in its `direct_url.json` (PEP 610: `dir_info.editable`),
and when that folder is a git checkout its commit and dirty state are recorded as above.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

try:
    import tomllib
except ImportError:  # Python 3.10: no TOML reader in the standard library; the folder fallback applies
    tomllib = None  # type: ignore[assignment]

MAX_DIRTY_PATHS = 10
BUILD_FILES = ("pyproject.toml", "setup.py", "setup.cfg")
# The entry-point group of each plugin kind a record names (mmbench/registry.py reads the same groups).
PLUGIN_GROUPS = {"method": "mmbench.methods", "protocol": "mmbench.protocols", "dataset": "mmbench.datasets"}


def source_paths(project: Path) -> list[str]:
    """The paths, relative to `project`, whose changes make its checkout dirty (see the module docstring)."""
    folders: list[str] = []
    pyproject = project / "pyproject.toml"
    if pyproject.is_file() and tomllib is not None:
        try:
            mapping = tomllib.loads(pyproject.read_text()).get("tool", {}).get("setuptools", {}).get("package-dir")
        except (OSError, tomllib.TOMLDecodeError):
            mapping = None
        if isinstance(mapping, dict):
            folders = sorted({str(value) for value in mapping.values() if str(value) not in ("", ".")})
    if not folders:
        folders = sorted(path.name for path in project.iterdir() if (path / "__init__.py").is_file())
        if (project / "src").is_dir():
            folders.append("src")
    return folders + [name for name in BUILD_FILES if (project / name).is_file()]


def checkout_state(project: Path, paths: list[str] | None = None) -> dict[str, Any]:
    """`commit`, `dirty`, `dirty_paths` ({count, paths}) and `diff_sha256` of the git checkout holding
    `project`, judged on `paths` (default: source_paths(project)); nulls when `project` is not in one."""
    unknown: dict[str, Any] = {"commit": None, "dirty": None, "dirty_paths": None, "diff_sha256": None}
    commit = _git(project, "rev-parse", "HEAD")
    if commit is None:
        return unknown
    scope = source_paths(project) if paths is None else paths
    if not scope:
        return {**unknown, "commit": commit, "dirty": False, "dirty_paths": {"count": 0, "paths": []}}
    status = _git(project, "status", "--porcelain", "--untracked-files=all", "--", *scope)
    if status is None:
        return {**unknown, "commit": commit}
    changed = [line[3:] for line in status.splitlines() if len(line) > 3]
    diff_sha = None
    if changed:
        diff = _git(project, "diff", "HEAD", "--", *scope) or ""
        diff_sha = hashlib.sha256((diff + status).encode()).hexdigest()
    return {
        "commit": commit,
        "dirty": bool(changed),
        "dirty_paths": {"count": len(changed), "paths": changed[:MAX_DIRTY_PATHS]},
        "diff_sha256": diff_sha,
    }


def plugin_provenance(kind: str, name: str) -> dict[str, Any] | None:
    """{distribution, version, editable, source, commit, dirty, dirty_paths} of the distribution whose entry
    point registers plugin `name` of `kind` (method, protocol, dataset); None when no entry point does (a
    dataset given as a store path)."""
    group = PLUGIN_GROUPS[kind]
    wanted = _normalize(name)
    for entry_point in metadata.entry_points(group=group):
        if _normalize(entry_point.name) == wanted:
            dist = getattr(entry_point, "dist", None)
            return _distribution_provenance(dist) if dist is not None else None
    return None


def plugins_provenance(plugins: dict[str, str | None]) -> dict[str, Any]:
    """`plugins` block of a record: {kind: plugin_provenance(kind, name)} for each named plugin."""
    return {kind: (plugin_provenance(kind, name) if name else None) for kind, name in plugins.items()}


def _distribution_provenance(dist: metadata.Distribution) -> dict[str, Any]:
    source = _editable_source(dist)
    state = _cached_checkout_state(str(source)) if source is not None else None
    return {
        "distribution": dist.metadata["Name"],
        "version": dist.version,
        "editable": source is not None,
        "source": str(source) if source is not None else None,
        "commit": state["commit"] if state else None,
        "dirty": state["dirty"] if state else None,
        "dirty_paths": state["dirty_paths"] if state else None,
    }


def _editable_source(dist: metadata.Distribution) -> Path | None:
    """The local folder an editable install points to (PEP 610 direct_url.json), else None. Metadata found
    in a source folder itself (`NAME.egg-info` beside pyproject.toml or setup.py, as `setup.py develop`
    leaves it and as Python finds it first when run from the checkout) is that folder."""
    located = getattr(dist, "_path", None)  # PathDistribution: the metadata folder
    if isinstance(located, Path) and located.name.endswith(".egg-info"):
        if any((located.parent / name).is_file() for name in BUILD_FILES):
            return located.parent.resolve()
    try:
        text = dist.read_text("direct_url.json")
        info = json.loads(text) if text else None
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not (info.get("dir_info") or {}).get("editable"):
        return None
    url = urlparse(str(info.get("url", "")))
    if url.scheme != "file":
        return None
    path = Path(unquote(url.path))
    return path if path.is_dir() else None


@lru_cache(maxsize=16)
def _cached_checkout_state(project: str) -> dict[str, Any]:
    return checkout_state(Path(project))


def _normalize(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _git(cwd: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.rstrip("\n") if result.returncode == 0 else None
