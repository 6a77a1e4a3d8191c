"""The training engine behind `mmbench run` for `SegmentationMethod` plugins.

Train on the dataset's training part, select the checkpoint on the validation part under the run's
protocol (never on test), evaluate the best checkpoint on the protocol's part, write the record.

Reproducibility is built into the data path: the batch of step s is a pure function of (seed, s)
(which tiles, which crops, which augmentations, which modalities each sample gets), so a run resumed
from a checkpoint replays exactly the steps an uninterrupted run would have taken. Checkpoints hold
the model, optimizer, scheduler, step, best validation score and every RNG state, and are written
atomically; Ctrl-C saves one and stops cleanly.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmbench.context import RunContext, RunOutcome
from mmbench.engine.checkpoint import load_checkpoint, save_checkpoint
from mmbench.errors import ConfigError, UserError
from mmbench.method import SegmentationMethod, TrainStep, build_method, count_parameters
from mmbench.runtime.distributed import DistContext, init_distributed

TRAIN_KEYS = (
    "iterations",
    "batch_size",
    "crop_size",
    "lr",
    "weight_decay",
    "betas",
    "warmup_iterations",
    "warmup_start_factor",
    "poly_power",
    "min_lr",
    "grad_clip",
    "accumulate",
    "amp",
    "val_every",
    "val_tiles",
    "num_workers",
    "augment",
    "log_every",
)
ADVERSARY_KEYS = ("lr", "betas", "weight_decay")
SMOKE = {"iterations": 3, "val_every": 3, "val_tiles": 2, "log_every": 1}


class TrainingDiverged(UserError):
    """A loss became NaN/inf: the message names the step and the loss term."""


@dataclass
class TrainState:
    step: int = 0
    best_score: float | None = None
    best_step: int | None = None


def train_settings(method_config: Mapping[str, Any], smoke: bool) -> dict[str, Any]:
    settings = method_config.get("train")
    if not isinstance(settings, Mapping):
        raise ConfigError(
            "the method's config has no 'train' section; training methods must define one "
            "(see methods/stars/stars.yaml)"
        )
    missing = [key for key in TRAIN_KEYS if key not in settings]
    if missing:
        raise ConfigError(f"method.train lacks {missing[0]!r}; every key of {', '.join(TRAIN_KEYS)} is needed")
    settings = dict(settings)
    if smoke:
        settings.update(SMOKE)
    if settings["amp"] not in ("off", "bf16", "fp16"):
        raise ConfigError(f"method.train.amp={settings['amp']!r}: use off, bf16 or fp16")
    for key in ("iterations", "batch_size", "crop_size", "accumulate", "val_every", "log_every"):
        if settings[key] < 1:
            raise ConfigError(f"method.train.{key}={settings[key]} must be at least 1")
    return settings


def lr_factor(step: int, settings: Mapping[str, Any]) -> float:
    """Linear warm-up from `warmup_start_factor`, then polynomial decay to `min_lr`/`lr` at the end."""
    warmup, total = settings["warmup_iterations"], settings["iterations"]
    floor = settings["min_lr"] / settings["lr"] if settings["lr"] else 0.0
    if step < warmup:
        start = settings["warmup_start_factor"]
        return start + (1 - start) * step / max(warmup, 1)
    progress = (step - warmup) / max(total - warmup, 1)
    return floor + (1 - floor) * (1 - min(progress, 1.0)) ** settings["poly_power"]


def adversary_settings(settings: Mapping[str, Any], method: str) -> dict[str, Any]:
    """`train.adversary` of a method that trains discriminators: their optimizer (same schedule shape)."""
    section = settings.get("adversary")
    if not isinstance(section, Mapping):
        raise ConfigError(
            f"method {method!r} trains a discriminator: its config needs a 'train.adversary' section "
            f"with {', '.join(ADVERSARY_KEYS)} (see methods/imputation/cgan.yaml)"
        )
    missing = [key for key in ADVERSARY_KEYS if key not in section]
    if missing:
        raise ConfigError(
            f"method.train.adversary lacks {missing[0]!r}; every key of {', '.join(ADVERSARY_KEYS)} is needed"
        )
    if not section["lr"] > 0:
        raise ConfigError(f"method.train.adversary.lr={section['lr']} must be positive")
    return dict(section)


@dataclass
class _Optimisation:
    """One optimiser with its schedule, loss scaler and parameters; GAN methods have two."""

    phase: str
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    parameters: list[torch.nn.Parameter]

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


@contextmanager
def frozen_running_stats(model: torch.nn.Module, exclude: Sequence[torch.nn.Module] = ()) -> Iterator[None]:
    """Normalisation layers of `model` (outside `exclude`) keep their running statistics through the block.

    The adversary phase runs the generator once more in training mode; its batch statistics must not
    count twice. Buffers are restored exactly (copy back), not merely left unupdated.
    """
    excluded = {id(module) for root in exclude for module in root.modules()}
    saved = []
    for module in model.modules():
        if id(module) in excluded or not getattr(module, "track_running_stats", False):
            continue
        buffers = [getattr(module, name) for name in ("running_mean", "running_var", "num_batches_tracked")]
        saved.extend((buffer, buffer.clone()) for buffer in buffers if isinstance(buffer, torch.Tensor))
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


class Trainer:
    """One training run; `execute` is the pipeline's executor for SegmentationMethod plugins."""

    def __init__(self, context: RunContext, options: Mapping[str, Any]) -> None:
        self.context = context
        self.plan = context.plan
        self.options = dict(options)
        self.smoke = bool(self.options.get("smoke"))
        self.device = context.device
        self.dist: DistContext = init_distributed(self.device)
        if self.dist.enabled and self.device.startswith("cuda"):
            self.device = f"cuda:{self.dist.local_rank}"
        self.method_config = dict(self.plan.config.section("method"))
        self.settings = train_settings(self.method_config, self.smoke)
        self.run_dir = context.run_dir
        self.seed = self.plan.seed
        self.interrupted = False

    # -- set-up --------------------------------------------------------------------------------
    def _build(self) -> None:
        from mmbench.data.augment import JointAugment
        from mmbench.data.loader import TileDataset
        from mmbench.data.store_reader import TileStore
        from mmbench.evaluation.protocols import load_protocol

        store_path = self.plan.dataset.path
        if store_path is None:
            raise ConfigError(f"dataset {self.plan.dataset.name!r} has no tile store to train on")
        self.store_path = store_path
        self.protocol = load_protocol(self.plan)
        with TileStore(store_path) as store:
            self.classes = list(store.classes)
            self.ignore_index = store.ignore_index
            modalities = self.protocol.select_modalities(store.modality_names)
            self.channels = {name: store.modalities[name].channels for name in modalities}
            self.fingerprint = self.plan.dataset.fingerprint()
        if len(self.channels) < self.plan.method.min_modalities:
            raise ConfigError(
                f"method {self.plan.method.name!r} needs at least {self.plan.method.min_modalities} "
                f"modalities; the dataset gives {len(self.channels)}"
            )
        torch.manual_seed(self.seed)
        self.model = build_method(self.plan.method, self.channels, len(self.classes), self.method_config)
        self.model.to(self.device)
        self.train_data = TileDataset(
            store_path,
            split=self.protocol.config["split"],
            part="train",
            modalities=list(self.channels),
            label_variant=self.protocol.config["label_variant"],
            crop_size=self.settings["crop_size"],
            augment=JointAugment() if self.settings["augment"] else None,
            seed=self.seed,
        )
        if len(self.train_data) == 0:
            raise ConfigError(f"{store_path}: the training part of split {self.protocol.config['split']!r} is empty")
        adversary = self.model.adversary_parameters()
        held_out = {id(parameter) for parameter in adversary}
        main = [
            (name, parameter)
            for name, parameter in self.model.named_parameters()
            if parameter.requires_grad and id(parameter) not in held_out
        ]
        self.main = self._optimisation("main", main, self.settings)
        self.adversary: _Optimisation | None = None
        if adversary:
            section = adversary_settings(self.settings, self.plan.method.name)
            named = [
                (name, parameter) for name, parameter in self.model.named_parameters() if id(parameter) in held_out
            ]
            self.adversary = self._optimisation("adversary", named, {**self.settings, **section})
        # DDP must see the whole training computation in its forward: wrap the loss, not the network.
        self.wrapped: torch.nn.Module = _LossModule(self.model)
        if self.dist.enabled:
            device_ids = [self.dist.local_rank] if self.device.startswith("cuda") else None
            self.wrapped = torch.nn.parallel.DistributedDataParallel(
                self.wrapped, device_ids=device_ids, find_unused_parameters=True
            )

    def _optimisation(
        self, phase: str, named: list[tuple[str, torch.nn.Parameter]], settings: Mapping[str, Any]
    ) -> _Optimisation:
        """AdamW (no decay on norms and biases) with warm-up + poly schedule; `settings` gives lr/betas/decay."""
        decay, no_decay = [], []
        for name, parameter in named:
            (no_decay if parameter.ndim <= 1 or name.endswith(".bias") else decay).append(parameter)
        groups = [
            {"params": decay, "weight_decay": settings["weight_decay"]},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=settings["lr"], betas=tuple(settings["betas"]))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, self.settings))
        scaler = torch.amp.GradScaler("cuda", enabled=self._amp_dtype() is torch.float16)
        return _Optimisation(phase, optimizer, scheduler, scaler, [parameter for _, parameter in named])

    def _amp_dtype(self) -> torch.dtype | None:
        if not self.device.startswith("cuda") or self.settings["amp"] == "off":
            return None
        return torch.bfloat16 if self.settings["amp"] == "bf16" else torch.float16

    # -- checkpoints ---------------------------------------------------------------------------
    def _checkpoint_payload(self, state: TrainState) -> dict[str, Any]:
        rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        payload = {**self.main.state_dict(), "state": vars(state).copy(), "rng": _plain(rng)}
        if self.adversary is not None:
            payload["adversary"] = self.adversary.state_dict()
        return payload

    def _save(self, name: str, state: TrainState) -> Path | None:
        if not self.dist.is_main:
            return None
        path = self.run_dir / name
        try:
            save_checkpoint(
                path,
                method={"name": self.plan.method.name, "version": self.plan.method.version},
                config=self.plan.config.data,
                dataset={
                    "name": self.plan.dataset.name,
                    "fingerprint": self.fingerprint,
                    "classes": self.classes,
                    "modalities": self.channels,
                    "ignore_index": self.ignore_index,
                },
                model=self.model,
                extra=self._checkpoint_payload(state),
            )
        except OSError as exc:
            raise UserError(
                f"cannot write checkpoint {path} ({exc.strerror or exc}); free disk space and resume with "
                "--resume: the previous checkpoint is intact"
            ) from exc
        return path

    def _restore(self, path: Path) -> TrainState:
        payload = load_checkpoint(path)
        self.model.load_state_dict(payload["model"])
        self.main.load_state_dict(payload)
        if self.adversary is not None:
            if "adversary" not in payload:
                raise UserError(
                    f"{path} holds no discriminator optimizer state; it was not written by this method's "
                    "adversarial training: start a new run instead of --resume"
                )
            self.adversary.load_state_dict(payload["adversary"])
        rng = payload["rng"]
        random.setstate(_tuple(rng["python"]))
        np.random.set_state(_tuple(rng["numpy"]))
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        return TrainState(**payload["state"])

    # -- the loop ------------------------------------------------------------------------------
    def execute(self) -> RunOutcome:
        from mmbench.evaluation.engine import evaluate

        self._build()
        state = TrainState()
        resume_from = self.options.get("resume_from")
        if resume_from is not None:
            state = self._restore(Path(resume_from) / "last.ckpt")
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        log = _JsonLog(
            self.run_dir / "train_log.jsonl",
            enabled=self.dist.is_main,
            resume_step=state.step if resume_from is not None else None,
        )
        started, start_step = time.perf_counter(), state.step
        previous_handler = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._on_interrupt)
        try:
            state = self._loop(state, log)
        finally:
            signal.signal(signal.SIGINT, previous_handler)
        train_seconds = time.perf_counter() - started
        if self.interrupted:
            self._save("last.ckpt", state)
            self.dist.barrier()
            raise KeyboardInterrupt(f"interrupted at step {state.step}; continue with the same command and --resume")

        # Evaluate the checkpoint chosen on validation (the last one if validation never ran).
        best = self.run_dir / ("best.ckpt" if state.best_step is not None else "last.ckpt")
        self.dist.barrier()
        payload = load_checkpoint(best)
        self.model.load_state_dict(payload["model"])
        limit = 2 if self.smoke else None
        result = evaluate(
            self.model, self.store_path, self.protocol, device=self.device, limit_tiles=limit, dist=self.dist
        )
        log.write({"event": "test", "checkpoint": best.name, "aggregate": result.aggregate})
        from mmbench.records.fingerprint import file_sha256

        return RunOutcome(
            scenarios=result.scenarios,
            aggregate=result.aggregate,
            params=count_parameters(self.model),
            protocol_settings=result.settings,
            timing={
                "train_s": round(train_seconds, 3),
                "eval_s": round(result.seconds, 3),
                "steps_per_s": round((state.step - start_step) / max(train_seconds, 1e-9), 4),
            },
            smoke=self.smoke,
            checkpoint={
                "path": str(best.resolve()),
                "sha256": file_sha256(best),
                "selected_step": state.best_step,
                "selection": "best mean mIoU over the protocol's scenarios on the validation part",
                "best_val_score": state.best_score,
                "world_size": self.dist.world_size,
                "effective_batch_size": self.settings["batch_size"] * self.settings["accumulate"],
            },
        )

    def _on_interrupt(self, signum: int, frame: Any) -> None:
        self.interrupted = True

    def _loop(self, state: TrainState, log: _JsonLog) -> TrainState:
        from mmbench.progress import progress_bar

        settings = self.settings
        total = settings["iterations"]
        self.model.train()
        window_start, window_steps = time.perf_counter(), 0
        self._micro_batches = self._batches(state.step)
        with progress_bar(f"training {self.plan.method.name}", total=total) as advance:
            while state.step < total and not self.interrupted:
                terms = self._train_step(state.step)
                state.step += 1
                window_steps += 1
                if state.step % settings["log_every"] == 0 or state.step == total:
                    elapsed = time.perf_counter() - window_start
                    rate = window_steps / max(elapsed, 1e-9)
                    entry = {
                        "event": "train",
                        "step": state.step,
                        "lr": self.main.scheduler.get_last_lr()[0],
                        "steps_per_s": round(rate, 3),
                        **{k: round(v, 6) for k, v in terms.items()},
                    }
                    log.write(entry)
                    window_start, window_steps = time.perf_counter(), 0
                    if self.dist.is_main:
                        advance(
                            state.step,
                            description=f"training {self.plan.method.name} loss {terms['loss']:.4f} "
                            f"{rate * settings['batch_size']:.1f} samples/s",
                        )
                if state.step % settings["val_every"] == 0 or state.step == total:
                    self._validate(state, log)
                    self._save("last.ckpt", state)
                _inject_fault(state.step)
        return state

    def _train_step(self, step: int) -> dict[str, float]:
        """One optimiser step over `accumulate` micro-batches (each a pure function of (seed, step, micro)).

        With discriminators, the adversary is stepped first on the same micro-batches, then the rest.
        """
        batches = [next(self._micro_batches) for _ in range(self.settings["accumulate"])]
        adversary_terms: dict[str, float] = {}
        if self.adversary is not None:
            with frozen_running_stats(self.model, exclude=self.model.adversary_modules()):
                terms = self._optimise(step, batches, self.adversary)
            adversary_terms = {("adversary_loss" if name == "loss" else name): value for name, value in terms.items()}
        return {**self._optimise(step, batches, self.main), **adversary_terms}

    def _optimise(self, step: int, batches: list[dict[str, Any]], target: _Optimisation) -> dict[str, float]:
        settings = self.settings
        accumulate = len(batches)
        target.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for micro, batch in enumerate(batches):
            amp_dtype = self._amp_dtype()
            autocast = torch.autocast("cuda", dtype=amp_dtype) if amp_dtype is not None else nullcontext()
            sync = nullcontext()
            if self.dist.enabled and micro < accumulate - 1:
                sync = self.wrapped.no_sync()
            info = TrainStep(
                step=step, micro=micro, seed=self.seed, ignore_index=self.ignore_index, num_classes=len(self.classes)
            )
            with sync, autocast:
                terms = self.wrapped(batch, info, target.phase)
            for name, value in terms.items():
                if not bool(torch.isfinite(value.detach())):
                    label = name if target.phase == "main" else f"{target.phase} {name}"
                    raise TrainingDiverged(
                        f"loss term {label!r} is {float(value.detach())} at step {step + 1}; lower "
                        "method.train.lr or check the data ('mmbench data verify'); the last good "
                        f"checkpoint is {self.run_dir / 'last.ckpt'}"
                    )
            loss = terms["loss"] / accumulate
            if not loss.requires_grad:  # nothing to learn here (say, no sample had a modality withheld), but every
                # rank must run backward for DDP: a zero gradient through the target's parameters
                loss = loss + sum(parameter.sum() for parameter in target.parameters) * 0.0
            target.scaler.scale(loss).backward() if target.scaler.is_enabled() else loss.backward()
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach()) / accumulate
        if target.scaler.is_enabled():
            target.scaler.unscale_(target.optimizer)
        if settings["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(target.parameters, settings["grad_clip"])
        if target.scaler.is_enabled():
            target.scaler.step(target.optimizer)
            target.scaler.update()
        else:
            target.optimizer.step()
        target.scheduler.step()
        if self.dist.enabled:
            reduced = self.dist.all_reduce_sum(torch.tensor(list(totals.values()), dtype=torch.float64))
            totals = dict(zip(totals, (reduced / self.dist.world_size).tolist(), strict=True))
        return totals

    def _batches(self, start_step: int) -> Iterator[dict[str, Any]]:
        """Micro-batches from `start_step` on, loaded by `num_workers` DataLoader workers (0: in this process)."""
        settings = self.settings
        samples = _StepSamples(self.train_data, self.seed, settings["batch_size"])
        order = _StepOrder(
            start_step, settings["iterations"], settings["accumulate"], settings["batch_size"], self.dist
        )
        loader = torch.utils.data.DataLoader(
            samples, batch_sampler=order, num_workers=settings["num_workers"], pin_memory=self.device.startswith("cuda")
        )
        for batch in loader:
            batch["inputs"] = {name: t.to(self.device, non_blocking=True) for name, t in batch["inputs"].items()}
            batch["label"] = batch["label"].to(self.device, non_blocking=True)
            batch["available"] = batch["available"].to(self.device)
            yield batch

    def _validate(self, state: TrainState, log: _JsonLog) -> None:
        from mmbench.evaluation.engine import evaluate

        limit = self.settings["val_tiles"]
        self.model.eval()
        result = evaluate(
            self.model,
            self.store_path,
            self.protocol,
            device=self.device,
            part="val",
            limit_tiles=limit,
            show_progress=False,
            dist=self.dist,
        )
        self.model.train()
        values = [entry["metrics"]["miou"] for entry in result.scenarios if entry["metrics"]["miou"] is not None]
        score = float(np.mean(values)) if values else None
        log.write(
            {
                "event": "val",
                "step": state.step,
                "score": score,
                "per_scenario_miou": {e["name"]: e["metrics"]["miou"] for e in result.scenarios},
            }
        )
        if score is not None and (state.best_score is None or score > state.best_score):
            state.best_score, state.best_step = score, state.step
            self._save("best.ckpt", state)


def _inject_fault(step: int) -> None:
    """Test hooks (environment variables, never set in normal use): a real SIGKILL or SIGINT of this
    process right after `step`, to test resuming and Ctrl-C handling end to end."""
    for variable, signum in (
        ("MMBENCH_TEST_KILL_AT_STEP", signal.SIGKILL),
        ("MMBENCH_TEST_INTERRUPT_AT_STEP", signal.SIGINT),
    ):
        if os.environ.get(variable) == str(step):
            os.kill(os.getpid(), signum)


class _StepSamples(torch.utils.data.Dataset):
    """Sample (step, micro, slot) of training: which tile and which crop/augmentation depend on nothing else."""

    def __init__(self, data: Any, seed: int, batch_size: int) -> None:
        self.data, self.seed, self.batch_size = data, seed, batch_size

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        step, micro, slot = key
        positions = np.random.default_rng([self.seed, step, micro]).integers(0, len(self.data), size=self.batch_size)
        sample = self.data.sample(int(positions[slot]), (self.seed, step, micro, slot))
        sample["slots"] = slot
        return sample


class _StepOrder(torch.utils.data.Sampler):
    """Batches of keys: this rank's slots of every micro-batch of every step from `start` on."""

    def __init__(self, start: int, total: int, accumulate: int, batch_size: int, dist: DistContext) -> None:
        self.start, self.total, self.accumulate = start, total, accumulate
        self.slots = list(range(dist.rank, batch_size, dist.world_size))

    def __len__(self) -> int:
        return (self.total - self.start) * self.accumulate

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        for step in range(self.start, self.total):
            for micro in range(self.accumulate):
                yield [(step, micro, slot) for slot in self.slots]


class _LossModule(torch.nn.Module):
    """Routes a training batch through `training_loss` inside `forward`, where DDP expects the work."""

    def __init__(self, model: SegmentationMethod) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Mapping[str, Any], info: TrainStep, phase: str = "main") -> dict[str, torch.Tensor]:
        if phase == "adversary":
            return self.model.adversary_loss(batch, info)
        return self.model.training_loss(batch, info)


