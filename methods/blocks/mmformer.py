"""mmFormer-2D: a 2-D port of mmFormer for remote sensing (github.com/YaoZhang93/mmFormer).

Shared: the `mmformer` method is this network unchanged (methods/mmformer/model.py), `gemmnet` runs it on
imputed inputs (methods/gemmnet/model.py subclasses `MmFormer`) and `dis2` builds its hybrid fusion from
`PreNormConv` and `RegionFusion` (methods/dis2/model.py). A numerical change here changes all three.

- Per-modality encoders, 5 stages (widths basic_dims x 1/2/4/8/16, strides 1..16), pre-norm residual
  blocks (InstanceNorm -> LeakyReLU(0.2) -> 3x3 conv, reflect padding).
- Intra-modal transformer per modality on the 1/16 bottleneck (1x1 conv to tokens, learned positions
  interpolated to the grid, one pre-norm layer); missing modalities' features and tokens are zeroed
  per sample (MaskModal) with `torch.where`; an inter-modal transformer over all modalities' tokens.
- Fusion decoder: at every scale the M masked encoder features are region-fused (concat -> 1x1 ->
  3x3 -> 1x1), merged with the upsampled coarser output; deep-supervision heads at 1/16..1/2.
- A separate decoder, shared by all modalities, segments each modality on its own features
  (training only).
Loss: fused (wCE + Dice) + sep_weight x sum over modalities of sep (wCE + Dice), on the samples that
have the modality, + deep_supervision_weight x sum over scales (wCE + Dice). Training masks: per sample,
uniform over the 2^M - 1 subsets. Attention runs through `mmbench.methods.blocks.attention` (xformers on CUDA when
installed, SDPA otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbench.method import SegmentationMethod, TrainStep
from mmbench.methods.blocks.attention import TransformerBlock
from mmbench.methods.blocks.common import check_sampler, sampled_availability, upsample, weighted_ce_dice

STAGES = 5


class PreNormConv(nn.Module):
    """InstanceNorm -> LeakyReLU(0.2) -> 3x3 conv with reflect padding (mmFormer's `general_conv3d`, 2-D)."""

    def __init__(self, inp: int, out: int, stride: int = 1) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(inp, affine=True)
        self.conv = nn.Conv2d(inp, out, 3, stride=stride, padding=1, padding_mode="reflect")

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.leaky_relu(self.norm(x), 0.2))


class EncoderStage(nn.Module):
    def __init__(self, inp: int, out: int, stride: int) -> None:
        super().__init__()
        self.entry = nn.Conv2d(inp, out, 3, stride=stride, padding=1, padding_mode="reflect")
        self.block = nn.Sequential(PreNormConv(out, out), PreNormConv(out, out))

    def forward(self, x: Tensor) -> Tensor:
        x = self.entry(x)
        return x + self.block(x)


