"""Random-crop loading throughput: the tile store under each codec vs the source TIFFs vs numpy.

Run: `pytest benchmarks/test_loading.py --benchmark-only --benchmark-columns=median,iqr,ops`
Each round reads CROPS random 128 x 128 crops of every modality and the label of the default
synthetic benchmark (48 tiles of 192 px, optical uint8 x3, DSM and SAR float32). `extra_info` carries
crops/s and MB/s (bytes of the decoded crops). Backends:

- `store-<codec>`: `TileStore.read_modality/read_label` with a window (h5py reads one chunk per tile).
- `loader`: `TileDataset` with normalisation and the default kornia augmentation (what training uses).
- `tiff-decode`: the tiles mosaicked into 2 source images per modality (like the official distributions,
  which ship large images), stored as plain TIFF; each crop decodes its image and slices — what a loader
  without windowed reads does.
- `tiff-memmap`: the same TIFFs memory-mapped (works only for uncompressed, contiguous TIFFs), slicing
  the crop: the strongest TIFF baseline without extra libraries.
- `numpy`: slicing arrays already in memory: the ceiling.
"""

from __future__ import annotations

import numpy as np
import pytest

from mmbench.data.store_format import CODECS
from mmbench.data.store_reader import TileStore
from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic

CROPS = 64
CROP = 128
GRID = (4, 6)  # tiles per source image: rows x columns


@pytest.fixture(scope="session")
def stores(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    return {codec: write_synthetic(folder / f"{codec}.h5", SyntheticConfig(codec=codec)) for codec in CODECS}


@pytest.fixture(scope="session")
def arrays(stores):
    with TileStore(stores["none"]) as store:
        data = {
            name: np.stack([store.read_modality(name, i) for i in range(store.num_tiles)])
            for name in store.modality_names
        }
        data["label"] = np.stack([store.read_label("full", i) for i in range(store.num_tiles)])
    return data


@pytest.fixture(scope="session")
def tiffs(arrays, tmp_path_factory):
    """Mosaic the tiles into source-sized images, one TIFF per modality and source image."""
    import tifffile

    folder = tmp_path_factory.mktemp("tiff")
    rows, cols = GRID
    per_image = rows * cols
    paths = {}
    for name, stack in arrays.items():
        for image in range(len(stack) // per_image):
            tiles = stack[image * per_image : (image + 1) * per_image]
            channel_last = tiles if tiles.ndim == 3 else tiles.transpose(0, 2, 3, 1)
            size = channel_last.shape[1]
            mosaic = channel_last.reshape(rows, cols, size, size, *channel_last.shape[3:])
            mosaic = mosaic.swapaxes(1, 2).reshape(rows * size, cols * size, *channel_last.shape[3:])
            path = folder / f"{name}_{image}.tif"
            tifffile.imwrite(path, np.ascontiguousarray(mosaic))
            paths[(name, image)] = path
    return paths


class Windows:
    """Fresh random crops every round, so no cache ever sees the same request twice by construction."""

    def __init__(self, num_tiles: int, size: int, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.num_tiles, self.size = num_tiles, size

    def draw(self) -> list[tuple[int, int, int]]:
        high = self.size - CROP + 1
        return [
            (int(self.rng.integers(self.num_tiles)), int(self.rng.integers(high)), int(self.rng.integers(high)))
            for _ in range(CROPS)
        ]


def _report(benchmark, crop_bytes: int) -> None:
    median = benchmark.stats.stats.median
    benchmark.extra_info["crops_per_s"] = round(CROPS / median, 1)
    benchmark.extra_info["MB_per_s"] = round(CROPS * crop_bytes / median / 1e6, 1)


def _crop_bytes(arrays) -> int:
    return sum(a[0, ..., :CROP, :CROP].nbytes for a in arrays.values())


@pytest.mark.parametrize("codec", CODECS)
def test_store(benchmark, stores, arrays, codec):
    # No chunk cache: with real datasets (GBs) a random crop almost never hits one.
    with TileStore(stores[codec], chunk_cache_bytes=0) as store:
        windows = Windows(store.num_tiles, store.tile_size[0])

        def read():
            for tile, top, left in windows.draw():
                for name in store.modality_names:
                    store.read_modality(name, tile, (top, left, CROP, CROP))
                store.read_label("full", tile, (top, left, CROP, CROP))

        benchmark(read)
    _report(benchmark, _crop_bytes(arrays))


def test_loader(benchmark, stores, arrays):
    from mmbench.data.augment import JointAugment
    from mmbench.data.loader import TileDataset

    dataset = TileDataset(stores["blosc-lz4"], crop_size=CROP, augment=JointAugment())
    order = Windows(len(dataset), 192)

    def read():
        for item, _, _ in order.draw():
            dataset[item]

    benchmark(read)
    _report(benchmark, _crop_bytes(arrays))


@pytest.mark.parametrize("mode", ["decode", "memmap"])
def test_tiff(benchmark, tiffs, arrays, mode):
    import tifffile

    rows, cols = GRID
    size = arrays["label"].shape[-1]
    windows = Windows(len(arrays["label"]), size)
    names = list(arrays)

    def locate(tile: int, top: int, left: int) -> tuple[int, int, int]:
        image, within = divmod(tile, rows * cols)
        row, col = divmod(within, cols)
        return image, row * size + top, col * size + left

    if mode == "memmap":
        maps = {key: tifffile.memmap(path) for key, path in tiffs.items()}

        def read():
            for tile, top, left in windows.draw():
                image, y, x = locate(tile, top, left)
                for name in names:
                    np.array(maps[(name, image)][y : y + CROP, x : x + CROP])
    else:

        def read():
            for tile, top, left in windows.draw():
                image, y, x = locate(tile, top, left)
                for name in names:
                    tifffile.imread(tiffs[(name, image)])[y : y + CROP, x : x + CROP].copy()

    benchmark(read)
    _report(benchmark, _crop_bytes(arrays))


def test_numpy(benchmark, arrays):
    windows = Windows(len(arrays["label"]), arrays["label"].shape[-1])

    def read():
        for tile, top, left in windows.draw():
            for array in arrays.values():
                array[tile, ..., top : top + CROP, left : left + CROP].copy()

    benchmark(read)
    _report(benchmark, _crop_bytes(arrays))
