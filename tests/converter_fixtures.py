"""Tiny fixtures in the exact official layouts of the datasets mmbench converts (torchgeo's tests/data pattern).

Each builder writes a few small images of odd sizes under the real folder and file names, with the real dtypes,
band counts and palettes, either extracted into a folder or packed into the official zip archives, and returns
the pixel values a converted store must hold (`Fixture.expected`). Sizes are (height, width).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

ISPRS_PALETTE = ((255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0))
OFF_PALETTE = (10, 20, 30)

V_MAIN = "ISPRS_semantic_labeling_Vaihingen.zip"
V_COMPLETE = "ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE.zip"
V_ERODED_COMPLETE = "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE.zip"
V_ERODED_PARTICIPANTS = "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_for_participants.zip"
# area -> (height, width): odd sizes; area5 is shorter than a 16 px tile; areas 2 is a test area.
VAIHINGEN_AREAS = {1: (36, 40), 2: (33, 41), 5: (12, 20), 11: (16, 16), 28: (40, 17)}
VAIHINGEN_TRAIN_AREAS = (1, 5, 11, 28)  # the ones in gts_for_participants
POTSDAM_TILES = {(2, 10): (20, 18), (2, 11): (17, 25), (7, 10): (16, 21), (2, 13): (18, 16), (4, 10): (19, 19)}
WHU_SHEETS = {
    "NH49E001013": (20, 24),
    "NH49E001014": (18, 17),
    "NI49E023017": (16, 20),
    "NH50E002011": (21, 16),
    "NI50E010020": (17, 17),
}
EARTHMISS_IMAGES = {  # city -> (image names, extension)
    "Nanjing": (("nj_0001", "nj_0002"), ".png"),
    "America-Pake": (("pake_17",), ".tif"),
    "Peru-Callao": (("callao_3",), ".png"),
    "Atlantis": (("atl_1",), ".tif"),
}


@dataclass
class Fixture:
    """Where the fixture lives, its source files (display name -> bytes) and the expected per-tile arrays."""

    root: Path
    files: dict[str, bytes] = field(default_factory=dict)
    archives: list[str] = field(default_factory=list)
    expected: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    off_palette: dict[str, int] = field(default_factory=dict)

    def sha256(self, display: str) -> str:
        if display in self.archives:
            return hashlib.sha256((self.root / display).read_bytes()).hexdigest()
        return hashlib.sha256(self.files[display]).hexdigest()


class _Sink:
    """Writes files extracted under `root`, or as members of official zip archives in `root`."""

    def __init__(self, fixture: Fixture, zipped: bool) -> None:
        self.fixture = fixture
        self.zipped = zipped

    def put(self, archive: str, member: str, data: bytes, extracted: str | None = None) -> str:
        root = self.fixture.root
        if self.zipped:
            root.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(root / archive, "a", compression=zipfile.ZIP_DEFLATED) as handle:
                handle.writestr(member, data)
            if archive not in self.fixture.archives:
                self.fixture.archives.append(archive)
            display = f"{archive}/{member}"
        else:
            display = extracted or member
            path = root / display
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        self.fixture.files[display] = data
        return display


# -- encoders --------------------------------------------------------------------------------------------------
def tiff_bytes(array: np.ndarray, *, planar: bool = False) -> bytes:
    """A TIFF of an (H, W), (H, W, C) array; `planar` stores bands in planes (axes SYX)."""
    buffer = io.BytesIO()
    if array.ndim == 2:
        tifffile.imwrite(buffer, array, photometric="minisblack")
    elif planar:
        tifffile.imwrite(
            buffer, np.ascontiguousarray(array.transpose(2, 0, 1)), photometric="minisblack", planarconfig="separate"
        )
    else:
        extra = {"extrasamples": ["unspecified"] * (array.shape[2] - 3)} if array.shape[2] > 3 else {}
        tifffile.imwrite(buffer, array, photometric="rgb", planarconfig="contig", **extra)
    return buffer.getvalue()


def pillow_bytes(array: np.ndarray, kind: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=kind)
    return buffer.getvalue()


def decode_pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def colour_labels(classes: np.ndarray, palette=ISPRS_PALETTE) -> np.ndarray:
    return np.asarray(palette, dtype=np.uint8)[classes]


def random_classes(rng: np.random.Generator, size: tuple[int, int], count: int) -> np.ndarray:
    classes = rng.integers(0, count, size).astype(np.uint8)
    classes.flat[:count] = np.arange(count)  # every class present
    return classes


def chw(array: np.ndarray) -> np.ndarray:
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


# -- ISPRS Vaihingen -------------------------------------------------------------------------------------------
def make_vaihingen(
    root: Path,
    *,
    zipped: bool = False,
    complete: bool = True,
    eroded_complete: bool = True,
    participants: bool = True,
    eroded_participants: bool = False,
    ndsm: bool = True,
    dsm: bool = True,
    areas: dict[int, tuple[int, int]] | None = None,
    seed: int = 0,
) -> Fixture:
    fixture = Fixture(root)
    sink = _Sink(fixture, zipped)
    rng = np.random.default_rng(seed)
    areas = VAIHINGEN_AREAS if areas is None else areas
    for area, size in areas.items():
        top = rng.integers(0, 256, (*size, 3), dtype=np.uint8)  # stored IR, R, G
        heights = (rng.random(size) * 30 + 250).astype(np.float32)
        normalised = rng.integers(0, 256, size, dtype=np.uint8)
        classes = random_classes(rng, size, 6)
        full_rgb = colour_labels(classes)
        eroded = classes.copy()
        boundary = rng.random(size) < 0.2
        eroded[boundary] = 255
        eroded_rgb = full_rgb.copy()
        eroded_rgb[boundary] = 0
        expected = {"optical": chw(top), "dsm": heights[None], "full": classes, "eroded": eroded}
        if ndsm:
            expected["ndsm"] = normalised.astype(np.float32)[None] / np.float32(10)
        name = f"top_mosaic_09cm_area{area}.tif"
        sink.put(V_MAIN, f"top/{name}", tiff_bytes(top))
        if dsm:
            sink.put(V_MAIN, f"dsm/dsm_09cm_matching_area{area}.tif", tiff_bytes(heights))
        if ndsm:  # not in the ISPRS archives: always a folder
            path = root / "ndsm" / f"ndsm_09cm_matching_area{area}.bmp"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pillow_bytes(normalised, "BMP"))
            fixture.files[f"ndsm/{path.name}"] = path.read_bytes()
        if area == 1:  # one off-palette pixel in the full labels of area 1
            full_rgb = full_rgb.copy()
            full_rgb[2, 3] = OFF_PALETTE
            expected["full"] = classes.copy()
            expected["full"][2, 3] = 255
        if complete:
            display = sink.put(V_COMPLETE, name, tiff_bytes(full_rgb))
            if area == 1:
                fixture.off_palette[display] = 1
        if participants and area in VAIHINGEN_TRAIN_AREAS:
            display = sink.put(V_MAIN, f"gts_for_participants/{name}", tiff_bytes(full_rgb))
            if area == 1 and not complete:
                fixture.off_palette[display] = 1
        eroded_name = f"top_mosaic_09cm_area{area}_noBoundary.tif"
        if eroded_complete:
            sink.put(V_ERODED_COMPLETE, eroded_name, tiff_bytes(eroded_rgb))
        if eroded_participants and area in VAIHINGEN_TRAIN_AREAS:
            sink.put(V_ERODED_PARTICIPANTS, f"gts_eroded_for_participants/{eroded_name}", tiff_bytes(eroded_rgb))
        fixture.expected[f"area{area}"] = expected
    if eroded_complete:  # the trap mmseg deletes: a label tile without imagery
        sink.put(
            V_ERODED_COMPLETE,
            "top_mosaic_09cm_area9_noBoundary.tif",
            tiff_bytes(colour_labels(np.zeros((8, 8), np.uint8))),
        )
    return fixture


# -- ISPRS Potsdam ---------------------------------------------------------------------------------------------
def make_potsdam(
    root: Path,
    *,
    zipped: bool = False,
    optical: str = "RGBIR",
    ndsm: bool = True,
    tiles: dict[tuple[int, int], tuple[int, int]] | None = None,
    seed: int = 1,
) -> Fixture:
    """`optical` is RGBIR (4_Ortho_RGBIR, bands in planes), IRRG (3_Ortho_IRRG) or RGB (2_Ortho_RGB).

    In the zipped variant the ortho and DSM archives hold their folder, the label archives are flat.
    """
    fixture = Fixture(root)
    sink = _Sink(fixture, zipped)
    rng = np.random.default_rng(seed)
    folder = {"RGBIR": "4_Ortho_RGBIR", "IRRG": "3_Ortho_IRRG", "RGB": "2_Ortho_RGB"}[optical]
    for (i, j), size in (POTSDAM_TILES if tiles is None else tiles).items():
        bands = 4 if optical == "RGBIR" else 3
        top = rng.integers(0, 256, (*size, bands), dtype=np.uint8)
        heights = (rng.random(size) * 40 + 30).astype(np.float32)
        classes = random_classes(rng, size, 6)
        eroded = classes.copy()
        boundary = rng.random(size) < 0.2
        eroded[boundary] = 255
        eroded_rgb = colour_labels(classes)
        eroded_rgb[boundary] = 0
        source = f"{i}_{j}"
        sink.put(
            f"{folder}.zip", f"{folder}/top_potsdam_{source}_{optical}.tif", tiff_bytes(top, planar=optical == "RGBIR")
        )
        sink.put("1_DSM.zip", f"1_DSM/dsm_potsdam_{i:02d}_{j:02d}.tif", tiff_bytes(heights))
        expected = {"optical": chw(top), "dsm": heights[None], "full": classes, "eroded": eroded}
        if ndsm:
            jpeg = pillow_bytes(rng.integers(0, 256, size, dtype=np.uint8), "JPEG")
            for approach in ("lastools", "ownapproach"):  # the converter must pick lastools
                sink.put(
                    "1_DSM_normalisation.zip",
                    f"1_DSM_normalisation/dsm_potsdam_{i:02d}_{j:02d}_normalized_{approach}.jpg",
                    jpeg,
                )
            expected["ndsm"] = decode_pillow(jpeg).astype(np.float32)[None]
        full_name = f"top_potsdam_{source}_label.tif"
        eroded_name = f"top_potsdam_{source}_label_noBoundary.tif"
        sink.put("5_Labels_all.zip", full_name, tiff_bytes(colour_labels(classes)), f"5_Labels_all/{full_name}")
        sink.put(
            "5_Labels_all_noBoundary.zip", eroded_name, tiff_bytes(eroded_rgb), f"5_Labels_all_noBoundary/{eroded_name}"
        )
        fixture.expected[source] = expected
    return fixture


# -- WHU-OPT-SAR -----------------------------------------------------------------------------------------------
def make_whu(root: Path, *, sheets: dict[str, tuple[int, int]] | None = None, seed: int = 2) -> Fixture:
    """Optical uint16 R, G, B, NIR; SAR uint8; labels 0, 10, ..., 70 under <ROOT>/{optical,sar,lbl}/{sheet}.tif."""
    fixture = Fixture(root)
    sink = _Sink(fixture, zipped=False)
    rng = np.random.default_rng(seed)
    for sheet, size in (WHU_SHEETS if sheets is None else sheets).items():
        optical = rng.integers(0, 1024, (*size, 4), dtype=np.uint16)
        sar = rng.integers(0, 256, size, dtype=np.uint8)
        classes = random_classes(rng, size, 8)
        sink.put("", f"WHU-OPT-SAR/optical/{sheet}.tif", tiff_bytes(optical, planar=True))
        sink.put("", f"WHU-OPT-SAR/sar/{sheet}.tif", tiff_bytes(sar))
        sink.put("", f"WHU-OPT-SAR/lbl/{sheet}.tif", tiff_bytes((classes * 10).astype(np.uint8)))
        fixture.expected[sheet] = {"optical": chw(optical), "sar": sar[None], "full": classes}
    return fixture


# -- EarthMiss -------------------------------------------------------------------------------------------------
def make_earthmiss(root: Path, *, size: tuple[int, int] = (24, 20), seed: int = 3) -> Fixture:
    """root/<City>/images/{RGB,SAR}/ and root/<City>/masks/, SAR and mask names with `_SAR`/`_mask` inserted."""
    fixture = Fixture(root)
    sink = _Sink(fixture, zipped=False)
    rng = np.random.default_rng(seed)
    for city, (names, extension) in EARTHMISS_IMAGES.items():
        for name in names:
            rgb = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            sar = rng.integers(0, 256, size, dtype=np.uint8)
            mask = rng.integers(0, 9, size).astype(np.uint8)
            mask.flat[:9] = np.arange(9)
            encode = tiff_bytes if extension == ".tif" else (lambda array: pillow_bytes(array, "PNG"))
            sink.put("", f"EarthMiss/{city}/images/RGB/{name}{extension}", encode(rgb))
            sink.put("", f"EarthMiss/{city}/images/SAR/{name}_SAR{extension}", encode(sar))
            sink.put("", f"EarthMiss/{city}/masks/{name}_mask{extension}", encode(mask))
            expected = np.where(mask == 0, 255, mask - 1).astype(np.uint8)
            fixture.expected[f"{city}_{name}"] = {"optical": chw(rgb), "sar": sar[None], "full": expected}
    return fixture
