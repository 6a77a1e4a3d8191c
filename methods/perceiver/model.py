"""PerceiverIO-RS: latent cross-attention segmentation with a volumetric local module.

Kieu et al. (arXiv 2307.03388) add to PerceiverIO a UNet-inspired local module of 3-D convolutions
that treats the stacked modalities as a depth axis, so local spatial context and cross-modal
features are learned together; they compare it with 2-D convolutions and a "dual" module (1x1 and
3x3 2-D branches). No code is public; this reconstruction:

1. per-modality 1x1 stems to `channels`, stacked as (B, C, M, H, W); a missing modality's slice is
   zeroed per sample (`torch.where`, so NaN never enters);
2. local module (`local`): conv3d = two strided 3-D conv stages (stride (1, 2, 2)) over (M, H, W), a
   UNet-style skip at 1/2; conv2d and dual apply 2-D convs to each modality slice with shared weights;
3. tokens = the 1/4 features of every (modality, position), plus a modality embedding and a learned,
   resizable 2-D position embedding; missing modalities' tokens are masked out of the cross-attention;
4. latents cross-attend to the tokens, then `latent_blocks` self-attention layers;
5. decoding queries = the masked mean over modalities of the 1/4 features (one per position), which
   cross-attend to the latents; the result is upsampled with the 1/2 skip to logits.
Attention runs through `mmbench.methods.blocks.attention` (masked calls use SDPA). Default training uses complete
data, as the paper's model is not a missing-modality method; `sampler` changes that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbench.errors import ConfigError
from mmbench.method import SegmentationMethod, TrainStep
from mmbench.methods.blocks.attention import CrossAttention, TransformerBlock
from mmbench.methods.blocks.common import check_sampler, masked_mean, sampled_availability, upsample

LOCAL_MODULES = ("conv3d", "conv2d", "dual")


def _conv3d(inp: int, out: int, stride: tuple[int, int, int] = (1, 1, 1)) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(inp, out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm3d(out), nn.ReLU(inplace=True)
    )


def _conv2d(inp: int, out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out),
        nn.ReLU(inplace=True),
    )


class Local3D(nn.Module):
    """(B, C, M, H, W) -> (1/2 skip, 1/4 features), both (B, C, M, h, w)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.down1 = nn.Sequential(_conv3d(channels, channels, (1, 2, 2)), _conv3d(channels, channels))
        self.down2 = nn.Sequential(_conv3d(channels, channels, (1, 2, 2)), _conv3d(channels, channels))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        half = self.down1(x)
        return half, self.down2(half)


class Local2D(nn.Module):
    """The same shapes with 2-D convs applied to every modality slice (shared weights)."""

    def __init__(self, channels: int, dual: bool) -> None:
        super().__init__()

        def stage() -> nn.Module:
            return (
                DualBlock(channels)
                if dual
                else nn.Sequential(_conv2d(channels, channels, 3, 2), _conv2d(channels, channels))
            )

        self.down1, self.down2 = stage(), stage()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        batch, channels, modalities, height, width = x.shape
        flat = x.transpose(1, 2).reshape(batch * modalities, channels, height, width)
        half = self.down1(flat)
        quarter = self.down2(half)

        def unflat(t: Tensor) -> Tensor:
            return t.reshape(batch, modalities, channels, *t.shape[-2:]).transpose(1, 2)

        return unflat(half), unflat(quarter)


class DualBlock(nn.Module):
    """UNetFormer-style dual local branch: strided 1x1 and 3x3 2-D convs, summed."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.point = _conv2d(channels, channels, 1, 2)
        self.spatial = _conv2d(channels, channels, 3, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.point(x) + self.spatial(x)


class Perceiver(SegmentationMethod):
    # Overrides of the defaults giving the narrowest network of the same family, for fast CPU checks
    # (tests/test_comparison_methods.py builds every registered method with them).
    tiny_config: ClassVar[dict[str, Any]] = {
        "channels": 8,
        "latents": 8,
        "latent_dim": 16,
        "heads": 2,
        "latent_blocks": 1,
        "mlp_dim": 32,
    }

    def __init__(self, modalities: Mapping[str, int], num_classes: int, config: Mapping[str, Any]) -> None:
        super().__init__(modalities, num_classes, config)
        if config["local"] not in LOCAL_MODULES:
            raise ConfigError(f"method.local={config['local']!r}: use one of {', '.join(LOCAL_MODULES)}")
        check_sampler(config["sampler"], "sampler")
        channels, dim = config["channels"], config["latent_dim"]
        self.stems = nn.ModuleDict({name: nn.Conv2d(c, channels, 1) for name, c in modalities.items()})
        self.local = Local3D(channels) if config["local"] == "conv3d" else Local2D(channels, config["local"] == "dual")
        self.modality_embedding = nn.Parameter(torch.zeros(len(modalities), channels))
        self.position = nn.Parameter(torch.zeros(1, channels, 8, 8))
        nn.init.trunc_normal_(self.modality_embedding, std=0.02)
        nn.init.trunc_normal_(self.position, std=0.02)
        self.latents = nn.Parameter(torch.randn(config["latents"], dim) * 0.02)
        self.encode_cross = CrossAttention(dim, channels, dim, config["heads"])
        self.encode_norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(
            [TransformerBlock(dim, config["heads"], config["mlp_dim"]) for _ in range(config["latent_blocks"])]
        )
        self.decode_cross = CrossAttention(channels, dim, dim, config["heads"])
        self.decode_norm = nn.LayerNorm(channels)
        self.fuse_skip = _conv2d(2 * channels, channels)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, inputs: Mapping[str, Tensor], available: Tensor) -> Tensor:
        reference = next(iter(inputs.values()))
        slices = []
        for index, name in enumerate(self.modality_names):
            stem = self.stems[name](torch.where(available[:, index].view(-1, 1, 1, 1), inputs[name], 0.0))
            slices.append(torch.where(available[:, index].view(-1, 1, 1, 1), stem, 0.0))
        half, quarter = self.local(torch.stack(slices, dim=2))  # (B, C, M, h, w)
        batch, channels, modalities, height, width = quarter.shape
        position = F.interpolate(self.position, size=(height, width), mode="bilinear", align_corners=False)
        tokens = quarter + position.unsqueeze(2) + self.modality_embedding.T.view(1, channels, modalities, 1, 1)
        tokens = tokens.permute(0, 2, 3, 4, 1).reshape(batch, modalities * height * width, channels)
        key_mask = available.repeat_interleave(height * width, dim=1)  # (B, M*h*w), modality-major like tokens
        latents = self.latents.expand(batch, -1, -1)
        latents = latents + self.encode_cross(self.encode_norm(latents), tokens, key_mask)
        for block in self.blocks:
            latents = block(latents)
        per_modality = {m: quarter[:, :, m] for m in range(modalities)}
        queries = masked_mean(per_modality, available)  # (B, C, h, w)
        query_tokens = (queries + position).flatten(2).transpose(1, 2)
        decoded = query_tokens + self.decode_cross(self.decode_norm(query_tokens), latents)
        decoded = decoded.transpose(1, 2).reshape(batch, channels, height, width)
        skip = masked_mean({m: half[:, :, m] for m in range(modalities)}, available)
        merged = self.fuse_skip(
            torch.cat([F.interpolate(decoded, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], dim=1)
        )
        return upsample(self.classifier(merged), reference.shape[-2:])

    def training_availability(self, batch: Mapping[str, Any], info: TrainStep) -> Tensor:
        if len(self.modality_names) == 1:
            return batch["available"]
        return sampled_availability(self.config["sampler"], batch, info, len(self.modality_names))
