"""`mmbench leaderboard`: grouping, seed aggregation, ranks, Borda, references, --check, bad records, formats."""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path

import pytest
from board_records import RECORDS, real, write

from mmbench.cli.main import main
from mmbench.errors import ConfigError
from mmbench.leaderboard.board import borda, build_board
from mmbench.leaderboard.budget import FINAL_STEP
from mmbench.leaderboard.collect import collect_records
from mmbench.leaderboard.references import load_references
from mmbench.records import SCHEMA_VERSION


def cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def with_seed(record: dict, seed: int, shift: float) -> dict:
    """Another seed of the same run: every mIoU moved by `shift` (aggregation does not recompute)."""
    record = copy.deepcopy(record)
    record["seed"] = seed
    record["config"]["run"]["seed"] = seed
    for scenario in record["scenarios"]:
        scenario["metrics"]["miou"] += shift
    record["aggregate"]["mean"]["miou"] += shift
    record["aggregate"]["worst"]["miou"] += shift
    return record


def board_of(root: Path, **options) -> dict:
    records, skipped = collect_records([root])
    return build_board(records, skipped, **options)


def test_seeds_are_aggregated_per_method_and_ranked(tmp_path):
    stars, unimodal = real("stars-last1"), real("unimodal-last1")
    write(tmp_path, "a", stars)
    write(tmp_path, "b", with_seed(stars, 1, 0.02))
    write(tmp_path, "c", unimodal)
    (table,) = board_of(tmp_path)["tables"]
    rows = {row["label"]: row for row in table["rows"]}
    assert rows["stars"]["n"] == 2 and rows["stars"]["seeds"] == [0, 1]
    mean = rows["stars"]["values"]["mean"]
    assert mean["mean"] == pytest.approx(stars["aggregate"]["mean"]["miou"] + 0.01)
    assert mean["std"] == pytest.approx(0.02 / 2**0.5) and mean["n"] == 2
    assert rows["unimodal"]["values"]["mean"]["std"] is None  # one seed: no spread claimed
    assert [row["label"] for row in table["rows"]] == ["unimodal", "stars"]  # 65.2 > 58.7
    assert [row["rank"] for row in table["rows"]] == [1, 2]
    assert [c["label"] for c in table["columns"]][:3] == ["optical only", "dsm only", "sar only"]


def test_different_protocol_settings_are_never_mixed(tmp_path, capsys):
    stars = real("stars-last1")
    other = copy.deepcopy(stars)
    other["protocol"]["settings"]["label_variant"] = "eroded"
    write(tmp_path, "a", stars)
    write(tmp_path, "b", other)
    write(tmp_path, "c", real("stars-subsets"))
    board = board_of(tmp_path)
    assert len(board["tables"]) == 3
    variants = sorted(t["settings"].get("label_variant") for t in board["tables"] if t["protocol"]["name"] == "last1")
    assert variants == ["eroded", "full"]
    code, out, err = cli(capsys, "leaderboard", str(tmp_path), "--format", "md")
    assert code == 0, err
    assert "label_variant=eroded" in out and "label_variant=full" in out  # the header states the settings
    assert "E(p=0.2)" in out or "E(p=" in out  # the subsets table carries the protocol's expectation column


def test_borda_count_across_tables():
    tables = [
        {"rows": [{"label": "a", "rank": 1}, {"label": "b", "rank": 2}, {"label": "c", "rank": 3}]},
        {"rows": [{"label": "b", "rank": 1}, {"label": "a", "rank": 2}, {"label": "c", "rank": 3}]},
        {"rows": [{"label": "a", "rank": 1}, {"label": "c", "rank": 2}, {"label": "d", "rank": None}]},
    ]
    overall = borda(tables)  # a: 2 + 1 + 1, b: 1 + 2, c: 0 + 0 + 0; d has no rank anywhere
    assert [(e["label"], e["points"], e["rank"], e["tables"]) for e in overall] == [
        ("a", 4, 1, 3),
        ("b", 3, 2, 2),
        ("c", 0, 3, 3),
    ]


