"""A minimal valid run record, shared by the tests of records and metrics."""

from __future__ import annotations

from mmbench.records import SCHEMA_VERSION

SCENARIO = {
    "name": "optical only",
    "available": ["optical"],
    "metrics": {
        "miou": 0.5,
        "mf1": 0.6,
        "oa": 0.7,
        "kappa": None,
        "per_class": {"car": {"iou": None, "f1": 0.1, "precision": 0.2, "recall": 0.3}},
    },
    "confusion_matrix": [[3, 1], [0, 2]],
}


def minimal_record() -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": "20261121T000000Z-s0-abcdef",
        "created": "2026-11-21T00:00:00+00:00",
        "command": "mmbench run m --protocol p",
        "method": {"name": "m", "version": "1", "params": None},
        "protocol": {"name": "p", "version": "1"},
        "dataset": {"name": "d", "path": None, "fingerprint": None},
        "seed": 0,
        "config": {"run": {}, "method": {}, "protocol": {}, "dataset": {}},
        "env": {
            "python": "3.11",
            "torch": "2.13.0",
            "triton": None,
            "kornia": None,
            "h5py": None,
            "cuda": None,
            "device_name": "cpu",
            "cpu": "x",
            "os": "Linux",
        },
        "git": {"commit": None, "dirty": None},
        "scenarios": [SCENARIO],
        "aggregate": {},
        "timing": {"started": "2026-11-21T00:00:00+00:00", "finished": "2026-11-21T00:00:01+00:00", "total_s": 1.0},
    }
