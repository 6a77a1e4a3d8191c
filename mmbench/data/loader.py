"""`torch.utils.data.Dataset` over one split part of a tile store.

h5py handles must not cross a fork, so the store is opened lazily in whichever process reads first and
re-opened when the process id changes (DataLoader workers, persistent or not); the dataset pickles
without its handle. Random crops and augmentations are drawn from a generator keyed by
(seed, epoch, index), so a sample is the same whatever the worker count or the loading order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmbench.data.augment import JointAugment
from mmbench.data.store_checks import check_tile, label_problem, modality_problem
from mmbench.data.store_format import StoreError
from mmbench.data.store_reader import TileStore, Window


class TileDataset(Dataset):
    """Samples: {"inputs": {modality: float32 (C, h, w)}, "label": int64 (h, w), "available": bool (M,),
    "tile_id": str, "index": int, "window": int64 (4,) = top, left, height, width}.

    `crop_size=None` returns whole tiles (evaluation; sliding windows belong to the evaluation engine);
    otherwise a random crop per sample (training). Inputs are normalised with the store's training
    statistics unless `normalize=False`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        split: str | None = None,
        part: str = "train",
        modalities: Sequence[str] | None = None,
        label_variant: str = "full",
        crop_size: int | None = None,
        augment: JointAugment | None = None,
        normalize: bool = True,
        seed: int = 0,
    ) -> None:
        self.path = os.fspath(path)
        with TileStore(self.path) as store:
            self.modalities = tuple(modalities) if modalities is not None else store.modality_names
            unknown = [name for name in self.modalities if name not in store.modality_names]
            if unknown:
                raise StoreError(
                    f"{self.path}: no modality {unknown[0]!r}; the store has "
                    f"{', '.join(store.modality_names)} (check the config's modality list)"
                )
            if label_variant not in store.label_variants:
                raise StoreError(
                    f"{self.path}: no label variant {label_variant!r}; the store has {', '.join(store.label_variants)}"
                )
            self.indices = store.split_indices(split, part).copy()
            self.tile_ids = [store.tile_ids[int(i)] for i in self.indices]
            self.tile_size = store.tile_size
            self.classes = store.classes
            self.ignore_index = store.ignore_index
            self._scale = {name: _dtype_range(store.modalities[name].dtype) for name in self.modalities}
            self._mean, self._std = {}, {}
            for name in self.modalities:
                stats = store.modalities[name].stats
                if not all(isinstance(stats.get(key), list) for key in ("mean", "std")):
                    raise StoreError(
                        f"{self.path}: modality {name!r} has no normalisation statistics (attribute 'stats'); "
                        f"re-create the store ('mmbench data verify {self.path}' lists every problem)"
                    )
                self._mean[name] = torch.tensor(stats["mean"], dtype=torch.float32).view(-1, 1, 1)
                self._std[name] = torch.tensor(stats["std"], dtype=torch.float32).clamp_min(1e-6).view(-1, 1, 1)
        if crop_size is not None and (crop_size > min(self.tile_size) or crop_size < 1):
            raise StoreError(f"{self.path}: crop size {crop_size} does not fit tiles of {self.tile_size}")
        self.split, self.part, self.label_variant = split, part, label_variant
        self.crop_size = crop_size
        self.augment = augment
        self.normalize = normalize
        self.seed = seed
        self.epoch = 0
        self._store: TileStore | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def select(self, positions: slice | Sequence[int]) -> None:
        """Keep only these positions of the split part (e.g. a smoke run's first tiles, or one rank's shard)."""
        keep = np.arange(len(self.indices))[positions]
        self.indices = self.indices[keep]
        self.tile_ids = [self.tile_ids[int(i)] for i in keep]

    def set_epoch(self, epoch: int) -> None:
        """New crops and augmentations each epoch, still reproducible from (seed, epoch)."""
        self.epoch = epoch

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_store"], state["_pid"] = None, None
        return state

    def _open(self) -> TileStore:
        if self._store is None or self._pid != os.getpid():
            self._store = TileStore(self.path)
            self._pid = os.getpid()
        return self._store

    def __getitem__(self, item: int) -> dict[str, Any]:
        return self.sample(item, (self.seed, self.epoch, int(self.indices[item])))

    def sample(self, item: int, key: Sequence[int]) -> dict[str, Any]:
        """The sample at position `item`, its crop and augmentation drawn from `key` (training keys it by
        (seed, step, slot) so that any step can be reproduced alone, e.g. after a resume)."""
        store = self._open()
        index = int(self.indices[item])
        window = self._window(np.random.default_rng(list(key)))
        arrays = {name: store.read_modality(name, index, window) for name in self.modalities}
        raw_label = store.read_label(self.label_variant, index, window)
        self._check_values(index, self.tile_ids[item], arrays, raw_label)
        inputs = {name: torch.from_numpy(array.astype(np.float32)) for name, array in arrays.items()}
        label = torch.from_numpy(raw_label.astype(np.int64))
        if self.augment is not None:
            scaled = {
                name: tensor / self._scale[name] if self._scale[name] else tensor for name, tensor in inputs.items()
            }
            augmented, label = self.augment(scaled, label, key)
            inputs = {
                name: tensor * self._scale[name] if self._scale[name] else tensor for name, tensor in augmented.items()
            }
        if self.normalize:
            inputs = {name: (tensor - self._mean[name]) / self._std[name] for name, tensor in inputs.items()}
        top, left, height, width = window if window is not None else (0, 0, *self.tile_size)
        return {
            "inputs": inputs,
            "label": label,
            "available": torch.ones(len(self.modalities), dtype=torch.bool),
            "tile_id": self.tile_ids[item],
            "index": index,
            "window": torch.tensor([top, left, height, width], dtype=torch.int64),
        }

    def _check_values(self, index: int, tile_id: str, arrays: dict[str, np.ndarray], label: np.ndarray) -> None:
        """Stop at the first read of a bad tile (a label beyond the classes, NaN/inf in a modality), naming it,
        before it reaches a model or a confusion matrix (mmbench/data/store_checks.py); two vectorised passes
        over the pixels just read, small next to decoding them."""
        check_tile(
            self.path,
            label_problem(self.label_variant, index, tile_id, label, len(self.classes), self.ignore_index),
        )
        for name, array in arrays.items():
            check_tile(self.path, modality_problem(name, index, tile_id, array))

    def _window(self, rng: np.random.Generator) -> Window | None:
        if self.crop_size is None:
            return None
        height, width = self.tile_size
        top = int(rng.integers(0, height - self.crop_size + 1))
        left = int(rng.integers(0, width - self.crop_size + 1))
        return top, left, self.crop_size, self.crop_size


def _dtype_range(dtype: str) -> float | None:
    """Integer imagery is scaled to [0, 1] for photometric augmentation; float data is left alone."""
    kind = np.dtype(dtype)
    return float(np.iinfo(kind).max) if kind.kind in "ui" else None