def test_ties_share_their_rank(tmp_path):
    stars = real("stars-last1")
    twin = copy.deepcopy(stars)
    twin["config"]["method"]["width"] = 99  # another configuration of stars, same numbers
    write(tmp_path, "a", stars)
    write(tmp_path, "b", twin)
    (table,) = board_of(tmp_path)["tables"]
    assert [row["rank"] for row in table["rows"]] == [1.5, 1.5]
    labels = sorted(row["label"] for row in table["rows"])
    assert labels[0].startswith("stars [") and labels[1].startswith("stars [") and labels[0] != labels[1]


def test_reproducibility_flags(tmp_path):
    clean = real("unimodal-last1")
    assert clean["git"]["dirty"] is False
    write(tmp_path, "a", clean)
    other = with_seed(clean, 1, 0.0)
    other["git"]["dirty"] = True
    other["env"]["mmbench"] = "9.9.9"
    write(tmp_path, "b", other)
    (table,) = board_of(tmp_path)["tables"]
    flags = table["rows"][0]["flags"]
    assert any("dirty git tree (1 of 2 records)" in f for f in flags)
    assert any("mixed mmbench versions" in f and "9.9.9" in f for f in flags)
    (alone,) = board_of(tmp_path / "a")["tables"]
    # clean git state; its only flag is training, not provenance: selected_step 1500 = the 1500 iterations
    assert alone["rows"][0]["flags"] == [FINAL_STEP]
    smoke = with_seed(clean, 2, 0.0)
    smoke["smoke"] = True
    write(tmp_path, "smoke", smoke)
    board = board_of(tmp_path)
    assert board["tables"][0]["rows"][0]["seeds"] == [0, 1]  # smoke runs are never results
    assert [item["reason"] for item in board["skipped"]] == ["smoke run (a pipeline check on 3 steps, not a result)"]


def test_a_row_whose_seeds_ran_on_different_cpus_is_flagged(tmp_path):
    """Same seed, same numbers holds on one kind of CPU only (docs/run-record.md): a row mixing CPUs says so;
    records without `cpu_numerics` (written before it) and rows on one CPU carry no such flag."""
    base = real("unimodal-last1")
    numerics = {"isa": "AVX512", "vendor": "AuthenticAMD", "family": "25", "model": "17", "stepping": "1"}
    first = with_seed(base, 0, 0.0)
    first["env"]["cpu_numerics"] = {**numerics, "flags_sha256": "aaaa"}
    second = with_seed(base, 1, 0.0)
    second["env"]["cpu_numerics"] = {**numerics, "flags_sha256": "aaaa"}
    unknown = with_seed(base, 2, 0.0)
    unknown["env"].pop("cpu_numerics", None)
    for name, record in (("a", first), ("b", second), ("c", unknown)):
        write(tmp_path, name, record)
    (table,) = board_of(tmp_path)["tables"]
    assert not any("kinds of CPU" in flag for flag in table["rows"][0]["flags"])
    second["env"]["cpu_numerics"]["model"] = "97"
    write(tmp_path, "b", second)
    (table,) = board_of(tmp_path)["tables"]
    assert any(flag.startswith("trained on 2 kinds of CPU") for flag in table["rows"][0]["flags"])


def test_records_say_how_their_cpu_rounds():
    import torch

    from mmbench.records.environment import collect_environment, cpu_signature

    env = collect_environment("cpu")
    numerics = env["cpu_numerics"]
    assert numerics["isa"] == torch.backends.cpu.get_cpu_capability()
    assert set(numerics) == {"isa", "vendor", "family", "model", "stepping", "flags_sha256"}
    assert cpu_signature(env).startswith(numerics["isa"] + "/") and cpu_signature({}) is None


