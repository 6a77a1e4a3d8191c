"""`mmbench data synth|info|verify` and the synthetic dataset inside `mmbench run`."""

from __future__ import annotations

import hashlib
import json

import h5py
import pytest

from mmbench.cli.main import main


def cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_synth_info_verify(capsys, tmp_path):
    store = tmp_path / "s.h5"
    code, out, _ = cli(capsys, "data", "synth", "--out", str(store), "--tiles", "6", "--size", "64", "--seed", "2")
    assert code == 0 and str(store) in out
    first = hashlib.sha256(store.read_bytes()).hexdigest()
    assert cli(capsys, "data", "synth", "--out", str(store), "--tiles", "6", "--size", "64", "--seed", "2")[0] == 0
    assert hashlib.sha256(store.read_bytes()).hexdigest() == first

    code, out, _ = cli(capsys, "data", "info", str(store))
    assert code == 0
    for fragment in ("synthetic", "optical", "IR, R, G", "dsm", "sar", "default/train", "low_vegetation"):
        assert fragment in out
    code, out, _ = cli(capsys, "data", "info", str(store), "--json")
    summary = json.loads(out)
    assert summary["tiles"] == 6 and summary["splits"]["default"] == {"train": 3, "val": 1, "test": 2}
    assert summary["provenance"]["seed"] == 2
    pixels = summary["class_histograms"]["full"]["default/train"]["pixels"]
    assert sum(pixels) == 3 * 64 * 64

    code, out, _ = cli(capsys, "data", "verify", str(store))
    assert code == 0 and "ok" in out


def test_verify_names_the_first_problem_and_exits_2(capsys, tmp_path):
    store = tmp_path / "s.h5"
    assert cli(capsys, "data", "synth", "--out", str(store), "--tiles", "6", "--size", "64")[0] == 0
    with h5py.File(store, "r+") as handle:
        handle["labels/full"][2, 10, 10] = 77
    code, _, err = cli(capsys, "data", "verify", str(store))
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "label 'full' tile 2 (synthetic_0002) has values [77]" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "synth", "--tiles", "2"], "needs at least 5 tiles"),
        (["data", "synth", "--size", "10"], "at least 64 px"),
        (["data", "info", "{junk}"], "is not a readable HDF5 file"),
        (["data", "convert", "earthmiss", "{tmp}", "out.h5", "--tile-size", "4"], "--tile-size 4 is too small"),
        (["data", "convert", "earthmiss", "{tmp}", "out.h5", "--stride", "0"], "--stride 0 must be in"),
    ],
)
def test_bad_data_requests_exit_2_with_one_line(capsys, tmp_path, argv, message):
    junk = tmp_path / "junk.h5"
    junk.write_text("junk")
    argv = [a.replace("{junk}", str(junk)).replace("{tmp}", str(tmp_path)) for a in argv]
    code, _, err = cli(capsys, *argv)
    assert code == 2
    assert message in err and err.strip().count("\n") == 0


def test_run_materialises_the_synthetic_dataset_and_fingerprints_it(capsys, tmp_path, dummy_plugin, session_cache):
    code, _, err = cli(
        capsys,
        "run",
        "dummy",
        "-p",
        "dummy-protocol",
        "--dataset",
        "synthetic",
        "--set",
        "dataset.tiles=6",
        "--set",
        "dataset.size=64",
        "--out",
        str(tmp_path / "runs"),
    )
    assert code == 0, err
    record = json.loads(next((tmp_path / "runs").rglob("result.json")).read_text())
    path = record["dataset"]["path"]
    assert path.startswith(str(session_cache)) and path.endswith("-n6-t2-px64-blosc-lz4.h5")
    with open(path, "rb") as handle:
        assert record["dataset"]["fingerprint"] == "sha256:" + hashlib.sha256(handle.read()).hexdigest()
    assert record["config"]["dataset"] == {
        "version": 2,
        "redundancy": 0.5,
        "tiles": 6,
        "test_share": 0.45,
        "size": 64,
        "seed": 0,
        "codec": "blosc-lz4",
    }
    assert record["dataset"]["name"] == "synthetic" and record["dataset"]["version"] == "3"
    code, _, err = cli(
        capsys, "run", "dummy", "-p", "dummy-protocol", "--set", "dataset.codec=zip", "--out", str(tmp_path / "runs2")
    )
    assert code == 2 and "dataset.codec='zip' must be one of gzip, lzf, blosc-lz4, blosc-zstd, none" in err


