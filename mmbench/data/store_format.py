"""Constants and errors of the mmbench HDF5 tile store (documented in docs/data-format.md).

Everything that readers and writers must agree on lives here, so that a format change is one edit
and one `FORMAT_VERSION` bump.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmbench.errors import UserError

FORMAT_NAME = "mmbench-tiles"
FORMAT_VERSION = 1
IGNORE_INDEX = 255

MODALITIES_GROUP = "modalities"
LABELS_GROUP = "labels"
TILES_GROUP = "tiles"
SPLITS_GROUP = "splits"
AREAS_GROUP = "areas"  # optional: the source areas tiles were cut from (docs/data-format.md)
SPLIT_PARTS = ("train", "val", "test")

# Codec names accepted by writers; readers need nothing but `hdf5plugin` imported for blosc.
CODECS = ("gzip", "lzf", "blosc-lz4", "blosc-zstd", "none")
DEFAULT_CODEC = "blosc-lz4"


class StoreError(UserError):
    """A tile store, or the data being written into one, is malformed: the message names file and problem."""


@dataclass(frozen=True)
class ModalitySpec:
    """One modality of a store: its band names in on-disk order, physical dtype and units."""

    name: str
    bands: tuple[str, ...]
    dtype: str
    units: str
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "bands", tuple(self.bands))
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)

    @property
    def channels(self) -> int:
        return len(self.bands)


def compression_options(codec: str) -> dict:
    """h5py `create_dataset` keyword arguments for a codec name."""
    if codec == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    if codec == "lzf":
        return {"compression": "lzf", "shuffle": True}
    if codec in ("blosc-lz4", "blosc-zstd"):
        import hdf5plugin

        cname = codec.split("-", 1)[1]
        return dict(hdf5plugin.Blosc(cname=cname, clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))
    if codec == "none":
        return {}
    raise StoreError(f"unknown codec {codec!r}; use one of {', '.join(CODECS)}")
