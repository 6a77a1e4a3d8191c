"""ShaSpec (Wang et al., CVPR 2023), 2-D port for remote sensing: spec only; the model is in `model.py`."""

from mmbench.plugins import MethodSpec

SPEC = MethodSpec(
    name="shaspec",
    summary="Shared encoder over every modality + specific encoders; missing features from the shared ones.",
    version="4",
    target="mmbench.methods.shaspec.model:ShaSpec",
    paper="https://arxiv.org/abs/2307.14126",
    modalities=(),
    min_modalities=2,
    needs_all_modalities_for_training=True,
    capacity="reference-backbone",  # STARS' ResNet + FPN at its widths (tests/test_capacity_band.py)
    defaults="mmbench.methods.shaspec:shaspec.yaml",
)
