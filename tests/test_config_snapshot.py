"""The resolved defaults of every built-in plugin, and of every paper-scale `--config` file, are pinned.

`tests/fixtures/resolved_defaults.json` was written from the plugin YAML files as they were before they
inherited from shared base files (`_base_`); any change to a default, a type (an int becoming a float),
the order of the keys or a paper-scale value fails here. Regenerate it only for an intended change of a default:

    python tests/test_config_snapshot.py > tests/fixtures/resolved_defaults.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from builtin_plugins import paper_config_method, paper_configs

REPO_ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = REPO_ROOT / "tests" / "fixtures" / "resolved_defaults.json"
PAPER_CONFIGS = {path: paper_config_method(path) for path in paper_configs()}
PAPER_PROTOCOL = "last1"


def resolved(method: str, protocol: str, config_file: Path | None = None) -> dict[str, Any]:
    from mmbench.config import resolve_run_config
    from mmbench.registry import DATASETS, METHODS, PROTOCOLS

    specs = {"method": METHODS.get(method), "protocol": PROTOCOLS.get(protocol), "dataset": DATASETS.get("synthetic")}
    return resolve_run_config(specs, config_file=config_file).data


def current_snapshot() -> dict[str, Any]:
    """What the fixture holds, computed from the YAML files of this checkout."""
    from mmbench.registry import METHODS, PROTOCOLS

    first_protocol = PROTOCOLS.names()[0]
    base = resolved(METHODS.names()[0], first_protocol)
    return {
        "run": base["run"],
        "datasets": {"synthetic": base["dataset"]},
        "methods": {name: resolved(name, first_protocol)["method"] for name in METHODS.names()},
        "protocols": {name: resolved(METHODS.names()[0], name)["protocol"] for name in PROTOCOLS.names()},
        "paper": {
            path: {
                "method": method,
                "protocol": PAPER_PROTOCOL,
                "config": resolved(method, PAPER_PROTOCOL, REPO_ROOT / path),
            }
            for path, method in PAPER_CONFIGS.items()
        },
    }


def exact(value: Any) -> str:
    """JSON text: equal strings mean equal values, types (1 and 1.0 differ) and key order (which `--dry-run`
    and run records show)."""
    return json.dumps(value)


@pytest.fixture(scope="module")
def snapshot() -> dict[str, Any]:
    return json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def test_every_plugin_of_the_snapshot_is_still_there(snapshot):
    """The pins cannot silently shrink. Plugins added after the snapshot have nothing to be compared with;
    their defaults are still checked when loaded (tests/test_config_values.py, tests/test_comparison_methods.py)."""
    from mmbench.registry import METHODS, PROTOCOLS

    assert set(snapshot["methods"]) <= set(METHODS.names())
    assert set(snapshot["protocols"]) <= set(PROTOCOLS.names())
    assert set(snapshot["paper"]) <= set(PAPER_CONFIGS)


def test_every_method_and_protocol_resolves_to_the_snapshot(snapshot):
    """All method x protocol pairs: the whole resolved config, not only each plugin's own section."""
    for method in snapshot["methods"]:
        for protocol in snapshot["protocols"]:
            expected = {
                "run": snapshot["run"],
                "method": snapshot["methods"][method],
                "protocol": snapshot["protocols"][protocol],
                "dataset": snapshot["datasets"]["synthetic"],
            }
            assert exact(resolved(method, protocol)) == exact(expected), (method, protocol)


def test_load_defaults_returns_the_snapshot_values(snapshot):
    """Models and tests build from `load_defaults` directly: it must give the same plain values."""
    from mmbench.config import load_defaults
    from mmbench.registry import DATASETS, METHODS, PROTOCOLS

    for registry, key in ((METHODS, "methods"), (PROTOCOLS, "protocols"), (DATASETS, "datasets")):
        for name in snapshot[key]:
            spec = registry.get(name)
            assert exact(load_defaults(spec.defaults, name)) == exact(snapshot[key][name]), name


@pytest.mark.parametrize("path", sorted(json.loads(SNAPSHOT.read_text(encoding="utf-8"))["paper"]))
def test_paper_scale_configs_resolve_to_the_snapshot(snapshot, path):
    entry = snapshot["paper"][path]
    assert exact(resolved(entry["method"], entry["protocol"], REPO_ROOT / path)) == exact(entry["config"])


if __name__ == "__main__":
    sys.stdout.write(json.dumps(current_snapshot(), indent=1) + "\n")
