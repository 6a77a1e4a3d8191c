"""Every Python block of docs/plugins.md and docs/adding-a-method.md runs, so the guides cannot drift from the code.

A guide's blocks are taken in order. A block whose first line names a file (`# my_plugins/specs.py`,
`# pyproject.toml (excerpt)`) is that file of the guide's package: it is written into a temporary folder, and a
Python file is then imported. Every other ```python block runs as a script in that folder, in one namespace
per guide. The package's entry points (from its pyproject.toml block) are then installed the light way, as a
`.dist-info` folder on sys.path, which is all `importlib.metadata` reads, and the guide's plugins are run
through the command line as its text says.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from mmbench.cli.main import main
from mmbench.records import read_record
from mmbench.registry import refresh_all

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = REPO_ROOT / "docs"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)
FILE_HEADER = re.compile(r"# ([\w./-]+\.(?:py|yaml|toml))\b")


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # 1-based line of the opening fence, for failure messages

    @property
    def file(self) -> str | None:
        """The file the block is, when its first line names one."""
        match = FILE_HEADER.match(self.code.splitlines()[0]) if self.code.strip() else None
        return match.group(1) if match else None


def blocks(doc: Path) -> list[Block]:
    text = doc.read_text()
    return [
        Block(match.group(1), match.group(2), text.count("\n", 0, match.start()) + 1) for match in FENCE.finditer(text)
    ]


def install_entry_points(folder: Path) -> str:
    """Make the package in `folder` visible to `importlib.metadata` as an installed distribution; its name."""
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    info = folder / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = []
    for group, points in project.get("entry-points", {}).items():
        lines.append(f"[{group}]")
        lines.extend(f"{name} = {value}" for name, value in points.items())
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return f"{project['name']} {project['version']}"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path and the working directory; the guide's modules are forgotten afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        module_file = getattr(sys.modules[name], "__file__", None) or ""
        if module_file.startswith(str(tmp_path)):
            del sys.modules[name]
    refresh_all()


def run_guide(doc: Path, folder: Path) -> list[str]:
    """Write and run the guide's blocks in order; the files written."""
    namespace: dict = {"__name__": "__guide__"}
    written: list[str] = []
    python_blocks = 0
    for block in blocks(doc):
        where = f"{doc.relative_to(REPO_ROOT)}:{block.line}"
        if block.file is not None:
            path = folder / block.file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.code)
            written.append(block.file)
            for package in path.relative_to(folder).parents:
                init = folder / package / "__init__.py"
                if package != Path(".") and not init.exists():
                    init.write_text("")
            importlib.invalidate_caches()
            if path.suffix == ".py" and block.language == "python":
                python_blocks += 1
                module = ".".join(path.relative_to(folder).with_suffix("").parts)
                try:
                    importlib.import_module(module)
                except Exception as exc:
                    raise AssertionError(f"{where}: importing {block.file} failed: {exc!r}") from exc
        elif block.language == "python":
            python_blocks += 1
            try:
                exec(compile(block.code, where, "exec"), namespace)
            except Exception as exc:
                raise AssertionError(f"{where}: the block failed: {exc!r}") from exc
    assert python_blocks > 0
    return written