def test_reference_rows_are_marked_and_never_ranked(tmp_path, capsys):
    write(tmp_path / "runs", "a", real("stars-last1"))
    references = tmp_path / "refs.yaml"
    references.write_text(
        "references:\n"
        "  - {dataset: synthetic, protocol: last1, setting: 'optical only, paper recipe', method: PaperNet,\n"
        "     metric: mIoU, value: 99.0, source: 'https://example.org/paper', provenance: paper}\n"
        "  - {dataset: synthetic, protocol: subsets, setting: s, method: OtherNet, metric: mIoU, value: 1.0,\n"
        "     source: x, provenance: third-party}\n"
    )
    board = build_board(*collect_records([tmp_path / "runs"]), references=load_references(references))
    (table,) = board["tables"]
    assert [ref["method"] for ref in table["references"]] == ["PaperNet"]  # only the matching protocol
    assert [row["label"] for row in table["rows"]] == ["stars"] and [e["label"] for e in board["overall"]] == ["stars"]
    code, out, _ = cli(capsys, "leaderboard", str(tmp_path / "runs"), "--references", str(references))
    assert code == 0
    assert "Published reference numbers (not ranked" in out and "| PaperNet | optical only, paper recipe |" in out


def test_packaged_references_load_and_bad_ones_are_one_line_errors(tmp_path):
    entries = load_references()
    assert entries and all(entry["source"] and entry["provenance"] in ("paper", "third-party") for entry in entries)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "references:\n  - {dataset: d, protocol: null, setting: s, method: m, metric: mIoU, value: high,\n"
        "     source: x, provenance: paper}\n"
    )
    with pytest.raises(ConfigError, match="entry 1: value 'high' must be a number"):
        load_references(bad)
    bad.write_text("references:\n  - {dataset: d, protocol: null, setting: s, method: m, metric: mIoU, value: 1}\n")
    with pytest.raises(ConfigError, match="lacks 'source'"):
        load_references(bad)


def test_check_recomputes_every_metric_from_the_confusion_matrices(tmp_path, capsys):
    write(tmp_path, "good", real("sgma-minority"))
    code, _, err = cli(capsys, "leaderboard", str(tmp_path), "--check", "--format", "json")
    assert code == 0 and "check passed" in err
    tampered = real("sgma-last1")
    tampered["scenarios"][1]["metrics"]["per_class"]["car"]["f1"] += 0.01
    path = write(tmp_path, "bad", tampered)
    code, out, err = cli(capsys, "leaderboard", str(tmp_path), "--check")
    assert code == 2 and out == ""
    assert f"{path}: scenario 'dsm only': per_class/car/f1: stored" in err
    assert "1 stored numbers of 1 records disagree with what their confusion matrices and protocols give" in err


def test_bad_records_are_skipped_one_line_each(tmp_path, capsys):
    write(tmp_path, "good", real("stars-last1"))
    (tmp_path / "truncated").mkdir()
    (tmp_path / "truncated" / "result.json").write_text(json.dumps(real("stars-last1"))[:300])
    future = real("stars-last1")
    future["schema_version"] = SCHEMA_VERSION + 1
    write(tmp_path, "future", future)
    broken = real("stars-last1")
    del broken["scenarios"]
    write(tmp_path, "broken", broken)
    code, out, err = cli(capsys, "leaderboard", str(tmp_path), "--format", "csv")
    assert code == 0
    skipped = [line for line in err.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 3
    assert any("truncated" in line and "not valid JSON" in line for line in skipped)
    assert any("newer than this mmbench understands" in line for line in skipped)
    assert any("scenarios" in line for line in skipped)
    assert {row["method"] for row in csv.DictReader(io.StringIO(out))} == {"stars"}


def test_empty_or_unmatched_inputs_give_clear_messages(tmp_path, capsys):
    code, _, err = cli(capsys, "leaderboard", str(tmp_path))
    assert code == 2 and "no run records (result.json) under" in err and err.count("\n") == 1
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "result.json").write_text("{")
    code, _, err = cli(capsys, "leaderboard", str(tmp_path))
    assert code == 2 and "no valid run records" in err
    write(tmp_path, "good", real("stars-last1"))
    code, _, err = cli(capsys, "leaderboard", str(tmp_path), "--protocol", "subsets")
    assert code == 2 and "no records for protocol 'subsets'" in err
    only_smoke = tmp_path / "only-smoke"
    smoke = real("stars-last1")
    smoke["smoke"] = True
    write(only_smoke, "a", smoke)
    code, _, err = cli(capsys, "leaderboard", str(only_smoke))
    assert code == 2 and "nothing to rank: all 1 records found were skipped" in err and "run without --smoke" in err


