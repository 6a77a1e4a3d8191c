"""The training engine behind `mmbench run` for `SegmentationMethod` plugins: set-up and the run's course.

Build the model and its update rule, train on the dataset's training part, select the checkpoint on the
validation part under the run's protocol (never on test), evaluate the best checkpoint on the protocol's
part, return the outcome. Each concern has its own module in this package: settings, batches (the data
side), losses, optimisation, update (plain or adversarial), resume (checkpoints and RNG state), loop,
validation, train_log. The names tests and `mmbench.runs.execution` import stay importable from here.
"""

from __future__ import annotations

from typing import Any

import torch

from mmbench.atomic import existing_ancestor, free_bytes, human_bytes
from mmbench.context import DatasetFacts, RunContext, RunOptions, RunOutcome
from mmbench.engine.batches import micro_batches, training_data
from mmbench.engine.checkpoint import WriteFailed
from mmbench.engine.loop import Interruption, run_steps
from mmbench.engine.losses import TrainingDiverged, TrainingLoss
from mmbench.engine.optimisation import amp_dtype, lr_factor
from mmbench.engine.resume import TrainingCheckpoints, TrainState
from mmbench.engine.settings import adversary_settings, train_settings
from mmbench.engine.speed import check_compile, compile_model, lay_out_model
from mmbench.engine.train_log import TrainLog
from mmbench.engine.train_time import TrainClock
from mmbench.engine.update import build_update_rule, frozen_running_stats
from mmbench.engine.validation import SELECTION, Validator
from mmbench.errors import ConfigError
from mmbench.evaluation.engine import evaluate
from mmbench.evaluation.protocols import load_protocol
from mmbench.evaluation.units import plan_units
from mmbench.method import SegmentationMethod, build_method, count_parameters, parameter_budget
from mmbench.records.fingerprint import file_sha256, weights_sha256
from mmbench.runtime.distributed import DistContext, init_distributed

__all__ = [
    "Trainer",
    "TrainingDiverged",
    "TrainingExecutor",
    "adversary_settings",
    "frozen_running_stats",
    "is_trainable",
    "lr_factor",
    "train_settings",
]