class _JsonLog:
    """The JSON-lines training log beside the record (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None) -> None:
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = ""
        if resume_step is not None and path.exists():
            # Entries written after the checkpoint we resume from will be written again: drop them.
            lines = path.read_text().splitlines()
            kept = "".join(line + "\n" for line in lines if json.loads(line).get("step", 0) <= resume_step)
        path.write_text(kept)

    def write(self, entry: Mapping[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"time": round(time.time(), 3), **entry}, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def _plain(value: Any) -> Any:
    """RNG states as plain containers and tensors, loadable with weights_only=True."""
    if isinstance(value, np.ndarray):  # numpy's MT19937 key (uint32), stored as int64
        return torch.from_numpy(value.astype(np.int64))
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _tuple(value: Any) -> Any:
    """Inverse of `_plain` for python's and numpy's RNG state tuples."""
    if isinstance(value, list):
        return tuple(_tuple(item) for item in value)
    if isinstance(value, torch.Tensor):
        return value.numpy().astype(np.uint32)
    return value


class TrainingExecutor:
    """Adapts `Trainer` to the pipeline's executor protocol."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    def execute(self, context: RunContext) -> RunOutcome:
        return Trainer(context, {**self.options, **context.plan.options}).execute()


def is_trainable(implementation: Any) -> bool:
    return isinstance(implementation, type) and issubclass(implementation, SegmentationMethod)
