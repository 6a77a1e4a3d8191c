"""SGMA (Wen et al., arXiv 2603.02505), a reconstruction: spec only; the model is in `model.py`."""

from mmbench.plugins import MethodSpec

SPEC = MethodSpec(
    name="sgma",
    summary="Prototype-guided robustness-weighted fusion (SGF), modality-aware sampling of fragile modalities (MAS).",
    version="1",
    target="mmbench.methods.sgma.model:Sgma",
    paper="https://arxiv.org/abs/2603.02505",
    modalities=(),
    min_modalities=1,
    needs_all_modalities_for_training=True,
    capacity="reference-backbone",  # STARS' ResNet + FPN at its widths (tests/test_capacity_band.py)
    defaults="mmbench.methods.sgma:sgma.yaml",
)