class ModalityEncoder(nn.Module):
    def __init__(self, in_channels: int, dims: Sequence[int]) -> None:
        super().__init__()
        widths = [in_channels, *dims]
        self.stages = nn.ModuleList([EncoderStage(widths[i], widths[i + 1], 1 if i == 0 else 2) for i in range(STAGES)])

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class Tokens(nn.Module):
    """Bottleneck map <-> tokens with learned positions (interpolated when the grid differs)."""

    def __init__(self, channels: int, dim: int, grid: int) -> None:
        super().__init__()
        self.to_tokens = nn.Conv2d(channels, dim, 1)
        self.position = nn.Parameter(torch.zeros(1, dim, grid, grid))
        nn.init.trunc_normal_(self.position, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.to_tokens(x)
        position = self.position
        if position.shape[-2:] != tokens.shape[-2:]:
            position = F.interpolate(position, size=tokens.shape[-2:], mode="bilinear", align_corners=False)
        return (tokens + position).flatten(2).transpose(1, 2)  # (B, L, dim)


class RegionFusion(nn.Module):
    """M masked feature maps -> one: concat -> 1x1 -> 3x3 -> 1x1 (mmFormer's `fusion_prenorm`)."""

    def __init__(self, channels: int, modalities: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(modalities * channels, channels, 1),
            PreNormConv(channels, channels),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class Decoder(nn.Module):
    """U-Net decoder from the 1/16 bottleneck to full resolution, with a head per scale."""

    def __init__(self, dims: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.reduce = nn.ModuleList([nn.Conv2d(dims[i + 1], dims[i], 1) for i in range(STAGES - 1)])
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(2 * dims[i], dims[i], 1), PreNormConv(dims[i], dims[i]))
                for i in range(STAGES - 1)
            ]
        )
        self.heads = nn.ModuleList([nn.Conv2d(d, num_classes, 1) for d in dims])

    def forward(self, skips: Sequence[Tensor], bottleneck: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(full-resolution logits, auxiliary logits at 1/16, 1/8, 1/4, 1/2)."""
        x = bottleneck
        auxiliary = [self.heads[STAGES - 1](x)]
        for level in range(STAGES - 2, -1, -1):
            up = F.interpolate(
                self.reduce[level](x), size=skips[level].shape[-2:], mode="bilinear", align_corners=False
            )
            x = self.blocks[level](torch.cat([up, skips[level]], dim=1))
            if level:
                auxiliary.append(self.heads[level](x))
        return self.heads[0](x), auxiliary


class MmFormer(SegmentationMethod):
    # Overrides of the defaults giving the narrowest network of the same family, for fast CPU checks
    # (tests/test_comparison_methods.py builds every registered method with them).
    tiny_config: ClassVar[dict[str, Any]] = {
        "basic_dims": 4,
        "transformer_dim": 16,
        "heads": 2,
        "mlp_dim": 32,
        "token_grid": 4,
    }

    def __init__(self, modalities: Mapping[str, int], num_classes: int, config: Mapping[str, Any]) -> None:
        super().__init__(modalities, num_classes, config)
        check_sampler(config["sampler"], "sampler")
        dims = [config["basic_dims"] * 2**i for i in range(STAGES)]
        dim, count = config["transformer_dim"], len(modalities)
        self.dims = dims
        self.encoders = nn.ModuleDict({name: ModalityEncoder(c, dims) for name, c in modalities.items()})
        self.tokens = nn.ModuleDict({name: Tokens(dims[-1], dim, config["token_grid"]) for name in modalities})
        self.intra = nn.ModuleDict(
            {name: TransformerBlock(dim, config["heads"], config["mlp_dim"]) for name in modalities}
        )
        self.inter = TransformerBlock(dim, config["heads"], config["mlp_dim"])
        self.from_tokens = nn.Conv2d(count * dim, dims[-1], 1)
        self.sep_from_tokens = nn.Conv2d(dim, dims[-1], 1)
        self.region_fusion = nn.ModuleList([RegionFusion(d, count) for d in dims[:-1]])
        self.fuse_decoder = Decoder(dims, num_classes)
        self.sep_decoder = Decoder(dims, num_classes)

    # -- split interface: encoders and intra-modal transformers run per modality --------------------
    def encode(self, name: str, x: Tensor) -> dict[str, Any]:
        skips = self.encoders[name](x)
        tokens = self.intra[name](self.tokens[name](skips[-1]))
        return {"skips": skips, "tokens": tokens}

    def _masked(self, features: Mapping[str, Any], available: Tensor) -> tuple[list[list[Tensor]], list[Tensor]]:
        """Per modality (all M, in order): skips and tokens zeroed where the modality is missing."""
        reference = next(iter(features.values()))
        skips, tokens = [], []
        for index, name in enumerate(self.modality_names):
            if name in features:
                mask = available[:, index]
                skips.append([torch.where(mask.view(-1, 1, 1, 1), s, 0.0) for s in features[name]["skips"]])
                tokens.append(torch.where(mask.view(-1, 1, 1), features[name]["tokens"], 0.0))
            else:
                skips.append([torch.zeros_like(s) for s in reference["skips"]])
                tokens.append(torch.zeros_like(reference["tokens"]))
        return skips, tokens

    def _fuse(self, features: Mapping[str, Any], available: Tensor) -> tuple[Tensor, list[Tensor]]:
        skips, tokens = self._masked(features, available)
        length = tokens[0].shape[1]
        mixed = self.inter(torch.cat(tokens, dim=1))  # inter-modal attention over M x L tokens
        grid = skips[0][-1].shape[-2:]
        maps = [
            mixed[:, m * length : (m + 1) * length].transpose(1, 2).reshape(mixed.shape[0], -1, *grid)
            for m in range(len(tokens))
        ]
        bottleneck = self.from_tokens(torch.cat(maps, dim=1))
        fused_skips = [
            fusion(torch.cat([s[level] for s in skips], dim=1)) for level, fusion in enumerate(self.region_fusion)
        ]
        return self.fuse_decoder(fused_skips, bottleneck)

    def decode(self, features: Mapping[str, Any], available: Tensor) -> Tensor:
        logits, _ = self._fuse(features, available)
        return logits

    def forward(self, inputs: Mapping[str, Tensor], available: Tensor) -> Tensor:
        features = self.encode_available(inputs, available)
        return self.decode(features, available)

    # -- training --------------------------------------------------------------------------------
    def training_availability(self, batch: Mapping[str, Any], info: TrainStep) -> Tensor:
        return sampled_availability(self.config["sampler"], batch, info, len(self.modality_names))

    def training_loss(self, batch: Mapping[str, Any], info: TrainStep) -> dict[str, Tensor]:
        inputs, label = batch["inputs"], batch["label"]
        available = self.training_availability(batch, info)
        features = self.encode_available(inputs, available)
        terms = self.segmentation_terms(features, available, label, info.ignore_index)
        return {"loss": terms["loss"], **{name: terms[name].detach() for name in ("fused", "sep", "deep")}}

    def segmentation_terms(
        self, features: Mapping[str, Any], available: Tensor, label: Tensor, ignore_index: int
    ) -> dict[str, Tensor]:
        """mmFormer's loss: fused + sep_weight x separate-decoder + deep_supervision_weight x auxiliary scales
        (each wCE + Dice); the separate decoder runs on the samples that have the modality."""
        logits, auxiliary = self._fuse(features, available)
        fused = weighted_ce_dice(logits, label, ignore_index)
        deep = sum(
            (weighted_ce_dice(upsample(a, label.shape[-2:]), label, ignore_index) for a in auxiliary),
            torch.zeros((), device=label.device),
        )
        sep = torch.zeros((), device=label.device)
        for index, name in enumerate(self.modality_names):
            rows = available[:, index]
            if name not in features or not bool(rows.any()):
                continue
            own = features[name]
            grid = own["skips"][-1].shape[-2:]
            bottleneck = self.sep_from_tokens(own["tokens"][rows].transpose(1, 2).reshape(int(rows.sum()), -1, *grid))
            sep_logits, _ = self.sep_decoder([s[rows] for s in own["skips"][:-1]], bottleneck)
            sep = sep + weighted_ce_dice(sep_logits, label[rows], ignore_index)
        total = fused + self.config["sep_weight"] * sep + self.config["deep_supervision_weight"] * deep
        return {"loss": total, "fused": fused, "sep": sep, "deep": deep}