class Trainer:
    """One training run of a `SegmentationMethod`, from an empty run directory (or a resumable one) to a
    `RunOutcome`."""

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.plan = context.plan
        self.options: RunOptions = context.options
        self.smoke = self.options.smoke
        self.device = context.device
        self.dist: DistContext = init_distributed(self.device)
        if self.dist.enabled and self.device.startswith("cuda"):
            self.device = f"cuda:{self.dist.local_rank}"
        self.method_config = dict(self.plan.config.section("method"))
        self.settings = train_settings(self.method_config, self.smoke)
        self.run_dir = context.run_dir
        self.seed = self.plan.seed

    def _build(self) -> None:
        """Model, training data, update rule, loss (DDP-wrapped when distributed) and checkpoints."""
        self.facts = self._dataset_facts()
        self.protocol = load_protocol(self.plan)
        # A window that does not fit the evaluation unit fails here (exit 2), not after `val_every` steps.
        plan_units(self.facts.path, self.protocol.config, "val", self.settings["val_tiles"])
        plan_units(self.facts.path, self.protocol.config, self.protocol.config["part"])
        modalities = self.protocol.select_modalities(self.facts.modality_names)
        channels = self.facts.channels(modalities)
        self.channels = channels
        if len(channels) < self.plan.method.min_modalities:
            raise ConfigError(
                f"method {self.plan.method.name!r} needs at least {self.plan.method.min_modalities} "
                f"modalities; the dataset gives {len(channels)}"
            )
        torch.manual_seed(self.seed)
        self.model = build_method(self.plan.method, channels, len(self.facts.classes), self.method_config)
        self.model.to(self.device)
        lay_out_model(self.model, self.settings)
        if self.plan.config.section("run").get("compile", False):
            check_compile(self.device)
            compile_model(self.model)
        self.train_data = training_data(
            self.facts.path,
            split=self.protocol.config["split"],
            label_variant=self.protocol.config["label_variant"],
            modalities=list(channels),
            settings=self.settings,
            seed=self.seed,
        )
        amp = amp_dtype(self.device, self.settings["amp"])
        self.update = build_update_rule(self.model, self.settings, self.plan.method.name, amp=amp)
        self.loss = TrainingLoss(
            self.model,
            dist=self.dist,
            device=self.device,
            amp_dtype=amp,
            seed=self.seed,
            ignore_index=self.facts.ignore_index,
            num_classes=len(self.facts.classes),
            last_checkpoint=self.run_dir / "last.ckpt",
            sync_batch_norm=bool(self.settings.get("sync_batch_norm", False)),
        )
        self.checkpoints = TrainingCheckpoints(
            self.run_dir,
            method={"name": self.plan.method.name, "version": self.plan.method.version},
            config=self.plan.config.data,
            dataset=self.facts.checkpoint_entry(modalities),
            model=self.model,
            update=self.update,
            dist=self.dist,
            protocol={"name": self.plan.protocol.name, "version": self.plan.protocol.version},
        )

    def _check_disk_space(self) -> None:
        """Refuse, before the first step, a run folder whose filesystem clearly cannot hold the run's two
        checkpoints (`last.ckpt`, `best.ckpt`; what is already there is replaced), so a full disk is found in
        seconds rather than at the first `val_every` steps."""
        if not self.dist.is_main:
            return
        per_checkpoint = estimate_checkpoint_bytes(self.model)
        existing = sum(
            (self.run_dir / name).stat().st_size
            for name in ("last.ckpt", "best.ckpt")
            if (self.run_dir / name).is_file()
        )
        needed = 2 * per_checkpoint - existing
        free = free_bytes(self.run_dir)
        if needed > free:
            raise WriteFailed(
                f"not enough disk space under {existing_ancestor(self.run_dir)} for the run's checkpoints: about "
                f"{human_bytes(needed)} needed (two of about {human_bytes(per_checkpoint)}), {human_bytes(free)} "
                "free; free space there or give another --out"
            )

    def _dataset_facts(self) -> DatasetFacts:
        """The facts the run read when it started (`RunContext.dataset_facts`)."""
        facts = self.context.dataset_facts
        if facts is not None:
            return facts
        if self.plan.dataset.path is None:
            raise ConfigError(f"dataset {self.plan.dataset.name!r} has no tile store to train on")
        raise ValueError(
            "the run context carries no dataset facts: start the run with "
            "mmbench.runs.execution.start_run(plan, dataset_facts=True)"
        )

    def execute(self) -> RunOutcome:
        self._build()
        self._check_disk_space()
        state = TrainState()
        resume_from = self.options.resume_from
        if resume_from is not None:
            # the checkpoint `--resume` chose (mmbench/runs/resume_search.py), or a run folder's last.ckpt
            checkpoint = resume_from if resume_from.suffix == ".ckpt" else resume_from / "last.ckpt"
            state = self.checkpoints.restore(checkpoint)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        log = TrainLog(
            self.run_dir / "train_log.jsonl",
            enabled=self.dist.is_main,
            resume_step=state.step if resume_from is not None else None,
        )
        validate = Validator(
            self.model,
            self.facts,
            self.protocol,
            device=self.device,
            dist=self.dist,
            val_tiles=self.settings["val_tiles"],
            log=log,
            checkpoints=self.checkpoints,
        )
        start_step = state.step
        clock = TrainClock(self.run_dir, resume_step=start_step if resume_from is not None else None)
        self.checkpoints.clock = clock if self.dist.is_main else None
        with Interruption() as interruption:
            self.model.train()
            batches = micro_batches(
                self.train_data,
                seed=self.seed,
                settings=self.settings,
                start_step=state.step,
                dist=self.dist,
                device=self.device,
            )
            state = run_steps(
                state,
                name=self.plan.method.name,
                settings=self.settings,
                update=self.update,
                loss=self.loss,
                batches=batches,
                validate=validate,
                checkpoints=self.checkpoints,
                log=log,
                dist=self.dist,
                interruption=interruption,
            )
        train_seconds, total_train_seconds = clock.segment(), clock.total()
        if interruption.requested:
            self.checkpoints.save("last.ckpt", state)
            self.dist.barrier()
            raise interruption.stop(state.step)

        # Evaluate the checkpoint chosen on validation (the last one if validation never ran).
        best = self.run_dir / ("best.ckpt" if state.best_step is not None else "last.ckpt")
        selected_step = state.best_step if state.best_step is not None else state.step
        training = {
            "total_steps": state.step,
            "selected_step": selected_step,
            "validation_curve": [dict(point) for point in state.curve],
        }
        if self.dist.is_main:  # before its sha256 is taken: `mmbench eval` of this file copies these facts
            self.checkpoints.annotate(best, "training", training)
        self.dist.barrier()
        selected_weights = self.checkpoints.load_weights(best)
        limit = 2 if self.smoke else None
        result = evaluate(self.model, self.facts, self.protocol, device=self.device, limit_tiles=limit, dist=self.dist)
        log.write({"event": "test", "checkpoint": best.name, "aggregate": result.aggregate})
        return RunOutcome(
            scenarios=result.scenarios,
            aggregate=result.aggregate,
            params=count_parameters(self.model),
            budget=parameter_budget(self.model, self.channels, result.scenarios),
            protocol_settings=result.settings,
            timing={
                # every segment's training; None when a resume could not tell the earlier ones' (train_time.py)
                "train_s": None if total_train_seconds is None else round(total_train_seconds, 3),
                "eval_s": round(result.seconds, 3),
                "steps_per_s": round((state.step - start_step) / max(train_seconds, 1e-9), 4),  # this segment's
                **(
                    {"resumed_at_step": start_step, "segment_train_s": round(train_seconds, 3)}
                    if resume_from is not None
                    else {}
                ),
            },
            smoke=self.smoke,
            checkpoint={
                "path": str(best.resolve()),
                "sha256": file_sha256(best),
                "weights_sha256": weights_sha256(selected_weights),
                "selected_step": selected_step,
                "total_steps": training["total_steps"],
                "validation_curve": training["validation_curve"],
                "selection": SELECTION,
                "best_val_score": state.best_score,
                "world_size": self.dist.world_size,
                "effective_batch_size": self.settings["batch_size"] * self.settings["accumulate"],
            },
        )


def estimate_checkpoint_bytes(model: torch.nn.Module) -> int:
    """About the size of one training checkpoint: the model's state, AdamW's two moments per trainable
    parameter (the optimiser state is empty until the first step, so it is estimated, not measured) and the
    RNG states and container overhead."""
    state = sum(t.numel() * t.element_size() for t in model.state_dict().values() if isinstance(t, torch.Tensor))
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return state + 2 * trainable + 16_000


class TrainingExecutor:
    """Adapts `Trainer` to the executor protocol; the run reads the dataset's facts for it at start."""

    needs_dataset_facts = True

    def execute(self, context: RunContext) -> RunOutcome:
        return Trainer(context).execute()


def is_trainable(implementation: Any) -> bool:
    return isinstance(implementation, type) and issubclass(implementation, SegmentationMethod)
