"""Imputation baselines: a generator fills in the missing modality, then a full-modality segmenter runs.

`ae` (encoder-decoder generators, L1). The adversarial variant (`cgan`) needs an alternating
generator/discriminator update that the training engine does not offer yet; it is not registered.
"""

from mmbench.plugins import MethodSpec

AE = MethodSpec(
    name="ae",
    summary="Autoencoder imputation: per-modality U-Net generators (L1) complete an early-fusion segmenter input.",
    version="1",
    target="mmbench.methods.imputation.model:AutoencoderImputation",
    paper="https://arxiv.org/abs/2509.11102",
    modalities=(),
    min_modalities=2,
    needs_all_modalities_for_training=True,
    defaults="mmbench.methods.imputation:ae.yaml",
)
