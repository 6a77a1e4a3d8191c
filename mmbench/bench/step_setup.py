"""The real training pieces of one method for `mmbench bench step`: the resolved default config, the model,
the update rule, the loss and the batches, built by the training engine itself.

The profiled step must be the step `mmbench run` takes, so nothing here re-implements the engine: the config
is resolved as `mmbench run METHOD --protocol last1` resolves it (mmbench/runs/planning.py `plan_run`; the
bench layer may not import mmbench.runs, so the three calls are repeated here), and the model, data, update
rule and loss are built by `Trainer._build` (mmbench/engine/trainer.py). Only `batch_size` and `crop_size`
are overridden (`--batch-size`, `--size`), as `--set method.train.batch_size=...` would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmbench.config import resolve_run_config
from mmbench.context import DatasetFacts, DatasetRef, RunContext, RunPlan
from mmbench.errors import UserError
from mmbench.registry import DATASETS, METHODS, PROTOCOLS

PROTOCOL = "last1"  # the main job's protocol; training reads only its split, label variant and modalities


class NotTrainable(UserError):
    """The method is not trained by mmbench's engine (no `train:` section, or its own `execute`)."""


@dataclass
class StepParts:
    """What one training step is made of, as the engine built it."""

    name: str
    version: str
    device: str
    settings: dict[str, Any]
    trainer: Any  # mmbench.engine.trainer.Trainer after `_build`
    store: Path

    @property
    def model(self) -> Any:
        return self.trainer.model

    @property
    def update(self) -> Any:
        return self.trainer.update

    @property
    def loss(self) -> Any:
        return self.trainer.loss

    def batches(self, total_steps: int) -> Iterator[dict[str, Any]]:
        """The engine's micro-batches of steps 0..total_steps-1 (`micro_batches`, mmbench/engine/batches.py);
        `iterations` is raised to `total_steps` when the recipe is shorter (it only sizes the sampler)."""
        from mmbench.engine.batches import micro_batches

        settings = {**self.settings, "iterations": max(int(self.settings["iterations"]), total_steps)}
        return micro_batches(
            self.trainer.train_data,
            seed=self.trainer.seed,
            settings=settings,
            start_step=0,
            dist=self.trainer.dist,
            device=self.trainer.device,
        )


def resolve_store(dataset: str | Path | None) -> tuple[str, Path]:
    """The tile store to load batches from: a store file, or the registered synthetic benchmark at its
    defaults (generated once into the mmbench cache by its `prepare`, as `mmbench run` does)."""
    if dataset is not None and Path(dataset).suffix in (".h5", ".hdf5"):
        path = Path(dataset)
        if not path.is_file():
            raise UserError(f"tile store {str(path)!r} does not exist; give an existing .h5 store")
        return path.stem, path.resolve()
    spec = DATASETS.get(str(dataset or "synthetic"))
    ref = DatasetRef(name=spec.name, spec=spec)
    config = resolve_run_config({"dataset": spec})
    materialised = ref.materialize(config.section("dataset"))
    if materialised.path is None:
        raise UserError(f"dataset {spec.name!r} has no tile store to load training batches from")
    return spec.name, materialised.path


def check_trainable(method: str) -> None:
    """Raise the registry's error for an unknown name, `NotTrainable` for a method the engine does not train."""
    from mmbench.engine.trainer import is_trainable

    spec = METHODS.get(method)
    implementation = spec.load()
    if callable(getattr(implementation, "execute", None)) or not is_trainable(implementation):
        raise NotTrainable(
            f"method {spec.name!r} is not trained by mmbench's training engine (it runs its own execute() or is "
            "not a SegmentationMethod); profile a trainable method"
        )
    config = resolve_run_config({"method": spec, "protocol": PROTOCOLS.get(PROTOCOL)})
    if "train" not in config.section("method"):
        raise NotTrainable(f"method {spec.name!r} has no method.train section; profile a trainable method")


def trainable_methods() -> list[str]:
    """Every registered method the training engine trains (what `mmbench bench step` profiles by default)."""
    names = []
    for name in METHODS.names():
        try:
            check_trainable(name)
        except NotTrainable:
            continue
        names.append(name)
    return names


def build_step(
    method: str,
    *,
    store: tuple[str, Path],
    batch_size: int,
    size: int,
    device: str,
    run_dir: Path,
    overrides: tuple[str, ...] = (),
) -> StepParts:
    """The engine's model, data, update rule and loss for `method` at its resolved default config (with
    `overrides`, `--set`'s KEY=VALUE strings, on top)."""
    from mmbench.engine.trainer import Trainer

    check_trainable(method)
    spec = METHODS.get(method)
    protocol = PROTOCOLS.get(PROTOCOL)
    dataset_name, store_path = store
    dataset = DatasetRef(name=dataset_name, path=store_path)
    config = resolve_run_config(
        {"method": spec, "protocol": protocol, "dataset": None},
        overrides=(f"method.train.batch_size={batch_size}", f"method.train.crop_size={size}", *overrides),
        flags={"run.device": device},
    )
    plan = RunPlan(method=spec, protocol=protocol, dataset=dataset, config=config, command="mmbench bench step")
    facts = DatasetFacts.from_store(store_path, name=dataset_name)
    trainer = Trainer(RunContext(plan=plan, device=device, run_dir=run_dir, seeds={}, dataset_facts=facts))
    trainer._build()  # the engine's own set-up: the profiled step is the step `mmbench run` takes
    trainer.model.train()
    return StepParts(spec.name, spec.version, trainer.device, trainer.settings, trainer, store_path)
