"""Build throwaway plugin distributions for tests: a folder holding a `*.dist-info` with entry points
plus the plugin's modules. Putting the folder on `sys.path` (or `PYTHONPATH` for a subprocess) makes
`importlib.metadata` see an installed distribution, which is exactly how a pip-installed third-party
plugin is discovered.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path


def make_distribution(
    root: Path,
    name: str,
    entry_points: Mapping[str, Mapping[str, str]],
    files: Mapping[str, str] | None = None,
    version: str = "1.0.0",
) -> Path:
    """Write distribution `name` into `root`; `files` maps relative paths to (dedented) contents."""
    root.mkdir(parents=True, exist_ok=True)
    dist_info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines: list[str] = []
    for group, points in entry_points.items():
        lines.append(f"[{group}]")
        lines.extend(f"{point} = {value}" for point, value in points.items())
        lines.append("")
    (dist_info / "entry_points.txt").write_text("\n".join(lines))
    for relative, content in (files or {}).items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(content).lstrip())
    return root


DUMMY_SPECS = """
from mmbench.plugins import DatasetSpec, MethodSpec, ProtocolSpec

METHOD = MethodSpec(
    name="dummy",
    summary="Test-only method: a seeded random confusion matrix per scenario.",
    version="1.2.0",
    target="{package}.impl:DummyMethod",
    paper="https://example.org/dummy",
    modalities=("optical", "dsm"),
    defaults="{package}:defaults.yaml",
)
BROKEN_METHOD = MethodSpec(
    name="broken-impl",
    summary="Test-only method whose implementation module does not import.",
    version="0.0.1",
    target="{package}.missing_module:Nope",
)
ENGINE_METHOD = MethodSpec(
    name="engine-only",
    summary="Test-only method that is a plain class: neither a SegmentationMethod nor an executor.",
    version="0.1",
    target="{package}.impl:PlainModel",
)
PROTOCOL = ProtocolSpec(
    name="dummy-protocol",
    summary="Test-only protocol: every non-empty subset of two modalities.",
    version="3",
    target="{package}.impl:DummyMethod",
    defaults={{"window": 64, "stride": 32}},
)
DATASET = DatasetSpec(
    name="toy",
    summary="Test-only dataset with two modalities and three classes.",
    version="0.1",
    target="{package}.impl:DummyMethod",
    modalities=("optical", "dsm"),
    classes=("a", "b", "c"),
)
"""

DUMMY_DEFAULTS = """
lr: 0.01
layers: 2
name: tiny
use_bias: true
schedule:
  warmup: 10
  kind: poly
class_weights: {}
fail_with: null
"""

DUMMY_IMPL = '''
"""Executes a run without training: draws confusion matrices from torch's global RNG, so a seed
fully determines the record's numbers."""

import torch

from mmbench.context import RunOutcome

CLASSES = ("a", "b", "c")
SCENARIOS = (("full", ["optical", "dsm"]), ("optical only", ["optical"]), ("dsm only", ["dsm"]))


def _metrics(matrix):
    m = matrix.double()
    tp = m.diag()
    pred = m.sum(0)
    true = m.sum(1)
    union = pred + true - tp
    iou = tp / union
    f1 = 2 * tp / (pred + true)
    per_class = {
        name: {"iou": iou[i].item(), "f1": f1[i].item(),
               "precision": (tp[i] / pred[i]).item(), "recall": (tp[i] / true[i]).item()}
        for i, name in enumerate(CLASSES)
    }
    return {"miou": iou.mean().item(), "mf1": f1.mean().item(),
            "oa": (tp.sum() / m.sum()).item(), "kappa": None, "per_class": per_class}


class PlainModel:
    """No execute(): needs mmbench's training engine."""


class DummyMethod:
    @staticmethod
    def execute(context):
        settings = context.config.section("method")
        if settings["fail_with"] == "internal":
            raise RuntimeError("dummy internal failure")
        scenarios = []
        for name, available in SCENARIOS:
            matrix = torch.randint(1, 100, (3, 3))
            scenarios.append({"name": name, "available": available,
                              "metrics": _metrics(matrix), "confusion_matrix": matrix.tolist()})
        mean = sum(s["metrics"]["miou"] for s in scenarios) / len(scenarios)
        return RunOutcome(scenarios=scenarios, aggregate={"mean_miou": mean}, params=123,
                          protocol_settings={"window": context.config.get("protocol.window")},
                          timing={"train_s": 0.0})
'''


def make_dummy_plugin(root: Path, package: str = "mmb_dummy_plugin", dist: str = "mmb-dummy-plugin") -> Path:
    """A distribution registering three methods (one runnable, one broken, one needing the training
    engine), one protocol and one dataset."""
    return make_distribution(
        root,
        dist,
        {
            "mmbench.methods": {
                "dummy": f"{package}:METHOD",
                "broken-impl": f"{package}:BROKEN_METHOD",
                "engine-only": f"{package}:ENGINE_METHOD",
            },
            "mmbench.protocols": {"dummy-protocol": f"{package}:PROTOCOL"},
            "mmbench.datasets": {"toy": f"{package}:DATASET"},
        },
        {
            f"{package}/__init__.py": DUMMY_SPECS.format(package=package),
            f"{package}/defaults.yaml": DUMMY_DEFAULTS,
            f"{package}/impl.py": DUMMY_IMPL,
        },
    )
