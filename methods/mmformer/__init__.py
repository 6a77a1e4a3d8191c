"""mmFormer (Zhang et al., MICCAI 2022), 2-D port: spec only; the model is in `model.py`."""

from mmbench.plugins import MethodSpec

SPEC = MethodSpec(
    name="mmformer",
    summary="Per-modality conv encoders, intra- and inter-modal transformers, masked fusion decoder, deep supervision.",
    version="2",
    target="mmbench.methods.mmformer.model:MmFormer",
    paper="https://arxiv.org/abs/2206.02425",
    modalities=(),
    min_modalities=1,
    needs_all_modalities_for_training=True,
    defaults="mmbench.methods.mmformer:mmformer.yaml",
)
