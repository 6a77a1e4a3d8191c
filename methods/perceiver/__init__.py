"""PerceiverIO for remote-sensing segmentation (Kieu et al., arXiv 2307.03388): spec only."""

from mmbench.plugins import MethodSpec

SPEC = MethodSpec(
    name="perceiver",
    summary="PerceiverIO latent cross-attention with a 3-D convolution local module over the modality axis.",
    version="2",  # 2: CPU defaults widened to STARS' capacity (perceiver.yaml)
    target="mmbench.methods.perceiver.model:Perceiver",
    paper="https://arxiv.org/abs/2307.03388",
    modalities=(),
    min_modalities=1,
    needs_all_modalities_for_training=True,
    defaults="mmbench.methods.perceiver:perceiver.yaml",
)
