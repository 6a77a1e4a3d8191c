"""Imputation baselines: a generator fills in the missing modality, then a full-modality segmenter runs.

`ae` (encoder-decoder generators, L1) and `cgan` (pix2pix generators and conditional PatchGANs, trained by
the engine's alternating generator/discriminator update). The segmenter is chosen by `segmenter`:
`early-fusion` (default, ResNet + FPN) or `mmformer` (GEMMNet's mmFormer-2D, to compare imputers alone);
methods/imputation/segmenters.py.
"""

from mmbench.plugins import MethodSpec

AE = MethodSpec(
    name="ae",
    summary="Autoencoder imputation: U-Net generators (L1) complete the input; early-fusion or mmFormer-2D segmenter.",
    version="1",
    target="mmbench.methods.imputation.model:AutoencoderImputation",
    paper="https://arxiv.org/abs/2509.11102",
    modalities=(),
    min_modalities=2,
    needs_all_modalities_for_training=True,
    capacity="reference-backbone",  # STARS' ResNet + FPN at its widths (tests/test_capacity_band.py)
    defaults="mmbench.methods.imputation:ae.yaml",
)

CGAN = MethodSpec(
    name="cgan",
    summary="cGAN imputation: pix2pix generators + conditional PatchGANs (alternating); early-fusion or mmFormer-2D.",
    version="1",
    target="mmbench.methods.imputation.cgan:ConditionalGanImputation",
    paper="https://arxiv.org/abs/2509.11102",
    modalities=(),
    min_modalities=2,
    needs_all_modalities_for_training=True,
    capacity="reference-backbone",  # STARS' ResNet + FPN at its widths (tests/test_capacity_band.py)
    defaults="mmbench.methods.imputation:cgan.yaml",
)
