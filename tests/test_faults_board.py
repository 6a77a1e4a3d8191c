"""Fault cases of `mmbench leaderboard` (issue 19, area "board"): `--check` recomputes every stored number,
aggregates included, with the protocol's own code; bad arguments and inputs are one line, exit 2.

Each case writes records (committed synthetic records, some edited) into a fresh folder and runs the
leaderboard in process; tests/faults.py classifies the outcome.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from board_records import ground_truth, real, schema2_record, template, write
from faults import Result, expect_clean, run_in_process

AREA = "board"
TRUE_PLUS = 0.05  # an edit that moves a number by 5 points (the 43.8 vs 38.8)
RECORDS_ROOT = Path(__file__).resolve().parents[1] / "docs" / "results" / "records"
STARS_LAST1 = "stars-synthetic/stars-v2-defaults-seed0-last1"  # has most_fragile
STARS_MINORITY = "stars-synthetic/stars-v2-defaults-seed0-minority"  # protocol minority version 2


def _committed(name: str) -> dict[str, Any]:
    """A committed record: `NAME` of docs/results/records/synthetic, or `FOLDER/NAME` of docs/results/records."""
    if "/" not in name:
        return real(name)
    return json.loads((RECORDS_ROOT / f"{name}.json").read_text())


def _tamper(name: str, path: tuple[str, ...], value: Callable[[Any], Any]) -> dict[str, Any]:
    record = _committed(name)
    node = record["aggregate"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value(node[path[-1]])
    return record


def _stars_with_fragile() -> dict[str, Any]:
    return json.loads(
        (
            Path(__file__).resolve().parents[1]
            / "docs/results/records/stars-synthetic/stars-v2-defaults-seed0-last1.json"
        ).read_text()
    )


def _fragile_edit(field: str, value: Any) -> dict[str, Any]:
    record = _stars_with_fragile()
    record["aggregate"]["most_fragile"][field] = value
    return record


# (case id, the edited record, the key the one error line must name)
TAMPERED = [
    (
        "aggregate.mean.miou +5 pp (last1)",
        lambda: _tamper("early-fusion-last1", ("mean", "miou"), lambda v: v + TRUE_PLUS),
        "aggregate.mean.miou",
    ),
    (
        "aggregate.worst.miou set to 0.90",
        lambda: _tamper("early-fusion-last1", ("worst", "miou"), lambda v: 0.90),
        "aggregate.worst.miou",
    ),
    (
        "aggregate.worst.scenario renamed",
        lambda: _tamper("early-fusion-last1", ("worst", "scenario"), lambda v: "sar only"),
        "aggregate.worst.scenario",
    ),
    (
        "aggregate.mean.oa edited",
        lambda: _tamper("early-fusion-last1", ("mean", "oa"), lambda v: v + 0.01),
        "aggregate.mean.oa",
    ),
    (
        "aggregate.per_scenario_miou edited",
        lambda: _tamper("early-fusion-last1", ("per_scenario_miou", "dsm only"), lambda v: v + TRUE_PLUS),
        "aggregate.per_scenario_miou.dsm only",
    ),
    (
        "E(p=0.1) of subsets edited",
        lambda: _tamper("early-fusion-subsets", ("expectation", "p=0.1", "miou"), lambda v: v + TRUE_PLUS),
        "aggregate.expectation.p=0.1.miou",
    ),
    (
        "minority_miou.mean edited",
        lambda: _tamper(STARS_MINORITY, ("minority_miou", "mean"), lambda v: v + TRUE_PLUS),
        "aggregate.minority_miou.mean",
    ),
    (
        "minority_classes edited",
        lambda: _tamper(STARS_MINORITY, ("minority_classes",), lambda v: ["car"]),
        "aggregate.minority_classes",
    ),
    (
        "minority base mean edited",
        lambda: _tamper(STARS_MINORITY, ("base", "mean", "miou"), lambda v: v + TRUE_PLUS),
        "aggregate.base.mean.miou",
    ),
    ("aggregate key removed", lambda: _tamper("early-fusion-last1", ("worst",), lambda v: None), "aggregate.worst"),
    (
        "most_fragile.modality not the lowest",
        lambda: _fragile_edit("modality", "optical"),
        "aggregate.most_fragile.modality",
    ),
    (
        "aggregate.mean.miou is NaN",
        lambda: _tamper("early-fusion-last1", ("mean", "miou"), lambda v: float("nan")),
        "aggregate.mean.miou",
    ),
]


def _expect_said(case: str, result: Result, fragment: str) -> None:
    """Exit 0 is right only when the output says `fragment` (what was not checked); without it the same exit 0
    is a silent pass, and is classified as one."""
    said = fragment in result.err
    expect_clean(case, AREA, result, expect_code=0 if said else 2)


@pytest.mark.parametrize(("case", "make", "key"), TAMPERED, ids=[case for case, _, _ in TAMPERED])
def test_check_recomputes_the_aggregate_with_the_protocols_code(capsys, tmp_path, case, make, key):
    write(tmp_path, "good", real("early-fusion-last1"))
    bad = write(tmp_path, "bad", make())
    result = run_in_process(capsys, "leaderboard", tmp_path, "--check", "--format", "json")
    expect_clean(case, AREA, result, expect_code=2, names=[str(bad), key, "stored", "recomputed"])
    assert result.out == ""  # no board from records that fail the check


def test_every_committed_record_passes_the_aggregate_check(capsys):
    """The recomputation is the protocols' own: every committed record (last1, subsets, minority v1 and v2,
    most_fragile) passes, and the figure whose scenario is not stored is said to be taken as stored."""
    root = RECORDS_ROOT
    result = run_in_process(
        capsys, "leaderboard", root / "synthetic", root / "stars-synthetic", "--check", "--format", "json"
    )
    assert result.code == 0, result.err
    files = [*(root / "synthetic").glob("*.json"), *(root / "stars-synthetic").glob("*.json")]
    fragile = sum("most_fragile" in json.loads(path.read_text())["aggregate"] for path in files)
    assert fragile > 0
    assert f"check passed: every scenario metric and aggregate of {len(files)} records" in result.err
    assert f"most_fragile's test metrics of {fragile} records are as stored" in result.err


WEIGHTED = """
    from mmbench.plugins import ProtocolSpec
    from mmbench.protocols.scenario_sets import Last1

    class Weighted(Last1):
        name = "weighted-last1"

        def aggregate(self, results, modalities, context):
            values = [entry["metrics"]["miou"] for entry in results]
            weights = list(range(1, len(values) + 1))
            mean = sum(w * v for w, v in zip(weights, values)) / sum(weights)
            return {"mean": {"miou": mean}, "weights": weights}

    SPEC = ProtocolSpec(name="weighted-last1", summary="Test: weighted last1.", version="1",
                        target="mmb_weighted_protocol:Weighted")