def test_convert_through_the_cli_reports_tiles_notes_and_off_palette_pixels(capsys, tmp_path):
    from converter_fixtures import make_vaihingen

    fixture = make_vaihingen(tmp_path / "src")
    output = tmp_path / "vaihingen.h5"
    code, out, err = cli(
        capsys,
        "data",
        "convert",
        "isprs-vaihingen",
        str(fixture.root),
        str(output),
        "--tile-size",
        "16",
        "--codec",
        "gzip",
    )
    assert code == 0, err
    assert f"wrote {output}" in out and "tiles" in out
    assert "off-palette label pixels were set to ignore" in out
    code, out, _ = cli(capsys, "data", "verify", str(output))
    assert code == 0
    code, out, _ = cli(capsys, "data", "info", str(output), "--json")
    summary = json.loads(out)
    assert summary["name"] == "isprs-vaihingen" and summary["codec"] == "gzip"
    assert set(summary["splits"]) >= {"official", "lineage-12-4"}
    (fixture.root / "dsm").rename(tmp_path / "moved-dsm")
    code, _, err = cli(
        capsys, "data", "convert", "isprs-vaihingen", str(fixture.root), str(tmp_path / "x.h5"), "--tile-size", "16"
    )
    assert code == 2 and err.strip().count("\n") == 0 and "dsm" in err.lower()
    assert not (tmp_path / "x.h5").exists()


def test_convert_resolves_formats_through_the_converter_registry(capsys, tmp_path):
    from mmbench.registry import CONVERTERS

    code, _, err = cli(capsys, "data", "convert", "isprs-vaihinge", str(tmp_path), str(tmp_path / "o.h5"))
    assert code == 2 and err.strip().count("\n") == 0
    assert "unknown converter 'isprs-vaihinge'; did you mean 'isprs-vaihingen'" in err
    assert f"registered converters: {', '.join(CONVERTERS.names())}" in err
    code, out, _ = cli(capsys, "list", "converters")
    assert code == 0 and "mmbench.converters" in out and "whu-opt-sar" in out


def test_convert_runs_a_converter_from_another_package(capsys, tmp_path, install_dist):
    from converter_fixtures import make_earthmiss

    install_dist(
        "mmb-cli-converter",
        {"mmbench.converters": {"cli-pairs": "mmb_cli_converter:SPEC"}},
        {
            "mmb_cli_converter/__init__.py": (
                "from mmbench.registry import ConverterSpec\n"
                'SPEC = ConverterSpec(name="cli-pairs", summary="s", version="1",\n'
                '                     target="mmb_cli_converter.impl:IMPL")\n'
            ),
            "mmb_cli_converter/impl.py": (
                "import dataclasses\n"
                "from mmbench.datasets.converters.common import LayoutConverter\n"
                "from mmbench.datasets.converters.earthmiss import EARTHMISS\n"
                'IMPL = LayoutConverter(dataclasses.replace(EARTHMISS, format="cli-pairs"))\n'
            ),
        },
    )
    fixture = make_earthmiss(tmp_path / "src")
    output = tmp_path / "pairs.h5"
    code, out, err = cli(capsys, "data", "convert", "cli-pairs", str(fixture.root), str(output), "--tile-size", "16")
    assert code == 0, err
    assert f"wrote {output}: 20 tiles" in out
    code, out, _ = cli(capsys, "data", "info", str(output), "--json")
    assert code == 0 and json.loads(out)["name"] == "cli-pairs"