def test_every_python_block_of_the_plugin_guide_runs_and_its_package_works(workspace, capsys):
    written = run_guide(DOCS / "plugins.md", workspace)
    assert {"my_plugins/specs.py", "my_plugins/method.py", "my_plugins/protocol.py", "my_plugins/dataset.py"} <= set(
        written
    )
    distribution = install_entry_points(workspace)
    refresh_all()
    capsys.readouterr()

    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    for kind, name in (("methods", "my-mean"), ("protocols", "my-at-least"), ("datasets", "my-tiles")):
        (entry,) = [entry for entry in listing[kind] if entry["name"] == name]
        assert entry["status"] == "ok", entry
        assert entry["sources"][0].endswith(f"from {distribution}")

    out = workspace / "runs"
    code = main(["run", "my-mean", "--protocol", "my-at-least", "--dataset", "my-tiles", "--smoke", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    (path,) = out.glob("my-tiles/my-at-least/my-mean/*/result.json")
    record = read_record(path)
    assert record["dataset"]["version"] == "1" and record["dataset"]["fingerprint"]
    assert [s["name"] for s in record["scenarios"]] == ["optical+dsm", "optical only", "dsm only"]
    assert [s["size"] for s in record["scenarios"]] == [2, 1, 1]  # the scenario's tags are stored
    assert set(record["aggregate"]) == {"mean", "worst", "mean_by_size"}  # the protocol's own aggregate
    assert record["method"]["trained_for_missing"] is True


def test_every_python_block_of_the_method_walkthrough_runs(workspace, capsys, tmp_path_factory):
    # The walk-through's record-reading block reads the records under runs/: give it one to read.
    (record,) = sorted((DOCS / "results" / "records" / "synthetic").glob("*-last1.json"))[:1]
    target = workspace / "runs" / "synthetic" / "last1" / "some-method" / "run" / "result.json"
    target.parent.mkdir(parents=True)
    shutil.copy(record, target)

    written = run_guide(DOCS / "adding-a-method.md", workspace)
    assert "mmbench_plugin_template/model.py" in written and "pyproject.toml" in written
    printed = capsys.readouterr().out
    assert "synthetic last1 v" in printed, printed  # the block printed the record's line

    install_entry_points(workspace)
    refresh_all()
    from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic

    store = write_synthetic(tmp_path_factory.mktemp("walkthrough-store") / "s.h5", SyntheticConfig(tiles=6, size=96))
    out = workspace / "eval"
    code = main(["eval", "template-fusion.ckpt", "--protocol", "last1", "--dataset", str(store), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert len(list(out.rglob("result.json"))) == 1


def test_a_block_naming_a_file_is_recognised():
    assert Block("python", "# my_plugins/specs.py\nx = 1\n", 1).file == "my_plugins/specs.py"
    assert Block("toml", "# pyproject.toml (excerpt)\n[project]\n", 1).file == "pyproject.toml"
    assert Block("python", "# a comment, not a file\nx = 1\n", 1).file is None


def documented_batch() -> dict[str, str]:
    """docs/plugins.md's table of the training `batch`: key -> its "type, shape, dtype" cell."""
    section = (DOCS / "plugins.md").read_text().split("The `batch` holds", 1)[1].split("\n\n", 2)[1]
    return dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, flags=re.M))


def test_the_documented_training_batch_is_the_batch_the_engine_builds(tmp_path):
    import torch

    from mmbench.config import load_defaults
    from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic
    from mmbench.engine.batches import micro_batches, training_data
    from mmbench.runtime.distributed import DistContext

    store = write_synthetic(tmp_path / "s.h5", SyntheticConfig(tiles=6, size=96))
    settings = {**load_defaults("mmbench.methods:_base_train_cpu.yaml", "test")["train"], "crop_size": 32}
    settings.update(batch_size=3, iterations=1)
    modalities = ["optical", "dsm", "sar"]
    data = training_data(store, split=None, label_variant="full", modalities=modalities, settings=settings, seed=0)
    batch = next(micro_batches(data, seed=0, settings=settings, start_step=0, dist=DistContext(), device="cpu"))

    documented = documented_batch()
    assert set(documented) == set(batch), "docs/plugins.md lists other training batch keys than the engine builds"
    for key, value in batch.items():
        cell = documented[key]
        tensors = value.values() if isinstance(value, dict) else [value]
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor):
                dtype = str(tensor.dtype).removeprefix("torch.")
                assert dtype in cell, f"batch[{key!r}] is {dtype}; docs/plugins.md says {cell.strip()!r}"
                shape = [part.strip() for part in re.search(r"\(([^)]*)\)", cell).group(1).split(",") if part.strip()]
                assert len(shape) == tensor.dim() and shape[0] == "B", f"batch[{key!r}] is {tuple(tensor.shape)}"
                assert tensor.shape[0] == settings["batch_size"]
                if shape[-2:] == ["S", "S"]:
                    assert tuple(tensor.shape[-2:]) == (32, 32)
            else:
                assert isinstance(tensor, list) and "list" in cell, (key, type(tensor))
