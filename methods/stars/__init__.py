"""STARS: Shared-specific Translation and Alignment for missing-modality Remote Sensing segmentation.

Light on purpose (registered spec only); the model lives in `model.py`. mmbench's STARS is a
reconstruction of the published design (arXiv 2601.17342; the method section could not be consulted):
every reconstructed choice is a config option, documented in docs/methods/stars.md.
"""

from mmbench.plugins import MethodSpec

SPEC = MethodSpec(
    name="stars",
    summary="Shared/specific encoders, stop-gradient bidirectional translation, class-balanced PSA alignment.",
    version="3",
    target="mmbench.methods.stars.model:Stars",
    paper="https://arxiv.org/abs/2601.17342",
    modalities=(),
    min_modalities=2,
    needs_all_modalities_for_training=True,
    defaults="mmbench.methods.stars:stars.yaml",
)
