"""DIS2 (Kieu et al., arXiv 2601.13502), the authors' DLKD model for M modalities: spec only; the model is in
`model.py`."""

from mmbench.plugins import MethodSpec

SPEC = MethodSpec(
    name="dis2",
    summary="Compensation encoders for missing modalities, per-pattern hybrid fusion + class-wise decoders, "
    "distillation from the full-modality branch.",
    version="3",  # 3: CPU defaults widened to STARS' capacity (dis2.yaml)
    target="mmbench.methods.dis2.model:Dis2",
    paper="https://arxiv.org/abs/2601.13502",
    modalities=(),
    min_modalities=2,
    needs_all_modalities_for_training=True,
    defaults="mmbench.methods.dis2:dis2.yaml",
)
