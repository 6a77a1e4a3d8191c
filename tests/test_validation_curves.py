"""Training budgets and validation curves on the board: how many steps each row trained, which step each
seed's checkpoint was selected at, and the curves behind that choice (Markdown and HTML), drawn only for
the training runs' own table."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from board_records import ground_truth, schema2_record, template, write

from mmbench.leaderboard.board import build_board
from mmbench.leaderboard.budget import FINAL_STEP, final_step_flag, late_gain
from mmbench.leaderboard.collect import collect_records
from mmbench.leaderboard.curves_svg import mean_curve, validation_curves_chart
from mmbench.leaderboard.render_html import render_html
from mmbench.leaderboard.render_text import render_markdown

SVG = "{http://www.w3.org/2000/svg}"
# per method: the validation curve's scores at steps 500..3000 for seeds 0, 1, 2 (seed 1 lacks step 1500)
CURVES = {
    "rising": [
        [0.40, 0.45, 0.50, 0.55, 0.58, 0.60],
        [0.41, 0.46, None, 0.56, 0.59, 0.61],
        [0.39, 0.44, 0.49, 0.54, 0.57, 0.62],
    ],
    "peaked": [
        [0.50, 0.60, 0.66, 0.65, 0.64, 0.63],
        [0.52, 0.61, None, 0.67, 0.64, 0.62],
        [0.51, 0.62, 0.65, 0.64, 0.66, 0.63],
    ],
}
STEPS = [500, 1000, 1500, 2000, 2500, 3000]


def _records(root: Path) -> None:
    rng = np.random.default_rng(5)
    truth = ground_truth(6, rng)
    for protocol in ("last1", "minority"):
        base = template(protocol)
        for method, seeds in CURVES.items():
            for seed, scores in enumerate(seeds):
                curve = [{"step": s, "score": v} for s, v in zip(STEPS, scores, strict=True) if v is not None]
                best = max(curve, key=lambda point: point["score"])
                record = schema2_record(
                    base,
                    method=method,
                    seed=seed,
                    quality=0.7 if method == "rising" else 0.8,
                    truth=truth,
                    rng=rng,
                    selected_step=best["step"],
                    total_steps=3000,
                )
                record["method"]["checkpoint"]["validation_curve"] = curve
                if protocol != "last1":  # an evaluation of the trained checkpoint: no training of its own
                    record["timing"].pop("train_s", None)
                    record["timing"].pop("steps_per_s", None)
                write(root, f"{protocol}-{method}-{seed}", record)


def _board(tmp_path: Path) -> dict:
    _records(tmp_path)
    records, skipped = collect_records([tmp_path])
    return build_board(records, skipped, n_boot=50)


def test_rows_carry_steps_selected_steps_and_only_training_curves(tmp_path):
    board = _board(tmp_path)
    tables = {table["protocol"]["name"]: table for table in board["tables"]}
    rows = {row["method"]: row for row in tables["last1"]["rows"]}
    assert rows["rising"]["budget"]["steps"] == 3000
    assert rows["rising"]["budget"]["selected_steps"] == [3000, 3000, 3000]
    assert rows["peaked"]["budget"]["selected_steps"] == [1500, 2000, 2500]
    assert [curve["seed"] for curve in rows["peaked"]["validation_curves"]] == [0, 1, 2]
    assert rows["peaked"]["validation_curves"][1]["points"][2] == [2000, 0.67]  # seed 1 skipped step 1500
    # rising: selected at the last step, validation +5 / +5 / +8 points since step 2000 (the last at <= 3/4)
    assert "still improving at the final step: validation +6.0 points over the last quarter" in "; ".join(
        rows["rising"]["flags"]
    )
    assert not any("final step" in flag for flag in rows["peaked"]["flags"])
    minority = tables["minority"]["rows"]
    assert all(row["validation_curves"] == [] for row in minority)  # evaluation records repeat the curve
    assert all(row["budget"]["selected_steps"] for row in minority)  # but still say what they evaluated


def test_markdown_shows_the_budget_beside_the_numbers(tmp_path):
    text = render_markdown(_board(tmp_path))
    header = next(line for line in text.splitlines() if line.startswith("| rank |"))
    assert header.endswith("| train s | steps | selected at | reproducibility |")
    peaked = next(line for line in text.splitlines() if line.startswith("| ") and "| peaked |" in line)
    assert "| 3000 | 1500, 2000, 2500 |" in peaked


def test_the_html_draws_each_method_mean_seeds_and_selected_checkpoints(tmp_path):
    board = _board(tmp_path)
    page = render_html(board)
    ET.fromstring(page)
    assert page.count('<svg class="validation-curves"') == 1  # the last1 table only
    start = page.index('<svg class="validation-curves"')
    svg = ET.fromstring(page[start : page.index("</svg>", start) + 6])
    series = {group.get("data-series"): group for group in svg.iter("g") if group.get("class") == "series"}
    assert set(series) == {"rising", "peaked"}
    for group in series.values():
        lines = [line.get("class") for line in group.iter("polyline")]
        assert lines.count("seed") == 3 and lines.count("mean") == 1
        assert len([c for c in group.iter("circle") if c.get("class") == "selected"]) == 3
    rings = [c.find("title").text for c in series["peaked"].iter("circle")]
    assert rings == [
        "peaked, seed 0: selected at step 1500 (66.0)",
        "peaked, seed 1: selected at step 2000 (67.0)",
        "peaked, seed 2: selected at step 2500 (66.0)",
    ]
    # the mean joins only the steps every seed validated at: five points, not six
    mean = next(line for line in series["peaked"].iter("polyline") if line.get("class") == "mean")
    assert len(mean.get("points").split()) == 5


def test_mean_curve_uses_common_steps_and_the_chart_is_empty_without_points():
    assert mean_curve([[(1, 10.0), (2, 20.0), (3, 30.0)], [(1, 20.0), (3, 50.0)]]) == [(1, 15.0), (3, 40.0)]
    assert mean_curve([]) == []
    assert validation_curves_chart([("m", [{"seed": 0, "points": []}])], title="t") == ""
    one = validation_curves_chart(
        [("a<b>", [{"seed": 0, "selected_step": 2, "points": [[1, 0.5], [2, 0.6]]}])], title="t&"
    )
    root = ET.fromstring(one)
    assert root.find("title").text == "t&"
    assert any(text.text == "a<b> (1)" for text in root.iter("text"))


def _trained(selected: int, curve: list[tuple[int, float]], total: int = 3000) -> dict:
    return {
        "method": {
            "checkpoint": {
                "selected_step": selected,
                "total_steps": total,
                "validation_curve": [{"step": step, "score": score} for step, score in curve],
            }
        }
    }


def test_the_final_step_is_flagged_only_while_validation_still_climbs():
    flat = _trained(3000, [(2000, 0.700), (2250, 0.704), (2500, 0.702), (2750, 0.706), (3000, 0.708)])
    climbing = _trained(3000, [(2000, 0.60), (2250, 0.64), (3000, 0.66)])
    peaked = _trained(2500, [(2000, 0.70), (2500, 0.72), (3000, 0.71)])
    assert late_gain(flat) == pytest.approx(0.4) and late_gain(climbing) == pytest.approx(2.0)
    assert final_step_flag([flat, peaked]) is None  # converged under the decaying schedule: no flag
    assert final_step_flag([climbing, peaked]) == (
        "still improving at the final step: validation +2.0 points over the last quarter of training "
        "(1 of 2 records) (may be under-trained)"
    )
    # no curve reaching back to 3/4 of the steps: the plain flag, as for schema-1 records
    short = _trained(3000, [(3000, 0.7)])
    assert final_step_flag([short]) == FINAL_STEP
    assert late_gain(_trained(3000, [(2500, 0.6), (3000, 0.7)])) is None
