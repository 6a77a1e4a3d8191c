"""WHU-OPT-SAR (Li et al., JAG 2022): GaoFen-1 optical (R, G, B, NIR) and GaoFen-3 SAR over Hubei, 5 m.

Layout `<ROOT>/optical/{sheet}.tif`, `<ROOT>/sar/{sheet}.tif`, `<ROOT>/lbl/{sheet}.tif` (map-sheet names such as
NH49E001013). Pixel types are kept as delivered, because the SAR bit depth is not documented. Labels are
0, 10, ..., 70; background (0) is kept as class 0, since whether it is scored is a protocol decision.

There is no official split: `seeded-6-2-2` assigns whole images (never tiles of one image to two parts, which
would leak neighbouring pixels) to train/val/test 60/20/20. The order is the sha256 of "0:<sheet>" (seed 0),
which depends on nothing but the sheet names: no random generator whose stream could change between numpy
versions, and the assignment of the 100 images is reproducible from the names alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from mmbench.datasets.converters.common import LayoutConverter
from mmbench.datasets.converters.entry import Entry
from mmbench.datasets.converters.labels import ValueDecoder
from mmbench.datasets.converters.layout import FileRule, LabelRule, Layout, ModalityRule, SplitDef

VERSION = "2"  # 2: area metadata, mean padding, statistics counting each area pixel once
CLASSES = ("background", "farmland", "city", "village", "water", "forest", "road", "others")
SPLIT_SEED = 0
FRACTIONS = (0.6, 0.2, 0.2)


def _sheet(match, _prefix) -> str:
    return match["sheet"]


def _rule(folder: str) -> FileRule:
    return FileRule(
        r"(?P<sheet>[^/]+)\.tiff?",
        (folder,),
        _sheet,
        f"{folder}/{{sheet}}.tif",
        archives=None,
        expect=lambda source, _primary: f"{folder}/{source}.tif",
    )


def seeded_order(names: Sequence[str], seed: int = SPLIT_SEED) -> list[str]:
    """Names in a pseudo-random order fixed by `seed` and the names themselves (sha256 of "seed:name")."""
    return sorted(names, key=lambda name: hashlib.sha256(f"{seed}:{name}".encode()).hexdigest())


def split_by_image(names: Sequence[str], seed: int = SPLIT_SEED) -> dict[str, list[str]]:
    """60/20/20 of the images; val and test get at least one image each when there are three or more."""
    order = seeded_order(names, seed)
    count = len(order)
    val = round(count * FRACTIONS[1])
    test = round(count * FRACTIONS[2])
    if count >= 3:
        val, test = max(val, 1), max(test, 1)
    train = count - val - test
    return {"train": order[:train], "val": order[train : train + val], "test": order[train + val :]}


def _splits(sources: Mapping[str, Entry]) -> list[SplitDef]:
    return [
        SplitDef(
            "seeded-6-2-2",
            split_by_image(list(sources)),
            f"no official split: whole images assigned 60/20/20 to train/val/test in the order of "
            f"sha256('{SPLIT_SEED}:<sheet>') (mmbench's seeded split, seed {SPLIT_SEED})",
            default=True,
        )
    ]


WHU_OPT_SAR = Layout(
    format="whu-opt-sar",
    converter="mmbench.datasets.converters.whu_opt_sar",
    version=VERSION,
    classes=CLASSES,
    palette=None,
    modalities=(
        ModalityRule(
            "optical",
            "optical image",
            ("R", "G", "B", "NIR"),
            None,
            "DN",
            "GaoFen-1 optical, 5 m, bands R, G, B, NIR; pixel type as delivered",
            (_rule("optical"),),
        ),
        ModalityRule(
            "sar",
            "SAR image",
            ("SAR",),
            None,
            "DN",
            "GaoFen-3 SAR, 5 m, single band; pixel type as delivered",
            (_rule("sar"),),
        ),
    ),
    labels=(
        LabelRule(
            "full",
            "label image",
            (_rule("lbl"),),
            ValueDecoder(
                tuple((10 * index, index) for index in range(len(CLASSES))),
                "WHU-OPT-SAR labels are 0 (background), 10 farmland, 20 city, 30 village, 40 water, 50 forest, 60 road "
                "and 70 others",
            ),
            indexed=True,
        ),
    ),
    splits=_splits,
    unlabelled="error",
    notes=(
        "background (label 0) is stored as class 0 'background'; whether it is scored or ignored (SOLC "
        "ignores it) is a protocol decision",
    ),
)

# The implementations the converter specs (mmbench.datasets.specs) name as their targets.
WHU_OPT_SAR_CONVERTER = LayoutConverter(WHU_OPT_SAR)