def test_formats_and_relative_links(tmp_path, capsys):
    runs = tmp_path / "runs"
    for name in ("stars-last1", "unimodal-last1", "stars-minority", "unimodal-minority"):
        write(runs, name, real(name))
    out_dir = tmp_path / "docs"
    out_dir.mkdir()
    code, _, err = cli(capsys, "leaderboard", str(runs), "--format", "md", "--out", str(out_dir / "board.md"))
    assert code == 0, err
    text = (out_dir / "board.md").read_text()
    assert "Rebuild with `mmbench leaderboard" in text and "](../runs/stars-last1/result.json)" in text
    assert "minority mean" in text and "car F1" in text and "## Overall (Borda count" in text
    code, out, _ = cli(capsys, "leaderboard", str(runs), "--format", "json")
    board = json.loads(out)
    assert [t["protocol"]["name"] for t in board["tables"]] == ["last1", "minority"]
    assert [e["label"] for e in board["overall"]] == ["unimodal", "stars"]
    minority = board["tables"][1]
    assert minority["primary"] == "minority mean"  # the minority table ranks by minority-class mIoU
    assert "ranked by minority mean mIoU" in text and "ranked by mean mIoU" in text
    code, out, _ = cli(capsys, "leaderboard", str(runs), "--format", "csv", "--dataset", "synthetic")
    rows = list(csv.DictReader(io.StringIO(out)))
    mean = [r for r in rows if r["method"] == "stars" and r["column"] == "mean" and r["protocol"] == "last1"]
    assert float(mean[0]["mean"]) == real("stars-last1")["aggregate"]["mean"]["miou"]


@pytest.mark.parametrize(
    ("folder", "page"),
    [
        ("synthetic", "leaderboard.md"),
        ("synthetic-v2", "leaderboard-v2.md"),
        ("synthetic-v2-6000", "leaderboard-v2-6000.md"),
    ],
)
def test_the_committed_synthetic_board_is_built_from_the_committed_records(folder, page):
    """docs/results/<page> must be exactly what the README's command makes of the records."""
    from mmbench.leaderboard.board import relative_record_paths
    from mmbench.leaderboard.render_text import render_markdown

    docs = RECORDS.parents[1]
    board = build_board(*collect_records([docs / "records" / folder]), references=load_references())
    relative_record_paths(board, docs)
    command = f"mmbench leaderboard docs/results/records/{folder} --format md --out docs/results/{page}"
    assert (docs / page).read_text() == render_markdown(board, rebuild=command), "rebuild it: " + command


