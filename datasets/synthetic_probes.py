"""Probes that measure what a synthetic store's modalities carry, used by docs/synthetic.md's tables
(`benchmarks/synthetic_recoverability.py`) and by tests/test_synthetic.py and tests/test_synthetic_v2.py.

- `class_f1`: a per-pixel Gaussian naive-Bayes classifier (it cannot learn shapes, so it shows what each
  pixel's values alone say about its class), fit on the train part and scored on the test part.
- `recoverability_r2`: how well a small convolutional regressor, trained on the train part, predicts one
  modality from the others on the test part (R^2 over test pixels). It sees a 33 px neighbourhood, enough for
  the shadows and wall lines of datasets/synthetic_couplings.py, so it measures cross-modal redundancy that
  needs context, which the per-pixel classifier cannot.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.ndimage import minimum_filter, uniform_filter
from torch import nn

from mmbench.data.store_reader import TileStore


def pixel_features(store: TileStore, index: int, modalities: Sequence[str]) -> np.ndarray:
    """Per-pixel features (pixels, features): the optical bands, the height above the tile's 5th height
    percentile, and 5x5 box-filtered SAR (speckle averaged out)."""
    columns = []
    if "optical" in modalities:
        columns.extend(store.read_modality("optical", index).astype(float))
    if "dsm" in modalities:
        columns.append(_height_above_ground(store.read_modality("dsm", index)[0]))
    if "sar" in modalities:
        columns.append(box_mean(store.read_modality("sar", index)[0].astype(float), 5))
    return np.stack(columns, axis=-1).reshape(-1, len(columns))


def box_mean(array: np.ndarray, size: int) -> np.ndarray:
    """The mean over a `size` x `size` window (odd `size`; edges padded with the border values)."""
    padded = np.pad(array, size // 2, mode="edge")
    height, width = array.shape
    windows = (padded[dy : dy + height, dx : dx + width] for dy in range(size) for dx in range(size))
    return sum(windows) / size**2


def class_f1(store: TileStore, modalities: Sequence[str]) -> np.ndarray:
    """Per-class F1 (one value per store class) of the naive-Bayes pixel classifier, test part."""

    def data(part: str) -> tuple[np.ndarray, np.ndarray]:
        indices = store.split_indices(None, part)
        features = np.concatenate([pixel_features(store, int(i), modalities) for i in indices])
        labels = np.concatenate([store.read_label("full", int(i)).ravel() for i in indices])
        return features, labels

    x_train, y_train = data("train")
    x_test, y_test = data("test")
    classes = len(store.classes)
    means = np.stack([x_train[y_train == c].mean(0) for c in range(classes)])
    variances = np.stack([x_train[y_train == c].var(0) + 1e-3 for c in range(classes)])
    log_prior = np.log(np.bincount(y_train, minlength=classes)[:classes] / len(y_train))
    scores = -0.5 * (((x_test[:, None, :] - means) ** 2 / variances) + np.log(variances)).sum(-1) + log_prior
    predicted = scores.argmax(1)
    f1 = []
    for c in range(classes):
        true_positive = np.sum((predicted == c) & (y_test == c))
        f1.append(2 * true_positive / max(np.sum(predicted == c) + np.sum(y_test == c), 1))
    return np.array(f1)


def _height_above_ground(dsm: np.ndarray) -> np.ndarray:
    dsm = dsm.astype(float)
    return dsm - np.percentile(dsm, 5)


def normalised_dsm(dsm: np.ndarray, window: int = 31) -> np.ndarray:
    """Height above a local ground estimate (a smoothed `window`-px minimum), the nDSM of remote sensing: it
    removes the terrain, which no other modality shows, and keeps the objects' heights."""
    dsm = dsm.astype(float)
    return dsm - uniform_filter(minimum_filter(dsm, window), window)


def modality_maps(store: TileStore, index: int, modality: str) -> np.ndarray:
    """One modality of one tile as float (C, H, W) in comparable units: optical in DN / 255, the DSM as
    normalised heights (`normalised_dsm`) / 10, SAR in (dB + 10) / 10."""
    array = store.read_modality(modality, index)
    if modality == "optical":
        return array.astype(np.float32) / 255.0
    if modality == "dsm":
        return (normalised_dsm(array[0]) / 10.0).astype(np.float32)[None]
    return (array.astype(np.float32) + 10.0) / 10.0


def _stack(store: TileStore, part: str, modalities: Sequence[str]) -> torch.Tensor:
    tiles = [
        np.concatenate([modality_maps(store, int(i), m) for m in modalities]) for i in store.split_indices(None, part)
    ]
    return torch.from_numpy(np.stack(tiles))


class _Regressor(nn.Module):
    """Five 3x3 convolutions with dilations 1, 2, 4, 8, 1: a 33 px receptive field in 10k parameters."""

    def __init__(self, inputs: int, outputs: int, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = inputs
        for dilation in (1, 2, 4, 8, 1):
            layers += [nn.Conv2d(channels, width, 3, padding=dilation, dilation=dilation), nn.ReLU()]
            channels = width
        layers.append(nn.Conv2d(width, outputs, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def recoverability_r2(
    store: TileStore,
    target: str,
    sources: Sequence[str],
    steps: int = 600,
    crop: int = 48,
    batch: int = 8,
    seed: int = 0,
) -> float:
    """R^2 on the test part of the regressor predicting `target` from `sources` (averaged over the target's
    bands): 1 is perfect, 0 is no better than the test mean. Deterministic for a given seed."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x_train, y_train = _stack(store, "train", sources), _stack(store, "train", [target])
    x_test, y_test = _stack(store, "test", sources), _stack(store, "test", [target])
    model = _Regressor(x_train.shape[1], y_train.shape[1])
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    size = x_train.shape[-1]
    for _ in range(steps):
        tiles = torch.randint(0, x_train.shape[0], (batch,), generator=generator)
        top, left = (int(v) for v in torch.randint(0, size - crop + 1, (2,), generator=generator))
        window = (tiles, slice(None), slice(top, top + crop), slice(left, left + crop))
        loss = nn.functional.mse_loss(model(x_train[window]), y_train[window])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        predicted = torch.cat([model(x_test[i : i + 4]) for i in range(0, x_test.shape[0], 4)])
    residual = ((predicted - y_test) ** 2).sum(dim=(0, 2, 3))
    total = ((y_test - y_test.mean(dim=(0, 2, 3), keepdim=True)) ** 2).sum(dim=(0, 2, 3))
    return float((1.0 - residual / total).mean())
