"""ISPRS 2D semantic labeling: Vaihingen and Potsdam (docs/converters.md describes both layouts).

Both share the six-class colour code and the full/eroded ground-truth pair. Their traps, all handled here by
data rather than code: Vaihingen's TOP is IR-R-G (not RGB), its complete ground truth comes in flat archives
whose file names equal the TOP names, and Gerke's nDSM is in decimetres; Potsdam's DSM and nDSM ids are
zero-padded (`dsm_potsdam_02_10`) while image ids are not (`top_potsdam_2_10`), and its nDSM is an 8-bit JPEG
without a documented metre scale.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mmbench.datasets.converters.common import LayoutConverter
from mmbench.datasets.converters.entry import Entry
from mmbench.datasets.converters.labels import PaletteDecoder
from mmbench.datasets.converters.layout import FileRule, LabelRule, Layout, ModalityRule, SplitDef

VERSION = "2"  # 2: area metadata, mean padding, statistics counting each area pixel once
CLASSES = ("impervious_surface", "building", "low_vegetation", "tree", "car", "clutter")
PALETTE = ((255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0))
BOUNDARY = (0, 0, 0)  # the eroded band of `_noBoundary` files
# The --config file that evaluates these stores as the field does (eroded labels, clutter out of the means,
# 512/256 windows over whole areas; docs/protocols.md, "The ISPRS preset").
EVALUATION_PRESET = "mmbench.datasets.converters:isprs_protocol.yaml"
FULL_DECODER = PaletteDecoder(PALETTE)
ERODED_DECODER = PaletteDecoder(PALETTE, ignore_colours=(BOUNDARY,))


def _stem(archive: str) -> str:
    return archive[: -len(".zip")]


# -- Vaihingen ---------------------------------------------------------------------------------------------
V_MAIN = "ISPRS_semantic_labeling_Vaihingen.zip"
V_COMPLETE = "ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE.zip"
V_ERODED_COMPLETE = "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE.zip"
V_ERODED_PARTICIPANTS = "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_for_participants.zip"

V_TRAIN = (1, 3, 5, 7, 11, 13, 15, 17, 21, 23, 26, 28, 30, 32, 34, 37)
V_TEST = (2, 4, 6, 8, 10, 12, 14, 16, 20, 22, 24, 27, 29, 31, 33, 35, 38)
V_VAL = (11, 15, 28, 30, 34)  # third-party train11/val5 list
V_LINEAGE_TRAIN = (1, 3, 23, 26, 7, 11, 13, 28, 17, 32, 34, 37)
V_LINEAGE_VAL = (11, 28)  # mmbench's choice, carved from the lineage train list
V_LINEAGE_TEST = (5, 21, 15, 30)


def _area(match, _prefix) -> str:
    return f"area{int(match['n'])}"


def _vaihingen_rule(name: str, folders: tuple[str, ...], shown: str, archive: str) -> FileRule:
    return FileRule(
        name,
        folders,
        _area,
        shown,
        archives=(archive,),
        expect=lambda source, _primary: shown.replace("{N}", source[len("area") :]),
    )


def _areas(numbers, without=()) -> list[str]:
    return [f"area{n}" for n in numbers if n not in without]


def _vaihingen_splits(_sources: Mapping[str, Entry]) -> list[SplitDef]:
    return [
        SplitDef(
            "official",
            {"train": _areas(V_TRAIN, V_VAL), "val": _areas(V_VAL), "test": _areas(V_TEST)},
            "ISPRS official 16 train / 17 test areas; val = areas 11, 15, 28, 30, 34 taken out of train "
            "(third-party train11/val5 list)",
            default=True,
        ),
        SplitDef(
            "lineage-12-4",
            {
                "train": _areas(V_LINEAGE_TRAIN, V_LINEAGE_VAL),
                "val": _areas(V_LINEAGE_VAL),
                "test": _areas(V_LINEAGE_TEST),
            },
            "multimodal-fusion lineage: train 1,3,23,26,7,11,13,28,17,32,34,37 / test 5,21,15,30; val = "
            "areas 11 and 28 taken out of train (mmbench's choice)",
        ),
    ]


VAIHINGEN = Layout(
    format="isprs-vaihingen",
    converter="mmbench.datasets.converters.isprs",
    version=VERSION,
    classes=CLASSES,
    palette=PALETTE,
    modalities=(
        ModalityRule(
            "optical",
            "IRRG orthophoto (TOP)",
            ("IR", "R", "G"),
            "uint8",
            "DN",
            "ISPRS Vaihingen true orthophoto, 9 cm GSD, bands IR-R-G as stored on disk",
            (
                _vaihingen_rule(
                    r"top_mosaic_09cm_area(?P<n>\d+)\.tif", ("top",), "top/top_mosaic_09cm_area{N}.tif", V_MAIN
                ),
            ),
        ),
        ModalityRule(
            "dsm",
            "DSM",
            ("height",),
            "float32",
            "m",
            "ISPRS Vaihingen digital surface model, absolute heights in metres (float32 as delivered)",
            (
                _vaihingen_rule(
                    r"dsm_09cm_matching_area(?P<n>\d+)\.tif", ("dsm",), "dsm/dsm_09cm_matching_area{N}.tif", V_MAIN
                ),
            ),
        ),
        ModalityRule(
            "ndsm",
            "nDSM",
            ("height",),
            "float32",
            "m",
            "normalised DSM by M. Gerke (ndsm/ndsm_09cm_matching_area{N}.bmp), delivered as 8-bit "
            "decimetres, stored in metres (value / 10)",
            (
                FileRule(
                    r"ndsm_09cm_matching_area(?P<n>\d+)\.bmp",
                    ("ndsm",),
                    _area,
                    "ndsm/ndsm_09cm_matching_area{N}.bmp",
                    expect=lambda source, _p: f"ndsm/ndsm_09cm_matching_{source}.bmp",
                ),
            ),
            required=False,
            source_dtypes=("uint8",),
            convert=lambda array: array.astype(np.float32) / np.float32(10),
            note="nDSM stored in metres: the 8-bit decimetre values of ndsm_09cm_matching_area{N}.bmp divided by 10",
            absent_note="nDSM not found (ndsm/ndsm_09cm_matching_area{N}.bmp, M. Gerke's normalised DSM): "
            "stored DSM only",
        ),
    ),
    labels=(
        LabelRule(
            "full",
            "full (non-eroded) ground truth",
            (
                _vaihingen_rule(
                    r"top_mosaic_09cm_area(?P<n>\d+)\.tif",
                    (_stem(V_COMPLETE), ""),
                    "top_mosaic_09cm_area{N}.tif (flat)",
                    V_COMPLETE,
                ),
                _vaihingen_rule(
                    r"top_mosaic_09cm_area(?P<n>\d+)\.tif",
                    ("gts_for_participants",),
                    "gts_for_participants/top_mosaic_09cm_area{N}.tif",
                    V_MAIN,
                ),
            ),
            FULL_DECODER,
        ),
        LabelRule(
            "eroded",
            "eroded ground truth (_noBoundary)",
            (
                _vaihingen_rule(
                    r"top_mosaic_09cm_area(?P<n>\d+)_noBoundary\.tif",
                    (_stem(V_ERODED_COMPLETE), ""),
                    "top_mosaic_09cm_area{N}_noBoundary.tif (flat)",
                    V_ERODED_COMPLETE,
                ),
                _vaihingen_rule(
                    r"top_mosaic_09cm_area(?P<n>\d+)_noBoundary\.tif",
                    ("gts_eroded_for_participants", _stem(V_ERODED_PARTICIPANTS)),
                    "gts_eroded_for_participants/top_mosaic_09cm_area{N}_noBoundary.tif",
                    V_ERODED_PARTICIPANTS,
                ),
            ),
            ERODED_DECODER,
        ),
    ),
    splits=_vaihingen_splits,
    hints={"unlabelled": f"the test-area ground truth is in {V_COMPLETE} and {V_ERODED_COMPLETE}"},
)


# -- Potsdam -----------------------------------------------------------------------------------------------
P_TRAIN = (
    "2_10 2_11 2_12 3_10 3_11 3_12 4_10 4_11 4_12 5_10 5_11 5_12 6_10 6_11 6_12 6_7 6_8 6_9 7_10 7_11 7_12 7_7 7_8 7_9"
).split()
P_TEST = "5_15 6_15 6_13 3_13 4_14 6_14 5_14 2_13 4_15 2_14 5_13 4_13 3_14 7_13".split()
P_VAL = ("2_10",)  # GeoSeg-style validation tile
P_BAD_LABELS = "7_10"  # often excluded for annotation errors
P_LINEAGE_TRAIN = ("6_10 7_10 2_12 3_11 2_10 7_8 5_10 3_12 5_12 7_11 7_9 6_9 7_7 4_12 6_8 6_12 6_7 4_11").split()
P_LINEAGE_TEST = "4_10 5_11 2_11 3_10 6_11 7_12".split()


def _pair(match, _prefix) -> str:
    return f"{int(match['i'])}_{int(match['j'])}"


def _padded(source: str) -> str:
    i, j = source.split("_")
    return f"{int(i):02d}_{int(j):02d}"


def _potsdam_rule(pattern: str, folder: str, shown: str, archive: str | None = None, flat: bool = True) -> FileRule:
    """A Potsdam file kind: `pattern`/`shown` use {i}_{j} (or {ii}_{jj} zero-padded) for the tile id."""
    regex = (
        pattern.replace("{ii}_{jj}", r"(?P<i>\d+)_(?P<j>\d+)")
        .replace("{i}_{j}", r"(?P<i>\d+)_(?P<j>\d+)")
        .replace(".", r"\.")
    )

    def expect(source: str, _primary: Entry) -> str:
        return f"{folder}/" + pattern.replace("{ii}_{jj}", _padded(source)).replace("{i}_{j}", source)

    return FileRule(
        regex,
        (folder, "") if flat else (folder,),
        _pair,
        f"{folder}/{shown}",
        archives=(archive or f"{folder}.zip",),
        expect=expect,
    )


def _potsdam_optical(folder: str, suffix: str, bands: tuple[str, ...], order: str) -> ModalityRule:
    return ModalityRule(
        "optical",
        f"{suffix} orthophoto",
        bands,
        "uint8",
        "DN",
        f"ISPRS Potsdam true orthophoto from {folder}, 5 cm GSD, bands {order} as stored on disk",
        (_potsdam_rule(f"top_potsdam_{{i}}_{{j}}_{suffix}.tif", folder, f"top_potsdam_{{i}}_{{j}}_{suffix}.tif"),),
        note=f"optical from {folder} (bands {', '.join(bands)})",
    )


def _ids(ids, without=()) -> list[str]:
    return [source for source in ids if source not in without]


def _potsdam_splits(_sources: Mapping[str, Entry]) -> list[SplitDef]:
    return [
        SplitDef(
            "official",
            {"train": _ids(P_TRAIN, P_VAL), "val": list(P_VAL), "test": list(P_TEST)},
            "ISPRS official 24 train / 14 test tiles; val = tile 2_10 taken out of train (GeoSeg-style)",
            default=True,
        ),
        SplitDef(
            "official-no-7_10",
            {"train": _ids(P_TRAIN, (*P_VAL, P_BAD_LABELS)), "val": list(P_VAL), "test": list(P_TEST)},
            "official without tile 7_10 (annotation errors reported) in train; val 2_10",
        ),
        SplitDef(
            "lineage-18-6",
            {"train": _ids(P_LINEAGE_TRAIN, P_VAL), "val": list(P_VAL), "test": list(P_LINEAGE_TEST)},
            "multimodal-fusion lineage: 18 train / 6 test of the 24 labelled tiles; val = 2_10 taken out of "
            "train (mmbench's choice)",
        ),
    ]


POTSDAM = Layout(
    format="isprs-potsdam",
    converter="mmbench.datasets.converters.isprs",
    version=VERSION,
    classes=CLASSES,
    palette=PALETTE,
    modalities=(
        _potsdam_optical("4_Ortho_RGBIR", "RGBIR", ("R", "G", "B", "IR"), "R-G-B-IR"),
        _potsdam_optical("3_Ortho_IRRG", "IRRG", ("IR", "R", "G"), "IR-R-G"),
        _potsdam_optical("2_Ortho_RGB", "RGB", ("R", "G", "B"), "R-G-B"),
        ModalityRule(
            "dsm",
            "DSM",
            ("height",),
            "float32",
            "m",
            "ISPRS Potsdam digital surface model, absolute heights in metres (float32 as delivered)",
            (_potsdam_rule("dsm_potsdam_{ii}_{jj}.tif", "1_DSM", "dsm_potsdam_{ii}_{jj}.tif"),),
        ),
        ModalityRule(
            "ndsm",
            "nDSM",
            ("height",),
            "float32",
            "DN (8-bit lastools nDSM)",
            "normalised DSM from 1_DSM_normalisation (dsm_potsdam_{ii}_{jj}_normalized_lastools.jpg), "
            "8-bit JPEG values stored unchanged as float32; ISPRS documents no metre scale",
            (
                _potsdam_rule(
                    "dsm_potsdam_{ii}_{jj}_normalized_lastools.jpg",
                    "1_DSM_normalisation",
                    "dsm_potsdam_{ii}_{jj}_normalized_lastools.jpg",
                ),
            ),
            required=False,
            source_dtypes=("uint8",),
            convert=lambda array: array.astype(np.float32),
            note="nDSM (lastools, 8-bit JPEG) stored as float32 values as delivered, units "
            "'DN (8-bit lastools nDSM)': no metre scale is documented",
            absent_note="nDSM not found (1_DSM_normalisation/dsm_potsdam_{ii}_{jj}_normalized_lastools.jpg):"
            " stored DSM only",
        ),
    ),
    labels=(
        LabelRule(
            "full",
            "full (non-eroded) ground truth",
            (
                _potsdam_rule("top_potsdam_{i}_{j}_label.tif", "5_Labels_all", "top_potsdam_{i}_{j}_label.tif"),
                _potsdam_rule(
                    "top_potsdam_{i}_{j}_label.tif",
                    "5_Labels_for_participants",
                    "top_potsdam_{i}_{j}_label.tif",
                    flat=False,
                ),
            ),
            FULL_DECODER,
        ),
        LabelRule(
            "eroded",
            "eroded ground truth (_noBoundary)",
            (
                _potsdam_rule(
                    "top_potsdam_{i}_{j}_label_noBoundary.tif",
                    "5_Labels_all_noBoundary",
                    "top_potsdam_{i}_{j}_label_noBoundary.tif",
                ),
                _potsdam_rule(
                    "top_potsdam_{i}_{j}_label_noBoundary.tif",
                    "5_Labels_for_participants_no_Boundary",
                    "top_potsdam_{i}_{j}_label_noBoundary.tif",
                    flat=False,
                ),
            ),
            ERODED_DECODER,
        ),
    ),
    splits=_potsdam_splits,
    hints={"unlabelled": "the ground truth of all 38 tiles is in 5_Labels_all.zip and 5_Labels_all_noBoundary.zip"},
)

# The implementations the converter specs (mmbench.datasets.specs) name as their targets.
VAIHINGEN_CONVERTER = LayoutConverter(VAIHINGEN)
POTSDAM_CONVERTER = LayoutConverter(POTSDAM)