def test_the_committed_v2_board_marks_only_what_both_the_test_and_the_seed_interval_support():
    """On the committed records, every mark follows the rule (worse only when p < 0.05 and the paired interval
    excludes 0), and the case that motivated it holds: with STARS best over all subsets, unimodal has p < 0.05
    but an interval that includes 0, so it is ≈ (the reading claims no difference either). minority's and
    subsets' repeats of last1's one-modality cells count once."""
    from mmbench.leaderboard.statistics import worse_than_best

    board = build_board(*collect_records([RECORDS.parents[1] / "records" / "synthetic-v2"]), n_boot=400)
    for table in board["tables"]:
        for row in table["rows"][1:]:
            if row["p_vs_best"] is not None:
                assert row["tied_with_best"] is not worse_than_best(row["p_vs_best"], row["ci_vs_best"])
    # The motivating case, on the two rows alone so that rows added later (mmFormer now leads) cannot hide it:
    # over all subsets unimodal's permutation p is below 0.05 but its interval vs STARS includes 0: ≈.
    pair = [
        RECORDS.parents[1] / "records" / "synthetic-v2" / f"{method}-seed{seed}-subsets.json"
        for method in ("stars", "unimodal")
        for seed in range(3)
    ]
    (subsets,) = (table["rows"] for table in build_board(*collect_records(pair), n_boot=400)["tables"])
    assert [row["label"] for row in subsets] == ["stars", "unimodal"]
    low, high = subsets[1]["ci_vs_best"]
    assert subsets[1]["p_vs_best"] < 0.05 and low < 0 < high and subsets[1]["tied_with_best"] is True
    section = board["across_tables"]
    assert section["duplicate_blocks"] == 6 and section["friedman"]["n_blocks"] == 10


def test_rows_trained_on_complete_data_only_are_marked(tmp_path):
    """`method.trained_for_missing: false` in the records flags the row; records without the field (older
    ones) and rows trained for missing modalities are not flagged."""
    old = real("unimodal-last1")
    assert "trained_for_missing" not in old["method"]
    complete = copy.deepcopy(real("early-fusion-last1"))
    complete["method"]["trained_for_missing"] = False
    robust = copy.deepcopy(old)
    robust["method"]["trained_for_missing"] = True
    for name, record in (("complete", complete), ("robust", robust)):
        write(tmp_path / name, "run", record)
    rows = {row["method"]: row for row in board_of(tmp_path)["tables"][0]["rows"]}
    assert "trained on complete data only" in rows["early-fusion"]["flags"]
    assert rows["early-fusion"]["trained_for_missing"] is False
    assert rows["unimodal"]["trained_for_missing"] is True and rows["unimodal"]["flags"] == [FINAL_STEP]
    (plain,) = board_of(RECORDS)["tables"][:1]
    assert all(row["trained_for_missing"] is None for row in plain["rows"])


def test_every_builtin_method_declares_its_training_regime():
    """Registry-parametrized in effect: complete-data methods are early-fusion and the perceiver at its
    default sampler; every other built-in method sees missing modalities in training."""
    from builtin_plugins import builtin_methods

    from mmbench.config import load_defaults
    from mmbench.registry import METHODS

    regimes = {
        name: METHODS.get(name).load().trains_for_missing(load_defaults(METHODS.get(name).defaults, name))
        for name in builtin_methods()
    }
    assert {name for name, trained in regimes.items() if not trained} == {"early-fusion", "perceiver"}


def test_rows_show_their_run_label_when_it_names_one_configuration(tmp_path):
    """`run.label` (set by `mmbench sweep` from the suite's display names) replaces `method [config id]`;
    a label two configurations share, or one the seeds disagree on, falls back to the config id."""
    stars = real("stars-last1")
    ablation = copy.deepcopy(stars)
    ablation["config"]["method"]["translation"] = not ablation["config"]["method"].get("translation", True)
    for record, label in ((stars, "STARS"), (ablation, "STARS no translation")):
        record["config"].setdefault("run", {})["label"] = label
    write(tmp_path / "one", "a", stars)
    write(tmp_path / "one", "b", ablation)
    labels = sorted(row["label"] for row in board_of(tmp_path / "one")["tables"][0]["rows"])
    assert labels == ["STARS", "STARS no translation"]
    ablation["config"]["run"]["label"] = "STARS"  # two configurations, one label: ambiguous
    write(tmp_path / "two", "a", stars)
    write(tmp_path / "two", "b", ablation)
    labels = sorted(row["label"] for row in board_of(tmp_path / "two")["tables"][0]["rows"])
    assert all(label.startswith("stars [") for label in labels) and len(set(labels)) == 2
