"""EarthMiss (Zhou et al., RSE 2025): 0.6 m optical and SAR pairs from 13 cities, 8 classes.

Layout `root/<City>/images/RGB/<name>.tif|png`, SAR `images/SAR/` with `_SAR` inserted in the name, masks
`masks/` with `_mask` inserted (pairing as in the upstream loader, which removes the suffix and compares names).
Masks store 0 = ignore and 1..8 = classes; the upstream loader subtracts 1, so mmbench stores 0 as ignore 255 and
k as k-1. The city split is `configs/metadata/EarthMiss.py`'s; upstream `configs/base/EarthMiss.py` builds its
"val" loader from the *test* cities, which mmbench does not copy.
"""

from __future__ import annotations

from collections.abc import Mapping

from mmbench.datasets.converters.common import LayoutConverter
from mmbench.datasets.converters.entry import Entry
from mmbench.datasets.converters.labels import ValueDecoder
from mmbench.datasets.converters.layout import FileRule, LabelRule, Layout, ModalityRule, SplitDef

VERSION = "2"  # 2: area metadata, mean padding, statistics counting each area pixel once
CLASSES = ("background", "building", "road", "water", "barren", "forest", "agricultural", "playground")
PALETTE = (
    (255, 255, 255),
    (255, 0, 0),
    (255, 255, 0),
    (0, 0, 255),
    (159, 129, 183),
    (0, 255, 0),
    (255, 195, 128),
    (165, 0, 165),
)
TRAIN_CITIES = (
    "America-Eugene",
    "America-Louisville",
    "French-Paris",
    "Morocco-Casablanca",
    "Nanjing",
    "Netherlands-Rotterdam",
    "Singapore",
)
VAL_CITIES = ("Australia-PortHedland", "America-Pake", "Russian-Engels")
TEST_CITIES = ("America-NewYork", "Japan-Hakodate", "Peru-Callao")
_EXTENSIONS = r"\.(?P<ext>tif|tiff|png)"


def _ident(token: str):
    def ident(match, prefix: tuple[str, ...]) -> str | None:
        if not prefix:
            return None  # the city folder is missing
        return f"{prefix[-1]}_{match['stem'].replace(token, '')}"

    return ident


def _expect(folder: str, token: str):
    def expect(_source: str, primary: Entry) -> str:
        city, stem = primary.parts[-4], primary.name.rsplit(".", 1)[0]
        return f"{city}/{folder}/{stem}{token}.tif|png"

    return expect


def _rule(folder: str, token: str) -> FileRule:
    stem = r"(?P<stem>.+)" if not token else rf"(?P<stem>.*{token}.*)"
    return FileRule(
        stem + _EXTENSIONS,
        (folder,),
        _ident(token),
        f"<City>/{folder}/<name>{token}.tif|png",
        archives=None,
        expect=_expect(folder, token),
    )


def city_of(primary: Entry) -> str:
    return primary.parts[-4]  # <City>/images/RGB/<name>


def _splits(sources: Mapping[str, Entry]) -> list[SplitDef]:
    by_city: dict[str, list[str]] = {}
    for source, primary in sources.items():
        by_city.setdefault(city_of(primary), []).append(source)

    def of(cities) -> list[str]:
        return [source for city in cities for source in by_city.get(city, [])]

    unknown = sorted(set(by_city) - set(TRAIN_CITIES + VAL_CITIES + TEST_CITIES))
    notes = (
        (f"cities outside the official split (their tiles are in no part): {', '.join(unknown)}",) if unknown else ()
    )
    return [
        SplitDef(
            "official",
            {"train": of(TRAIN_CITIES), "val": of(VAL_CITIES), "test": of(TEST_CITIES)},
            "EarthMiss city split of configs/metadata/EarthMiss.py: train "
            + ", ".join(TRAIN_CITIES)
            + "; val "
            + ", ".join(VAL_CITIES)
            + "; test "
            + ", ".join(TEST_CITIES)
            + " (upstream configs/base/EarthMiss.py validates on the test cities; mmbench does not)",
            default=True,
            notes=notes,
        )
    ]


EARTHMISS = Layout(
    format="earthmiss",
    converter="mmbench.datasets.converters.earthmiss",
    version=VERSION,
    classes=CLASSES,
    palette=PALETTE,
    modalities=(
        ModalityRule(
            "optical",
            "RGB image",
            ("R", "G", "B"),
            "uint8",
            "DN",
            "EarthMiss optical, 0.6 m, bands R, G, B",
            (_rule("images/RGB", ""),),
        ),
        ModalityRule(
            "sar",
            "SAR image",
            ("SAR",),
            None,
            "DN",
            "EarthMiss SAR, 0.6 m, single band; pixel type as delivered (8-bit)",
            (_rule("images/SAR", "_SAR"),),
        ),
    ),
    labels=(
        LabelRule(
            "full",
            "mask",
            (_rule("masks", "_mask"),),
            ValueDecoder(
                ((0, 255), *((value, value - 1) for value in range(1, len(CLASSES) + 1))),
                "EarthMiss masks are 0 (ignore) and 1..8 (Background, Building, Road, Water, Barren, Forest, "
                "Agricultural, Playground)",
            ),
            indexed=True,
        ),
    ),
    splits=_splits,
    unlabelled="error",
    notes=(
        "masks: 0 stored as ignore 255, classes 1..8 stored as 0..7 (as the upstream loader's 'mask - 1')",
        "split 'official' takes val from the val cities (Australia-PortHedland, America-Pake, Russian-Engels); "
        "upstream configs/base/EarthMiss.py builds its val loader from the test cities",
    ),
)

# The implementations the converter specs (mmbench.datasets.specs) name as their targets.
EARTHMISS_CONVERTER = LayoutConverter(EARTHMISS)
