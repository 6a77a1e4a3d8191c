"""Specs of the built-in datasets and converters, registered through the `mmbench.datasets` and
`mmbench.converters` entry-point groups (pyproject.toml).

Kept free of heavy imports: `mmbench list` imports this module, never the generator, the converters or h5py.
A converter's `version` is the one its layout writes into every store's provenance (docs/converters.md);
tests/test_converters.py checks that the two agree.
"""

from mmbench.plugins import ConverterSpec, DatasetSpec

SYNTHETIC = DatasetSpec(
    name="synthetic",
    summary=(
        "Seeded synthetic urban scenes (optical IRRG, DSM, SAR; six ISPRS classes) where each modality matters"
        " and a redundancy knob sets how much the others can recover."
    ),
    version="3",  # 2: declares augmentation limits (its SAR looks from the left); 3: generator version 2 by default
    target="mmbench.datasets.synthetic:SyntheticDataset",
    paper=None,
    modalities=("optical", "dsm", "sar"),
    classes=("impervious_surface", "building", "low_vegetation", "tree", "car", "clutter"),
    defaults="mmbench.datasets:synthetic.yaml",
)

ISPRS_VAIHINGEN = ConverterSpec(
    name="isprs-vaihingen",
    summary="ISPRS Vaihingen 2D semantic labeling: IRRG orthophotos, DSM, optional nDSM; full and eroded labels.",
    version="2",
    target="mmbench.datasets.converters.isprs:VAIHINGEN_CONVERTER",
    modalities=("optical", "dsm", "ndsm"),
)

ISPRS_POTSDAM = ConverterSpec(
    name="isprs-potsdam",
    summary="ISPRS Potsdam 2D semantic labeling: RGBIR, IRRG or RGB orthophotos, DSM, optional nDSM; full and eroded.",
    version="2",
    target="mmbench.datasets.converters.isprs:POTSDAM_CONVERTER",
    modalities=("optical", "dsm", "ndsm"),
)

WHU_OPT_SAR = ConverterSpec(
    name="whu-opt-sar",
    summary="WHU-OPT-SAR: GaoFen-1 optical (R, G, B, NIR) and GaoFen-3 SAR sheets, eight land-cover classes.",
    version="2",
    target="mmbench.datasets.converters.whu_opt_sar:WHU_OPT_SAR_CONVERTER",
    modalities=("optical", "sar"),
)

EARTHMISS = ConverterSpec(
    name="earthmiss",
    summary="EarthMiss: RGB optical and SAR images of cities worldwide, eight classes; the official city split.",
    version="2",
    target="mmbench.datasets.converters.earthmiss:EARTHMISS_CONVERTER",
    modalities=("optical", "sar"),
)