"""


def _weighted_record() -> dict[str, Any]:
    record = real("early-fusion-last1")
    record["protocol"]["name"] = "weighted-last1"
    values = [scenario["metrics"]["miou"] for scenario in record["scenarios"]]
    record["aggregate"] = {"mean": {"miou": (values[0] + 2 * values[1] + 3 * values[2]) / 6}, "weights": [1, 2, 3]}
    return record


def test_a_third_party_aggregate_is_recomputed_by_its_own_code(capsys, tmp_path, install_dist):
    install_dist(
        "mmb-weighted-protocol",
        {"mmbench.protocols": {"weighted-last1": "mmb_weighted_protocol:SPEC"}},
        files={"mmb_weighted_protocol.py": WEIGHTED},
    )
    write(tmp_path / "ok", "a", _weighted_record())
    result = run_in_process(capsys, "leaderboard", tmp_path / "ok", "--check", "--format", "json")
    assert result.code == 0 and "check passed" in result.err, result.err
    tampered = _weighted_record()
    tampered["aggregate"]["mean"]["miou"] += TRUE_PLUS
    bad = write(tmp_path / "bad", "a", tampered)
    result = run_in_process(capsys, "leaderboard", tmp_path / "bad", "--check", "--format", "json")
    expect_clean("custom aggregate edited", AREA, result, expect_code=2, names=[str(bad), "aggregate.mean.miou"])


def test_an_edit_to_a_record_of_an_older_protocol_version_is_reported_as_unchecked(capsys, tmp_path):
    """minority version 1 records (the installed one is 2): an aggregate that disagrees cannot be blamed on an
    edit, since the protocol's code changed; the check says so with the first disagreement."""
    path = write(tmp_path, "a", _tamper("early-fusion-minority", ("minority_miou", "mean"), lambda v: v + TRUE_PLUS))
    result = run_in_process(capsys, "leaderboard", tmp_path, "--check", "--format", "json")
    _expect_said("edited aggregate of an older protocol version", result, f"unchecked {path}")
    (line,) = [line for line in result.err.splitlines() if line.startswith("unchecked")]
    assert str(path) in line and "version 1" in line and "aggregate.minority_miou.mean: stored" in line
    assert "check incomplete" in result.err


