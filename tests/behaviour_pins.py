"""What tests/test_behaviour_pins.py and its generator share: the pinned store and how losses are read."""

from __future__ import annotations

import json
from pathlib import Path

from mmbench.cli.main import main
from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic

# 60 steps of a 4-wide unimodal model: small enough to commit (0.8 MB), trained enough to predict every class.
TINY_UNIMODAL = (
    "method.width=4",
    "method.fpn_channels=8",
    "method.decoder_channels=8",
    "method.train.iterations=60",
    "method.train.val_every=60",
    "method.train.warmup_iterations=5",
    "method.train.lr=0.01",
    "method.train.log_every=20",
)


def pinned_store(path: Path) -> Path:
    return write_synthetic(path, SyntheticConfig(tiles=6, size=96))


def smoke_losses(method: str, store: Path, out: Path) -> list[dict[str, float]]:
    """Every logged training term of a 3-step smoke run, step by step."""
    code = main(["run", method, "--protocol", "last1", "--dataset", str(store), "--smoke", "--out", str(out)])
    assert code == 0, f"smoke run of {method} failed"
    (log,) = out.rglob("train_log.jsonl")
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return [
        {k: v for k, v in row.items() if k not in ("time", "steps_per_s", "event")}
        for row in rows
        if row["event"] == "train"
    ]
