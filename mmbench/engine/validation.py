"""Checkpoint selection on the validation part, never on test: evaluate under the run's protocol on the first
`val_tiles` validation tiles, score = mean mIoU over its scenarios, and keep `best.ckpt` when the score improves.
Every score is kept in the training state (`TrainState.curve`, saved in checkpoints, so a resumed run keeps the
scores before its interruption) and ends up in the record (`method.checkpoint.validation_curve`), so boards can
see whether the selected checkpoint is simply the last one.
"""

from __future__ import annotations

import numpy as np

from mmbench.context import DatasetFacts
from mmbench.engine.resume import TrainingCheckpoints, TrainState
from mmbench.engine.train_log import TrainLog
from mmbench.evaluation.engine import evaluate
from mmbench.method import SegmentationMethod
from mmbench.protocol import Protocol
from mmbench.runtime.distributed import DistContext

SELECTION = "best mean mIoU over the protocol's scenarios on the validation part"


class Validator:
    """Validates the model in place (eval mode for the evaluation, training mode again after)."""

    def __init__(
        self,
        model: SegmentationMethod,
        facts: DatasetFacts,
        protocol: Protocol,
        *,
        device: str,
        dist: DistContext,
        val_tiles: int | None,
        log: TrainLog,
        checkpoints: TrainingCheckpoints,
    ) -> None:
        self.model, self.facts, self.protocol = model, facts, protocol
        self.device, self.dist, self.val_tiles = device, dist, val_tiles
        self.log, self.checkpoints = log, checkpoints

    def __call__(self, state: TrainState) -> None:
        """Score the model at `state.step`; on a new best, record it in `state` and write `best.ckpt`.

        Under DDP every rank scores its shard with rank 0's running statistics (`broadcast_buffers`): the
        score is then that of the model `best.ckpt` holds, not of a mix of the ranks' statistics."""
        self.dist.broadcast_buffers(self.model)
        self.model.eval()
        result = evaluate(
            self.model,
            self.facts,
            self.protocol,
            device=self.device,
            part="val",
            limit_tiles=self.val_tiles,
            show_progress=False,
            dist=self.dist,
        )
        self.model.train()
        values = [entry["metrics"]["miou"] for entry in result.scenarios if entry["metrics"]["miou"] is not None]
        score = float(np.mean(values)) if values else None
        self.log.write(
            {
                "event": "val",
                "step": state.step,
                "score": score,
                "per_scenario_miou": {e["name"]: e["metrics"]["miou"] for e in result.scenarios},
            }
        )
        state.curve.append({"step": state.step, "score": score})
        if score is not None and (state.best_score is None or score > state.best_score):
            state.best_score, state.best_step = score, state.step
            self.checkpoints.save("best.ckpt", state)