def test_an_aggregate_nothing_here_can_recompute_is_said_plainly(capsys, tmp_path):
    """A record of a protocol that is not installed: the check cannot rerun its aggregate and says so."""
    record = _weighted_record()
    path = write(tmp_path, "a", record)
    result = run_in_process(capsys, "leaderboard", tmp_path, "--check", "--format", "json")
    _expect_said("custom aggregate, protocol not installed", result, f"unchecked {path}")
    assert f"unchecked {path}: aggregate: protocol 'weighted-last1' cannot be loaded here" in result.err
    assert "check incomplete" in result.err and "check passed:" not in result.err


# -- bad arguments and inputs --------------------------------------------------------------------------------


def _good(root: Path) -> Path:
    write(root / "runs", "a", real("early-fusion-last1"))
    write(root / "runs", "b", real("unimodal-last1"))
    return root / "runs"


def _schema2(root: Path) -> Path:
    rng = np.random.default_rng(0)
    truth = ground_truth(4, rng)
    for seed in (0, 1):
        for method, quality in (("a", 0.7), ("b", 0.6)):
            record = schema2_record(template(), method=method, seed=seed, quality=quality, truth=truth, rng=rng)
            write(root / "runs", f"{method}{seed}", record)
    return root / "runs"


def _smoke_only(root: Path) -> Path:
    record = real("early-fusion-last1")
    record["smoke"] = True
    write(root / "runs", "a", record)
    return root / "runs"


def _with_corrupt(root: Path) -> Path:
    runs = _good(root)
    (runs / "c").mkdir()
    (runs / "c" / "result.json").write_text('{"schema_version": 2, "trunc')
    return runs


