"""Every built-in method passes a smoke run (`mmbench run METHOD --smoke`) with its default config."""

from __future__ import annotations

import pytest

from mmbench.cli.main import main
from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic
from mmbench.records import read_record
from mmbench.registry import METHODS


def builtin_methods() -> list[str]:
    return [r.name for r in METHODS.registrations()
            if r.sources and (r.sources[0].distribution or "").startswith("mmbench ")]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("smoke") / "s.h5", SyntheticConfig(tiles=6, size=96))


def test_there_are_builtin_methods():
    assert "stars" in builtin_methods()


@pytest.mark.parametrize("method", builtin_methods())
def test_every_builtin_method_passes_a_smoke_run(capsys, tmp_path, store, method):
    code = main(["run", method, "--protocol", "last1", "--dataset", str(store), "--smoke", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    (path,) = tmp_path.rglob("result.json")
    record = read_record(path)
    assert record["smoke"] is True and record["method"]["name"] == method
    assert all(s["metrics"]["miou"] is not None for s in record["scenarios"])
