"""Comparison baselines: `unimodal`, `early-fusion` and `modality-dropout` (specs only; light import).

They share STARS' encoder/decoder family (ResNet + FPN, `mmbench.methods.blocks.common`) at the same
default widths, so differences in the benchmark come from how each one treats missing modalities.
"""

from mmbench.plugins import MethodSpec

UNIMODAL = MethodSpec(
    name="unimodal",
    summary="One ResNet+FPN per modality, each trained alone; a scenario uses its best available model.",
    version="1",
    target="mmbench.methods.baselines.unimodal:Unimodal",
    modalities=(),
    min_modalities=1,
    needs_all_modalities_for_training=True,
    capacity="reference-backbone",  # STARS' ResNet + FPN at its widths (tests/test_capacity_band.py)
    defaults="mmbench.methods.baselines:unimodal.yaml",
)

EARLY_FUSION = MethodSpec(
    name="early-fusion",
    summary="Channel concatenation into one ResNet+FPN, trained on complete data; missing inputs filled.",
    version="1",
    target="mmbench.methods.baselines.early_fusion:EarlyFusion",
    modalities=(),
    min_modalities=1,
    needs_all_modalities_for_training=True,
    capacity="reference-backbone",  # STARS' ResNet + FPN at its widths (tests/test_capacity_band.py)
    defaults="mmbench.methods.baselines:early_fusion.yaml",
)

MODALITY_DROPOUT = MethodSpec(
    name="modality-dropout",
    summary="Late fusion of per-modality ResNet features (mean or concat) trained with random modality subsets.",
    version="1",
    target="mmbench.methods.baselines.modality_dropout:ModalityDropout",
    modalities=(),
    min_modalities=1,
    needs_all_modalities_for_training=True,
    capacity="reference-backbone",  # STARS' ResNet + FPN at its widths (tests/test_capacity_band.py)
    defaults="mmbench.methods.baselines:modality_dropout.yaml",
)