def _file(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.write_text(text)
    return path


# (case id, arguments given the test's folder, exit code, fragments the one error line names)
BAD_INPUTS: list[tuple[str, Callable[[Path], list[Any]], int, list[str]]] = [
    (
        "--out is an existing folder",
        lambda t: [_good(t), "--out", t / "runs", "--format", "md"],
        2,
        ["--out", "folder"],
    ),
    ("--out under a file", lambda t: [_good(t), "--out", _file(t, "f", "") / "board.md"], 2, ["--out", "board.md"]),
    (
        "--compare --out is a folder",
        lambda t: [_good(t), "--compare", "early-fusion", "unimodal", "--out", t],
        2,
        ["--out"],
    ),
    ("smoke-only records", lambda t: [_smoke_only(t)], 2, ["nothing to rank", "--smoke"]),
    ("RUNS_DIR does not exist", lambda t: [t / "nowhere"], 2, ["nowhere", "does not exist"]),
    ("RUNS_DIR is a file", lambda t: [_file(t, "notes.txt", "hello")], 2, ["notes.txt"]),
    ("RUNS_DIR is an empty folder", lambda t: [t], 2, ["test_bad_leaderboard_inputs", "no run records"]),
    ("--bootstrap 0", lambda t: [_good(t), "--bootstrap", "0"], 2, ["--bootstrap 0", "at least 1"]),
    ("--bootstrap -5", lambda t: [_good(t), "--bootstrap", "-5"], 2, ["--bootstrap -5"]),
    (
        "--bootstrap-seed -1",
        lambda t: [_schema2(t), "--bootstrap-seed", "-1", "--bootstrap", "20"],
        2,
        ["--bootstrap-seed -1"],
    ),
    ("--references missing", lambda t: [_good(t), "--references", t / "refs.yaml"], 2, ["refs.yaml", "cannot be read"]),
    (
        "--references bad YAML",
        lambda t: [_good(t), "--references", _file(t, "r.yaml", "references: [\n")],
        2,
        ["r.yaml", "line"],
    ),
    (
        "--references duplicate key",
        lambda t: [_good(t), "--references", _file(t, "r.yaml", "a: 1\na: 2\n")],
        2,
        ["r.yaml line 2", "duplicate key"],
    ),
    (
        "--references wrong shape",
        lambda t: [_good(t), "--references", _file(t, "r.yaml", "references: 3\n")],
        2,
        ["r.yaml", "references"],
    ),
    (
        "--references entry lacks a field",
        lambda t: [_good(t), "--references", _file(t, "r.yaml", "references:\n  - dataset: x\n")],
        2,
        ["r.yaml", "entry 1", "protocol"],
    ),
    ("--compare unknown rows", lambda t: [_good(t), "--compare", "foo", "bar"], 2, ["'foo'", "early-fusion"]),
    ("--compare one row twice", lambda t: [_good(t), "--compare", "unimodal", "unimodal"], 2, ["unimodal", "same row"]),
    ("--dataset matches nothing", lambda t: [_good(t), "--dataset", "nope"], 2, ["dataset 'nope'"]),
]


@pytest.mark.parametrize(("case", "args", "code", "names"), BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_leaderboard_inputs_are_one_line(capsys, tmp_path, case, args, code, names):
    argv = [str(arg) for arg in args(tmp_path)]
    if "--format" not in argv:
        argv += ["--format", "json"]
    result = run_in_process(capsys, "leaderboard", *argv)
    expect_clean(case, AREA, result, expect_code=code, names=names)


def test_a_corrupt_record_among_good_ones_is_named_and_left_out(capsys, tmp_path):
    runs = _with_corrupt(tmp_path)
    result = run_in_process(capsys, "leaderboard", runs, "--check", "--format", "json")
    expect_clean("corrupt result.json among good ones", AREA, result, expect_code=0)
    assert f"skipped {runs / 'c' / 'result.json'}: not valid JSON" in result.err
    assert json.loads(result.out)["records"] == 2


DUPLICATE_KEYS = [
    ("duplicate key in a --config file", "method:\n  train:\n    lr: 0.1\n    lr: 0.2\n", ["dup.yaml line 4", "'lr'"]),
    (
        "duplicate section in a --config file",
        "protocol:\n  window: 5\nprotocol:\n  window: 6\n",
        ["dup.yaml line 3", "'protocol'"],
    ),
]


@pytest.mark.parametrize(("case", "text", "names"), DUPLICATE_KEYS, ids=[case for case, _, _ in DUPLICATE_KEYS])
def test_a_duplicate_yaml_key_names_the_file_and_line(capsys, tmp_path, case, text, names):
    path = _file(tmp_path, "dup.yaml", text)
    result = run_in_process(capsys, "run", "unimodal", "-p", "last1", "--config", path, "--dry-run")
    expect_clean(case, AREA, result, expect_code=2, names=[str(path), *names])
    assert "<unicode string>" not in result.err


def test_a_duplicate_key_in_a_set_value_names_the_override(capsys):
    result = run_in_process(
        capsys, "run", "unimodal", "-p", "last1", "--set", "method.train={lr: 1, lr: 2}", "--dry-run"
    )
    expect_clean("duplicate key in --set", AREA, result, expect_code=2, names=["--set method.train=", "'lr'"])


def test_the_check_reports_an_edited_record_copied_out_of_a_runs_tree(capsys, tmp_path):
    """Records copied under another name (docs/results/records) are checked like result.json."""
    record = copy.deepcopy(real("early-fusion-last1"))
    record["aggregate"]["mean"]["miou"] += TRUE_PLUS
    path = tmp_path / "early-fusion-last1.json"
    path.write_text(json.dumps(record))
    result = run_in_process(capsys, "leaderboard", tmp_path, "--check", "--format", "json")
    expect_clean(
        "edited record under another name", AREA, result, expect_code=2, names=[str(path), "aggregate.mean.miou"]
    )


def _numeric_leaves(node: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        return [leaf for key, value in node.items() for leaf in _numeric_leaves(value, (*path, key))]
    if isinstance(node, (int, float)) and not isinstance(node, bool):
        return [path]
    return []


BUILTIN_PROTOCOLS = ("full", "missing1", "last1", "subsets", "random-drop", "pixel-drop", "minority")


def test_every_builtin_protocols_aggregate_is_recomputed_leaf_by_leaf(capsys, tmp_path, tiny_methods):
    """Fresh records of every built-in protocol (one checkpoint, `mmbench eval`) pass; editing any one numeric
    leaf of any of their aggregates fails, naming that key."""
    from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic

    store = write_synthetic(tmp_path / "s.h5", SyntheticConfig(tiles=8, size=64))
    train = ["--set", "method.train.iterations=1", "--set", "method.train.val_every=1"]
    result = run_in_process(
        capsys, "run", "tiny-trainable", "-p", "last1", "-d", store, "--out", tmp_path / "t", *train
    )
    assert result.code == 0, result.err
    (checkpoint,) = (tmp_path / "t").rglob("best.ckpt")
    protocols = ",".join(BUILTIN_PROTOCOLS)
    result = run_in_process(capsys, "eval", checkpoint, "-p", protocols, "-d", store, "--out", tmp_path / "e")
    assert result.code == 0, result.err
    paths = sorted((tmp_path / "e").rglob("result.json"))
    records = {json.loads(path.read_text())["protocol"]["name"]: path for path in paths}
    assert sorted(records) == sorted(BUILTIN_PROTOCOLS)
    result = run_in_process(capsys, "leaderboard", tmp_path / "e", "--check", "--format", "json")
    assert result.code == 0 and "check passed: every scenario metric and aggregate of 7 records" in result.err
    (pixel_drop,) = [table for table in json.loads(result.out)["tables"] if table["protocol"]["name"] == "pixel-drop"]
    keys = [column["key"] if isinstance(column, dict) else column for column in pixel_drop["columns"]]
    assert {"mean r=0.25", "mean r=0.5", "mean r=0.75"} <= set(keys), keys  # per-ratio means reach the board
    for name, path in records.items():
        original = path.read_text()
        record = json.loads(original)
        leaves = _numeric_leaves({k: v for k, v in record["aggregate"].items() if k != "most_fragile"})
        assert leaves, name
        for leaf in leaves[-1:]:
            edited = copy.deepcopy(record)
            node = edited["aggregate"]
            for key in leaf[:-1]:
                node = node[key]
            node[leaf[-1]] += 1
            path.write_text(json.dumps(edited))
            result = run_in_process(capsys, "leaderboard", tmp_path / "e", "--check", "--format", "json")
            key = "aggregate." + ".".join(map(str, leaf))
            expect_clean(f"{name}: {key} edited", AREA, result, expect_code=2, names=[str(path), key])
        path.write_text(original)
