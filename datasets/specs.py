"""Specs of the built-in datasets, registered through the `mmbench.datasets` entry-point group.

Kept free of heavy imports: `mmbench list` imports this module, never the generator or h5py.
"""

from mmbench.plugins import DatasetSpec

SYNTHETIC = DatasetSpec(
    name="synthetic",
    summary="Seeded synthetic urban scenes (optical IRRG, DSM, SAR; six ISPRS classes) where each modality matters.",
    version="1",
    target="mmbench.datasets.synthetic:SyntheticDataset",
    paper=None,
    modalities=("optical", "dsm", "sar"),
    classes=("impervious_surface", "building", "low_vegetation", "tree", "car", "clutter"),
    defaults="mmbench.datasets:synthetic.yaml",
)
