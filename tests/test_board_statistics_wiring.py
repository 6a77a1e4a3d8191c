"""The leaderboard's statistics on the board (issue 17, parts 3-4): intervals from per-unit matrices (null
with a reason for schema-1 records), ties with the best, rank intervals, n < 3 marks, budget columns and
the final-step flag, the Friedman / CD section, `--compare`, determinism, and corrupt per-unit data.

Records are cheap schema-2 records from tests/board_records.py: one committed record as the template,
synthetic per-unit matrices of a chosen quality, shared ground truth per unit.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from board_records import ground_truth, schema2_record, template, write

from mmbench.cli.main import main
from mmbench.errors import RecordError
from mmbench.leaderboard.board import build_board
from mmbench.leaderboard.budget import FINAL_STEP, inference_params
from mmbench.leaderboard.collect import collect_records
from mmbench.leaderboard.render_html import render_html
from mmbench.leaderboard.render_text import render_json, render_markdown
from mmbench.leaderboard.svg import dot_plot
from mmbench.leaderboard.table_statistics import SCHEMA_1

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = REPO / "docs" / "results" / "records" / "synthetic"
N_BOOT = 400  # enough for the checks below, a fifth of the default's time


# alpha and beta: the same quality (tied); gamma and delta clearly worse; delta has two seeds only.
QUALITY = {"alpha": [0.80, 0.70, 0.75], "beta": [0.80, 0.70, 0.75], "gamma": [0.55, 0.50, 0.45], "delta": [0.62] * 3}


def _make(root: Path, *, units: int = 24, methods: dict[str, list[float]] = QUALITY) -> Path:
    rng = np.random.default_rng(7)
    base = template()
    truth = ground_truth(units, rng)
    for method, quality in methods.items():
        for seed in range(2 if method == "delta" else 3):
            final = method == "gamma"  # gamma's checkpoints are its last steps
            record = schema2_record(
                base,
                method=method,
                seed=seed,
                quality=quality,
                truth=truth,
                rng=rng,
                selected_step=1500 if final else 1000,
                total_steps=1500,
            )
            write(root, f"{method}-{seed}", record)
    return root


@pytest.fixture(scope="module")
def records_root(tmp_path_factory) -> Path:
    return _make(tmp_path_factory.mktemp("schema2"))


@pytest.fixture(scope="module")
def board(records_root) -> dict:
    return build_board(*collect_records([records_root]), n_boot=N_BOOT)


def rows_of(board: dict) -> dict[str, dict]:
    (table,) = board["tables"]
    return {row["label"]: row for row in table["rows"]}


def cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_schema_2_records_get_intervals_around_their_means(board):
    (table,) = board["tables"]
    assert table["statistics"]["available"] and table["statistics"]["reason"] is None
    assert table["statistics"]["n_boot"] == N_BOOT and table["statistics"]["units"] == 24
    assert board["statistics"] == {"n_boot": N_BOOT, "n_permutations": N_BOOT, "rng_seed": 0, "level": 0.95}
    for row in table["rows"]:
        for key in ("mean", "scenario:optical only", "scenario:dsm only", "scenario:sar only"):
            value = row["values"][key]
            low, high = value["ci"]
            assert low <= value["mean"] <= high, (row["label"], key)
            assert high - low < 0.05  # 24 tiles of ~6,000 px: a few points wide at most
        assert row["values"]["worst"]["ci"] is None  # worst-case columns get no interval


def test_schema_1_records_have_no_intervals_and_say_why_once():
    board = build_board(*collect_records([SYNTHETIC]), n_boot=N_BOOT)
    for table in board["tables"]:
        assert table["statistics"]["available"] is False and table["statistics"]["reason"] == SCHEMA_1
        for row in table["rows"]:
            assert all(value["ci"] is None for value in row["values"].values())
            assert row["rank_interval"] is None and row["p_vs_best"] is None and row["tied_with_best"] is None
    text = render_markdown(board)
    assert text.count(f"No confidence intervals or significance marks: {SCHEMA_1}.") == len(board["tables"])


def test_a_near_identical_method_is_tied_with_the_best_and_a_worse_one_is_not(board):
    rows = rows_of(board)
    best = board["tables"][0]["rows"][0]
    assert best["label"] in ("alpha", "beta") and best["tied_with_best"] is True and best["p_vs_best"] is None
    twin = rows["beta" if best["label"] == "alpha" else "alpha"]
    assert twin["tied_with_best"] is True and twin["p_vs_best"] >= 0.05
    for worse in ("gamma", "delta"):
        assert rows[worse]["tied_with_best"] is False and rows[worse]["p_vs_best"] < 0.05
        assert rows[worse]["ci_vs_best"][1] < 0  # row − best, both tests agree
    low, high = twin["ci_vs_best"]
    assert low < 0 < high and best["ci_vs_best"] is None
    text = render_markdown(board)
    assert f"[{100 * low:+.1f}, {100 * high:+.1f}]" in text  # the Δ vs best column
    assert f"| {twin['label']} ≈ |" in text and "| gamma ≈" not in text and "| gamma |" in text
    page = render_html(board)
    assert page.count('<tr class="tied"') == 2


def test_rank_intervals_span_the_tied_rows_only(board):
    rows = rows_of(board)
    assert rows["alpha"]["rank_interval"] == [1.0, 2.0] and rows["beta"]["rank_interval"] == [1.0, 2.0]
    assert rows["gamma"]["rank_interval"] == [4.0, 4.0]
    # delta ran seeds 0 and 1 only: the others resample all three seeds, delta sits at its estimate
    assert rows["delta"]["rank_interval"] is None and rows["delta"]["rank"] == 3
    text = render_markdown(board)
    assert text.count("| 1–2 |") == 2 and "| 3 | delta" in text and "| 4 | gamma" in text
    assert "Rank intervals resample seeds 0, 1, 2; rows missing one of them are held at their point" in text
    assert "shown without an interval: delta." in text


def test_one_row_with_fewer_seeds_does_not_narrow_the_others_rank_intervals(records_root, board):
    """The rank intervals of the 3-seed rows are those of a board without the 2-seed row (gamma one place
    lower: delta, held at its estimate, is always above it): resampling only the seeds every row has would
    have dropped seed 2 from all of them."""
    without = rows_of(
        build_board(
            *collect_records([path for path in records_root.iterdir() if not path.name.startswith("delta")]),
            n_boot=N_BOOT,
        )
    )
    rows = rows_of(board)
    assert board["tables"][0]["statistics"]["rank_interval_seeds"] == [0, 1, 2]  # not only delta's 0, 1
    assert rows["alpha"]["rank_interval"] == without["alpha"]["rank_interval"] == [1.0, 2.0]
    assert rows["beta"]["rank_interval"] == without["beta"]["rank_interval"]
    assert rows["gamma"]["rank_interval"] == [rank + 1 for rank in without["gamma"]["rank_interval"]]


def test_rows_with_fewer_than_3_seeds_are_marked(board):
    rows = rows_of(board)
    assert rows["delta"]["n"] == 2 and rows["delta"]["few_seeds"] is True
    assert not any(rows[name]["few_seeds"] for name in ("alpha", "beta", "gamma"))
    assert "| 2 ⚠ |" in render_markdown(board)
    assert "fewer than 3 seeds" in render_html(board)


def test_budget_columns_and_the_final_step_flag(board):
    rows = rows_of(board)
    budget = rows["alpha"]["budget"]
    # the template's scenarios are single modalities: none has the full set, so the largest is used
    assert budget == {
        "params_inference": 1_002_000,
        "params_inference_scenario": "sar only",
        "step_s": 0.25,
        "train_s": 375.0,
        "steps": 1500,
        "selected_steps": [1000, 1000, 1000],
    }
    assert FINAL_STEP in rows["gamma"]["flags"] and FINAL_STEP not in rows["alpha"]["flags"]
    text = render_markdown(board)
    assert "| 1.00 | 0.250 | 375 | 1500 | 1000, 1000, 1000 |" in text


def test_inference_params_prefer_the_scenario_with_every_modality():
    record = {
        "method": {"budget": {"used_at_inference": {"rgb": 10, "all": 7, "dsm": 12}}},
        "scenarios": [
            {"name": "rgb", "available": ["rgb"]},
            {"name": "all", "available": ["rgb", "dsm"]},
            {"name": "dsm", "available": ["dsm"]},
        ],
    }
    assert inference_params(record) == (7, "all")
    del record["scenarios"][1]
    assert inference_params(record) == (12, "dsm")  # no full set: the largest
    assert inference_params({"method": {}, "scenarios": []}) == (None, None)  # schema 1: null


def test_the_friedman_section_is_in_json_markdown_and_html(board):
    section = board["across_tables"]
    assert section["available"] and sorted(section["methods"]) == ["alpha", "beta", "delta", "gamma"]
    assert len(section["blocks"]) == 3 and section["friedman"]["n_blocks"] == 3
    assert section["nemenyi_cd"] > 0 and section["wilcoxon_holm"]["best"] in ("alpha", "beta")
    assert json.loads(render_json(board))["across_tables"]["methods"] == section["methods"]
    text = render_markdown(board)
    assert (
        "## Across tables" in text
        and "Friedman test over N = 3 blocks" in text
        and "Nemenyi critical difference" in text
    )
    assert "Benavoli" in text and "descriptive" in text
    assert section["few_seeds"] == ["delta"]  # two seeds: its rank is marked provisional
    assert "⚠ Fewer than 3 seeds in some table: delta." in text
    page = render_html(board)
    assert page.count('class="cd-diagram"') == 1 and 'id="across"' in page
    assert "Fewer than 3 seeds in some table: delta." in page


def test_without_three_methods_in_two_blocks_the_section_says_why(tmp_path):
    _make(tmp_path, methods={"alpha": QUALITY["alpha"], "gamma": QUALITY["gamma"]})
    board = build_board(*collect_records([tmp_path]), n_boot=N_BOOT)
    section = board["across_tables"]
    assert section["available"] is False and "at least 3 methods" in section["reason"]
    assert "Not computed: a rank test needs at least 3 methods" in render_markdown(board)
    page = render_html(board)
    assert "cd-diagram" not in page and "Not computed" in page


def test_the_dot_plot_draws_whiskers_and_says_what_they_are(board):
    page = render_html(board)
    assert "whiskers: 95 % bootstrap CI" in page and "<polyline" not in page.split('class="robustness"')[1][:20000]
    svg = dot_plot(
        ["a", "b"],
        [("m", [(50.0, 45.0, 55.0), (None, None, None)]), ("n", [(40.0, None, None), (30.0, 20.0, 40.0)])],
        title="t",
        x_label="x",
        y_label="y",
        whisker_note="whiskers: ± 1 std",
    )
    assert svg.count('class="whisker"') == 2 and svg.count("<circle") == 3 + 2  # 3 dots, a legend marker per series
    assert "whiskers: ± 1 std" in svg


def test_the_board_is_deterministic(records_root, board):
    again = build_board(*collect_records([records_root]), n_boot=N_BOOT)
    assert render_json(again) == render_json(board)
    other = build_board(*collect_records([records_root]), n_boot=N_BOOT, bootstrap_seed=1)
    assert render_json(other) != render_json(board)  # the seed is really used


def test_compare_two_rows_paired_by_seed_and_unit(records_root, capsys):
    code, out, err = cli(
        capsys,
        "leaderboard",
        str(records_root),
        "--compare",
        "alpha",
        "gamma",
        "--format",
        "json",
        "--bootstrap",
        "300",
    )
    assert code == 0, err
    result = json.loads(out)
    assert (result["a"], result["b"], result["n_boot"]) == ("alpha", "gamma", 300)
    (table,) = result["tables"]
    assert table["seeds"] == [0, 1, 2] and table["reason"] is None
    assert [entry["label"] for entry in table["columns"]] == ["mean", "optical only", "dsm only", "sar only"]
    mean = table["columns"][0]
    assert mean["low"] < mean["difference"] < mean["high"] and mean["difference"] > 0.1 and mean["p_value"] < 0.01
    code, out, err = cli(capsys, "leaderboard", str(records_root), "--compare", "gamma", "delta", "--bootstrap", "300")
    assert code == 0, err
    assert "# gamma − delta" in out and "only A: 2" in out  # delta has no seed 2: dropped, and said


def test_compare_names_the_store_of_each_table(tmp_path, capsys):
    """Two stores of one dataset name (the redundancy study's levels): one table each, each naming its store's
    settings, and the tables sort by those settings (level 0 first although its fingerprint sorts last)."""
    rng = np.random.default_rng(3)
    truth = ground_truth(8, rng)
    for level, fingerprint in ((0.0, "sha256:" + "1" * 64), (1.0, "sha256:" + "0" * 64)):
        base = template()
        base["dataset"]["fingerprint"] = fingerprint
        base["config"]["dataset"] = {"version": 2, "redundancy": level, "path": "/somewhere/store.h5"}
        for method, quality in (("alpha", 0.8), ("gamma", 0.5)):
            for seed in range(3):
                record = schema2_record(base, method=method, seed=seed, quality=quality, truth=truth, rng=rng)
                write(tmp_path, f"{method}-r{level}-{seed}", record)
    code, out, err = cli(
        capsys, "leaderboard", str(tmp_path), "--compare", "alpha", "gamma", "--format", "json", "--bootstrap", "50"
    )
    assert code == 0, err
    stores = [table["store"] for table in json.loads(out)["tables"]]
    assert stores == [
        "synthetic (redundancy=0.0, version=2) sha256:11111111…",
        "synthetic (redundancy=1.0, version=2) sha256:00000000…",
    ]
    code, out, err = cli(capsys, "leaderboard", str(tmp_path), "--compare", "alpha", "gamma", "--bootstrap", "50")
    assert code == 0, err
    assert out.count("store: synthetic (redundancy=0.0, version=2) sha256:11111111…") == 1
    assert out.count("(redundancy=1.0, version=2)") == 1


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ("alpha", "nope", "no board row is labelled 'nope'; available labels: alpha, beta, delta, gamma"),
        ("alpha", "alpha", "are the same row"),
    ],
)
def test_compare_errors_are_one_line_exit_2(records_root, capsys, a, b, message):
    code, out, err = cli(capsys, "leaderboard", str(records_root), "--compare", a, b)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


def test_compare_without_a_shared_table_says_why(tmp_path, capsys):
    _make(tmp_path / "one", methods={"alpha": QUALITY["alpha"]})
    other = template()
    other["protocol"]["settings"]["label_variant"] = "eroded"
    rng = np.random.default_rng(0)
    write(
        tmp_path,
        "other",
        schema2_record(other, method="gamma", seed=0, quality=0.5, truth=ground_truth(4, rng), rng=rng),
    )
    code, _, err = cli(capsys, "leaderboard", str(tmp_path), "--compare", "alpha", "gamma")
    assert code == 2 and "share no table" in err and len(err.strip().splitlines()) == 1


def test_corrupt_per_unit_matrices_name_the_file(tmp_path, capsys):
    _make(tmp_path, methods={"alpha": QUALITY["alpha"], "gamma": QUALITY["gamma"]}, units=4)
    path = tmp_path / "gamma-1" / "result.json"
    record = json.loads(path.read_text())
    broken = copy.deepcopy(record)
    broken["scenarios"][1]["confusion_matrix"][0][0] += 1  # no longer the sum of its unit matrices
    path.write_text(json.dumps(broken))
    with pytest.raises(RecordError, match=r"gamma-1/result.json: scenario 'dsm only': unit_confusion does not sum"):
        build_board(*collect_records([tmp_path]), n_boot=10)
    code, out, err = cli(capsys, "leaderboard", str(tmp_path), "--format", "json")
    assert code == 2 and out == "" and "gamma-1/result.json" in err
    broken = copy.deepcopy(record)
    broken["scenarios"][0]["unit_confusion"]["data"] = broken["scenarios"][0]["unit_confusion"]["data"][:-8]
    path.write_text(json.dumps(broken))
    with pytest.raises(RecordError, match=r"gamma-1/result.json: per-unit confusion matrices unusable"):
        build_board(*collect_records([tmp_path]), n_boot=10)


def test_bootstrap_options_must_be_positive(records_root, capsys):
    code, _, err = cli(capsys, "leaderboard", str(records_root), "--bootstrap", "0")
    assert code == 2 and "--bootstrap 0" in err


def test_the_board_s_batched_statistics_equal_the_per_row_ones():
    """statistics.bootstrap_table and permutation_p_values (one product per table) give exactly what
    hierarchical_bootstrap_cis / table_replicates / paired_comparison give row by row."""
    from board_records import unit_counts

    from mmbench.leaderboard import statistics as st

    rng = np.random.default_rng(3)
    truth = ground_truth(9, rng)
    methods = {
        name: {seed: unit_counts(truth, np.array([q] * 3), rng) for seed in range(seeds)}
        for name, q, seeds in (("a", 0.8, 3), ("b", 0.78, 3), ("c", 0.6, 3), ("d", 0.7, 2))
    }
    classes = np.ones(6, bool)
    intervals, replicates = st.bootstrap_table(methods, classes, ["mean", 0, 2], n_boot=300, rng_seed=5)
    for name, seeds in methods.items():
        assert intervals[name] == st.hierarchical_bootstrap_cis(seeds, classes, ["mean", 0, 2], 300, 0.95, 5)
    joint, _ = st.table_replicates({k: methods[k] for k in "abc"}, classes, n_boot=300, rng_seed=5)
    for name in "abc":  # same seeds: the per-row replicates are the joint ones
        np.testing.assert_allclose(replicates[name], joint[name])
    others = {k: methods[k] for k in "bcd"}
    batched = st.permutation_p_values(methods["a"], others, classes, n_permutations=300, rng_seed=5)
    for name, seeds in others.items():
        assert batched[name] == st.paired_comparison(methods["a"], seeds, classes, 1, 300, 0.95, 5).p_value


def test_csv_carries_intervals_rank_intervals_and_p_values(board):
    import csv
    import io

    from mmbench.leaderboard.render_text import render_csv

    lines = list(csv.DictReader(io.StringIO(render_csv(board))))
    mean = {line["label"]: line for line in lines if line["column"] == "mean"}
    assert float(mean["gamma"]["ci_low"]) <= float(mean["gamma"]["mean"]) <= float(mean["gamma"]["ci_high"])
    assert (mean["alpha"]["rank_low"], mean["alpha"]["rank_high"]) == ("1", "2")
    assert float(mean["gamma"]["p_vs_best"]) < 0.05
    assert float(mean["gamma"]["delta_vs_best_low"]) <= float(mean["gamma"]["delta_vs_best_high"]) < 0
    worst = next(line for line in lines if line["column"] == "worst")
    assert worst["ci_low"] == worst["ci_high"] == ""


def test_the_minority_table_s_primary_interval_uses_the_minority_classes(tmp_path):
    rng = np.random.default_rng(11)
    base, truth = template("minority"), ground_truth(12, rng)
    for method, quality in (("alpha", 0.8), ("gamma", 0.5)):
        for seed in range(3):
            write(
                tmp_path,
                f"{method}-{seed}",
                schema2_record(base, method=method, seed=seed, quality=quality, truth=truth, rng=rng),
            )
    (table,) = build_board(*collect_records([tmp_path]), n_boot=N_BOOT)["tables"]
    assert table["primary"] == "minority mean" and table["statistics"]["available"]
    for row in table["rows"]:
        minority, mean = row["values"]["minority mean"], row["values"]["mean"]
        assert minority["ci"][0] <= minority["mean"] <= minority["ci"][1]
        assert minority["ci"] != mean["ci"]  # two classes of six: another statistic, another interval
    assert [row["label"] for row in table["rows"]] == ["alpha", "gamma"] and table["rows"][1]["tied_with_best"] is False


def test_a_block_re_scored_by_another_protocol_counts_once_even_with_rounding_differences():
    """`minority` re-evaluates last1's checkpoints: its scenario means can differ from last1's by a few
    pixels' rounding (about 1e-6 mIoU). Such a block is the same block; a real difference is not."""
    from mmbench.leaderboard.across_tables import across_tables

    def table(protocol: str, values: dict[str, list[float]], seeds=None, label_variant="full") -> dict:
        scenarios = ["optical", "dsm"]
        rows = [
            {
                "label": label,
                "seeds": (seeds or {}).get(label, [0, 1, 2]),
                "values": {f"scenario:{s}": {"mean": v} for s, v in zip(scenarios, means, strict=True)},
            }
            for label, means in values.items()
        ]
        return {
            "id": f"synthetic/{protocol}",
            "dataset": {"name": "synthetic", "fingerprint": "sha256:x"},
            "protocol": {"name": protocol, "version": 1},
            "settings": {"part": "test", "label_variant": label_variant, "threshold": protocol},
            "scenarios": scenarios,
            "primary": "mean",
            "rows": rows,
        }

    last1 = {"a": [0.70, 0.60], "b": [0.65, 0.62], "c": [0.50, 0.40], "d": [0.55, 0.45]}
    rescored = {label: [v + 4e-7 * (label == "b") for v in means] for label, means in last1.items()}
    changed = {label: [v + 0.01 * (label == "c") for v in means] for label, means in last1.items()}
    section = across_tables([table("last1", last1), table("minority", rescored)])
    assert section["friedman"]["n_blocks"] == 2 and section["duplicate_blocks"] == 2
    section = across_tables([table("last1", last1), table("other", changed)])
    assert section["friedman"]["n_blocks"] == 4 and section["duplicate_blocks"] == 0
    # the same cell when one table lacks a method (d not yet evaluated there) or has another seed of it
    fewer = {label: means for label, means in last1.items() if label != "d"}
    section = across_tables([table("last1", last1), table("minority", fewer)])
    assert section["friedman"]["n_blocks"] == 2 and section["methods"] == ["a", "b", "c", "d"]
    more_seeds = {**last1, "d": [0.60, 0.50]}
    section = across_tables([table("last1", last1, {"d": [0, 1]}), table("minority", more_seeds)])
    assert section["friedman"]["n_blocks"] == 2 and section["duplicate_blocks"] == 2
    # other scoring (eroded labels) is another cell, even with equal numbers
    section = across_tables([table("last1", last1), table("eroded", last1, label_variant="eroded")])
    assert section["friedman"]["n_blocks"] == 4
