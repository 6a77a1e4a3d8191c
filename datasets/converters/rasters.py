"""Decoding source images (TIFF with tifffile; PNG, BMP and JPEG with Pillow) into (C, H, W) arrays.

Images are decoded from bytes, so extracted files and zip members go through one path. Band order is kept
exactly as stored: an ISPRS IRRG orthophoto stays IR, R, G (nothing is converted to "RGB").
"""

from __future__ import annotations

import io
from pathlib import PurePosixPath

import numpy as np

from mmbench.data.store_format import StoreError

TIFF_SUFFIXES = (".tif", ".tiff")
PILLOW_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg")


def decode_image(data: bytes, name: str, *, indexed: bool = False) -> np.ndarray:
    """The (C, H, W) array of an image file.

    Indexed-colour images are expanded to their palette colours, unless `indexed` is set (index masks stored
    as palette PNGs carry their class values as palette indices).
    """
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in TIFF_SUFFIXES + PILLOW_SUFFIXES:
        raise StoreError(f"{name}: unsupported file type {suffix!r}; expected TIFF, PNG, BMP or JPEG")
    try:
        return _tiff(data, name, indexed) if suffix in TIFF_SUFFIXES else _pillow(data, indexed)
    except StoreError:
        raise
    except Exception as exc:  # decoders raise many types for truncated or corrupt files
        if "imagecodecs" in str(exc):
            raise StoreError(
                f"{name}: its TIFF compression needs the 'imagecodecs' package ({exc}); run "
                "'pip install imagecodecs' and convert again"
            ) from exc
        raise StoreError(
            f"{name}: cannot decode the image ({type(exc).__name__}: {exc}); the file may be "
            "truncated, extract or download it again"
        ) from exc


def _tiff(data: bytes, name: str, indexed: bool) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        series = tif.series[0]
        array = series.asarray()
        axes = series.axes
        page = tif.pages[0]
        colormap = getattr(page, "colormap", None)
        palette = page.photometric == tifffile.PHOTOMETRIC.PALETTE and colormap is not None
    if palette and not indexed and axes == "YX":
        colours = np.asarray(colormap)
        colours = colours if colours.max() <= 255 else np.round(colours / 257.0)
        return colours.astype(np.uint8)[:, array]
    if axes == "YX":
        return array[None]
    if len(axes) == 3 and axes.endswith("YXS"):
        return array.transpose(2, 0, 1)
    if len(axes) == 3 and axes.endswith("YX"):
        return array
    raise StoreError(
        f"{name}: unsupported TIFF layout (axes {axes!r}, shape {array.shape}); expected one image "
        "with its bands interleaved or in planes"
    )


def _pillow(data: bytes, indexed: bool) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.mode in ("P", "PA"):
            image = image.getchannel(0) if indexed else image.convert("RGB")  # palette indices or colours
        elif image.mode == "1":
            image = image.convert("L")
        elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            image = image.convert("RGB")
        array = np.asarray(image)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
