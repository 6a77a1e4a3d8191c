"""The data side of training: the batch of step s is a pure function of (seed, s) (which tiles, which crops
and augmentations, which modalities), whatever the worker count, the rank or the step a resumed run starts at.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmbench.data.augment import JointAugment, modality_augment
from mmbench.data.loader import TileDataset
from mmbench.data.store_reader import TileStore
from mmbench.engine.settings import augment_overrides
from mmbench.engine.speed import lay_out_inputs, memory_format
from mmbench.errors import ConfigError
from mmbench.registry import DATASETS
from mmbench.runtime.distributed import DistContext


def training_data(
    store_path: Path,
    *,
    split: str | None,
    label_variant: str,
    modalities: Sequence[str],
    settings: Mapping[str, Any],
    seed: int,
) -> TileDataset:
    """The store's training part of `split`, cropped to `crop_size` and augmented when `augment` is set (each
    modality limited to the transforms it tolerates: `training_augment`)."""
    data = TileDataset(
        store_path,
        split=split,
        part="train",
        modalities=list(modalities),
        label_variant=label_variant,
        crop_size=settings["crop_size"],
        augment=training_augment(store_path, modalities, settings) if settings["augment"] else None,
        seed=seed,
    )
    if len(data) == 0:
        raise ConfigError(f"{store_path}: the training part of split {split!r} is empty")
    return data


def training_augment(store_path: Path, modalities: Sequence[str], settings: Mapping[str, Any]) -> JointAugment:
    """The joint augmentation of a run on `modalities`: the dataset's declared limits (`declared_geometry`)
    under the config's per-modality switches (`method.train.augment_modalities`, docs/training.md)."""
    with TileStore(store_path) as store:
        store_name, store_modalities = store.name, store.modality_names
        dtypes = {name: store.modalities[name].dtype for name in store_modalities}
    overrides = augment_overrides(settings, store_modalities)
    for name, switches in overrides.items():
        if switches.get("photometric") and np.dtype(dtypes[name]).kind not in "ui":
            raise ConfigError(
                f"method.train.augment_modalities.{name}.photometric=true: {name} is {dtypes[name]} data, and "
                "brightness/contrast changes need integer imagery (scaled to [0, 1]); set it to false"
            )
    geometry, photometric = modality_augment(modalities, declared=declared_geometry(store_name), overrides=overrides)
    return JointAugment(photometric=photometric, geometry=geometry)


def declared_geometry(store_name: str) -> dict[str, tuple[str, ...]]:
    """The geometric transforms each modality of a registered dataset's stores tolerates (modality -> names
    from `mmbench.data.augment.GEOMETRIC`; unnamed modalities tolerate all).

    A dataset declares them as `augment_geometry` on its implementation (the synthetic SAR, which looks
    from the left, tolerates only vertical flips and zoom). They are found by the name the store carries,
    which is the registered dataset's for stores it wrote, so a synthetic store given by its path keeps
    the synthetic limits: they describe the data, not how the run named it. Stores of other origins
    (converters, third-party files) have none.
    """
    if store_name not in DATASETS:
        return {}
    declared = getattr(DATASETS.get(store_name).load(), "augment_geometry", None) or {}
    return {str(name): tuple(allowed) for name, allowed in dict(declared).items()}


def micro_batches(
    data: TileDataset,
    *,
    seed: int,
    settings: Mapping[str, Any],
    start_step: int,
    dist: DistContext,
    device: str,
) -> Iterator[dict[str, Any]]:
    """Micro-batches from `start_step` on, on `device`, loaded by `num_workers` DataLoader workers (0: in this
    process), their input maps in the recipe's `memory_format`. A generator: nothing is loaded (and no random
    state is drawn) before the first `next`."""
    fmt = memory_format(settings)
    samples = StepSamples(data, seed, settings["batch_size"])
    order = StepOrder(start_step, settings["iterations"], settings["accumulate"], settings["batch_size"], dist)
    loader = torch.utils.data.DataLoader(
        samples, batch_sampler=order, num_workers=settings["num_workers"], pin_memory=device.startswith("cuda")
    )
    for batch in loader:
        inputs = {name: t.to(device, non_blocking=True) for name, t in batch["inputs"].items()}
        batch["inputs"] = lay_out_inputs(inputs, fmt)
        batch["label"] = batch["label"].to(device, non_blocking=True)
        batch["available"] = batch["available"].to(device)
        yield batch


class StepSamples(torch.utils.data.Dataset):
    """Sample (step, micro, slot) of training: which tile and which crop/augmentation depend on nothing else."""

    def __init__(self, data: TileDataset, seed: int, batch_size: int) -> None:
        self.data, self.seed, self.batch_size = data, seed, batch_size

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        step, micro, slot = key
        positions = np.random.default_rng([self.seed, step, micro]).integers(0, len(self.data), size=self.batch_size)
        sample = self.data.sample(int(positions[slot]), (self.seed, step, micro, slot))
        sample["slots"] = slot
        return sample


class StepOrder(torch.utils.data.Sampler):
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
