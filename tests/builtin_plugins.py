"""The built-in methods and their paper-scale configs, found from the registry and the files, never from
hand-kept name lists: a new method folder plus its entry-point line is picked up by every test that uses this."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from mmbench.registry import METHODS

REPO_ROOT = Path(__file__).resolve().parents[1]


def builtin_methods() -> list[str]:
    """The registered methods that mmbench itself ships (pyproject.toml's `mmbench.methods` entry points)."""
    return [
        r.name
        for r in METHODS.registrations()
        if r.sources and (r.sources[0].distribution or "").startswith("mmbench ")
    ]


def paper_configs() -> list[str]:
    """Every paper-scale `--config` file of the built-in methods, relative to the repository."""
    return sorted(path.relative_to(REPO_ROOT).as_posix() for path in REPO_ROOT.glob("methods/*/paper*.yaml"))


def paper_config_method(path: str) -> str:
    """The built-in method a paper-scale config belongs to: `paper_<stem>.yaml` sits beside the defaults
    `<stem>.yaml` of its method, `paper.yaml` beside the defaults of the only method of its folder."""
    folder, file = (REPO_ROOT / path).parent.resolve(), Path(path).name
    owners = []
    for name in builtin_methods():
        package, _, defaults = METHODS.get(name).defaults.partition(":")
        if Path(str(resources.files(package))).resolve() == folder:
            owners.append((name, Path(defaults).stem))
    if file != "paper.yaml":
        owners = [(name, stem) for name, stem in owners if file == f"paper_{stem}.yaml"]
    assert len(owners) == 1, f"{path} must belong to exactly one built-in method; candidates: {owners}"
    return owners[0][0]
