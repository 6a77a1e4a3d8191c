"""GEMMNet (Kieu et al., DICTA 2025, arXiv 2509.11102): spec only; the model is in `model.py`."""

from mmbench.plugins import MethodSpec

SPEC = MethodSpec(
    name="gemmnet",
    summary="Transformer-enhanced GAN generators impute missing modalities; HyFEx/HyFMA fusion; CoLoss.",
    version="4",
    target="mmbench.methods.gemmnet.model:Gemmnet",
    paper="https://arxiv.org/abs/2509.11102",
    modalities=(),
    min_modalities=2,
    needs_all_modalities_for_training=True,
    defaults="mmbench.methods.gemmnet:gemmnet.yaml",
)
