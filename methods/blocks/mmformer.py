"""mmFormer-2D: a 2-D port of mmFormer for remote sensing (github.com/YaoZhang93/mmFormer, commit b18663a).

Shared: the `mmformer` method is this network unchanged (methods/mmformer/model.py), `gemmnet` runs it on
imputed inputs (methods/gemmnet/model.py subclasses `MmFormer`) and `dis2` builds its hybrid fusion from
`PreNormConv`, `PreNormFusion` and `RegionFusion` (methods/dis2/model.py). A numerical change here changes
all three. Sources, per component (docs/methods/mmformer.md has the table with every switch):

- Per-modality encoders (authors' `Encoder`, `mmformer/mmformer.py`): 5 stages, widths basic_dims x
  1/2/4/8/16, `x = c1(x); x + c3(c2(x))`; c2/c3 pre-norm convs (norm -> LeakyReLU(0.2) -> 3x3 conv, reflect
  padding, the authors' `general_conv3d_prenorm`); c1 is a plain conv in stage 1 and pre-norm strided in
  stages 2-5 (`encoder_entry: prenorm`; `plain`: version 1's plain strided convs).
- Norm (`norm`): `instance` = mmFormer's `nn.InstanceNorm3d` on 3-D volumes, per channel without affine;
  `joint` = what the 2-D ports (GEMMNet, DIS2: `models_bank/module/layers.py`) compute when that
  InstanceNorm3d reads a (B, C, H, W) tensor: each sample normalised over (C, H, W) jointly; `affine` =
  version 1's per-channel InstanceNorm2d with affine.
- IntraFormer per modality on the 1/16 bottleneck (1x1 conv to tokens, learned positions interpolated to
  the grid, one pre-norm layer); MaskModal zeroes missing modalities' features and tokens per sample
  (`torch.where`); InterFormer over all modalities' tokens, with the intra positions added again as the
  authors' `Transformer.forward` does (`inter_positions`).
- Bottleneck (`bottleneck_fusion: rfm5`): the authors' `multimodal_decode_conv` (1x1, M*T -> M*C) and
  their `RFM5` region fusion (M*C -> C); `inter_layout: authors` reproduces their `view` of the
  (B, M*L, T) token sequence as a (B, L, M*T) grid, which interleaves tokens across positions; `grid`
  (default) maps each modality's tokens back to its own grid. `v1`: one 1x1 (M*T -> C).
- Region fusion per scale (`region_fusion: prenorm`): the authors' `fusion_prenorm` = three pre-norm convs
  1x1 (M*C -> C), 3x3 (zero padding), 1x1; `v1`: 1x1 -> one pre-norm 3x3 -> 1x1.
- Fusion decoder (`decoder_blocks: authors`, `Decoder_fuse`): per scale c1 (pre-norm 3x3 after a bilinear
  x2 upsample, align_corners=True), concat with the fused skip, c2 (pre-norm 3x3), out (pre-norm 1x1);
  deep-supervision heads on the fused bottleneck and at 1/8, 1/4, 1/2. `v1`: 1x1 reduce, resize,
  concat, 1x1, one pre-norm 3x3.
- Separate decoder (`Decoder_sep`), shared by all modalities, training only: run on every modality of
  every training sample (`sep_rows: all`, the authors' `train.py`; `available`: version 1's rows that keep
  the modality) from the unmasked encoder features x1..x5 (`sep_bottleneck: encoder`; `tokens`:
  version 1's 1x1 from the intra tokens). Its only head is the full-resolution one.
- Conv weights (`conv_init: kaiming`): the authors' `kaiming_normal_` over every conv; `torch`: PyTorch's.
Loss: fused (wCE + Dice) + sep_weight x sum over modalities of sep (wCE + Dice) + deep_supervision_weight x
sum over scales (wCE + Dice). Training masks: per sample, uniform over the 2^M - 1 subsets. Not
reproduced (no switch): transformer dropout 0.1 and bias-free qkv; deep supervision on upsampled logits
where the authors upsample softmax probabilities. Attention runs through
`mmbench.methods.blocks.attention` (xformers on CUDA when installed, SDPA otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbench.errors import ConfigError
from mmbench.method import SegmentationMethod, TrainStep
from mmbench.methods.blocks.attention import TransformerBlock
from mmbench.methods.blocks.common import check_sampler, sampled_availability, upsample, weighted_ce_dice

STAGES = 5
NORMS = ("instance", "joint", "affine")
# Allowed values of the network's switches (defaults: methods/mmformer/mmformer.yaml, methods/gemmnet/gemmnet.yaml).
SWITCHES = {
    "norm": NORMS,
    "encoder_entry": ("prenorm", "plain"),
    "region_fusion": ("prenorm", "v1"),
    "bottleneck_fusion": ("rfm5", "v1"),
    "decoder_blocks": ("authors", "v1"),
    "inter_layout": ("grid", "authors"),
    "conv_init": ("kaiming", "torch"),
    "sep_rows": ("all", "available"),
    "sep_bottleneck": ("encoder", "tokens"),
}


class JointNorm(nn.Module):
    """Each sample normalised over (C, H, W) jointly, no affine: what `nn.InstanceNorm3d` computes on a
    (B, C, H, W) tensor, which it reads as B unbatched (C, D, H, W) volumes (one-group `F.group_norm`)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x, 1, eps=1e-5)


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "joint":
        return JointNorm()
    if kind not in NORMS:
        raise ValueError(f"norm {kind!r}: use one of {NORMS}")
    return nn.InstanceNorm2d(channels, affine=kind == "affine")


class PreNormConv(nn.Module):
    """norm -> LeakyReLU(0.2) -> conv (the authors' `general_conv3d_prenorm` / `general_conv2d_prenorm`).

    Defaults: version 1's per-channel affine norm, 3x3, reflect padding (DIS2 builds these)."""

    def __init__(
        self,
        inp: int,
        out: int,
        stride: int = 1,
        *,
        kernel: int = 3,
        norm: str = "affine",
        padding_mode: str = "reflect",
    ) -> None:
        super().__init__()
        self.norm = norm_layer(norm, inp)
        self.conv = nn.Conv2d(inp, out, kernel, stride=stride, padding=kernel // 2, padding_mode=padding_mode)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.leaky_relu(self.norm(x), 0.2))


class EncoderStage(nn.Module):
    """`x = c1(x); x + c3(c2(x))`; c1 plain (stage 1, or `entry="plain"`) or a strided pre-norm conv."""

    def __init__(self, inp: int, out: int, stride: int, *, entry: str = "plain", norm: str = "affine") -> None:
        super().__init__()
        if entry == "plain":
            self.entry: nn.Module = nn.Conv2d(inp, out, 3, stride=stride, padding=1, padding_mode="reflect")
        else:
            self.entry = PreNormConv(inp, out, stride, norm=norm)
        self.block = nn.Sequential(PreNormConv(out, out, norm=norm), PreNormConv(out, out, norm=norm))

    def forward(self, x: Tensor) -> Tensor:
        x = self.entry(x)
        return x + self.block(x)


class ModalityEncoder(nn.Module):
    def __init__(self, in_channels: int, dims: Sequence[int], *, entry: str = "plain", norm: str = "affine") -> None:
        super().__init__()
        widths = [in_channels, *dims]
        self.stages = nn.ModuleList(
            [
                EncoderStage(
                    widths[i], widths[i + 1], 1 if i == 0 else 2, entry="plain" if i == 0 else entry, norm=norm
                )
                for i in range(STAGES)
            ]
        )

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

    def grid_position(self, size: Sequence[int]) -> Tensor:
        """(1, dim, h, w): the learned positions at the grid `size`."""
        if tuple(self.position.shape[-2:]) == tuple(size):
            return self.position
        return F.interpolate(self.position, size=tuple(size), mode="bilinear", align_corners=False)

    def positions(self, size: Sequence[int]) -> Tensor:
        """(1, h*w, dim): the positions as a token sequence (the InterFormer adds them again)."""
        return self.grid_position(size).flatten(2).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.to_tokens(x)
        return (tokens + self.grid_position(tokens.shape[-2:])).flatten(2).transpose(1, 2)  # (B, L, dim)


class RegionFusion(nn.Module):
    """Version 1's region fusion: M masked feature maps -> one by 1x1 -> one pre-norm 3x3 -> 1x1."""

    def __init__(self, channels: int, modalities: int, *, norm: str = "affine") -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(modalities * channels, channels, 1),
            PreNormConv(channels, channels, norm=norm),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class PreNormFusion(nn.Module):
    """The authors' `fusion_prenorm` (mmFormer `mmformer/layers.py`; `fusion_prenorm_2d` in the GEMMNet and
    DIS2 ports): three pre-norm convs with zero padding, 1x1 (M*C -> C), 3x3, 1x1."""

    def __init__(self, channels: int, modalities: int, norm: str) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            PreNormConv(modalities * channels, channels, kernel=1, norm=norm, padding_mode="zeros"),
            PreNormConv(channels, channels, kernel=3, norm=norm, padding_mode="zeros"),
            PreNormConv(channels, channels, kernel=1, norm=norm, padding_mode="zeros"),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class Decoder(nn.Module):
    """Version 1's U-Net decoder from the 1/16 bottleneck to full resolution, with a head per scale."""

    def __init__(self, dims: Sequence[int], num_classes: int, *, norm: str = "affine") -> None:
        super().__init__()
        self.reduce = nn.ModuleList([nn.Conv2d(dims[i + 1], dims[i], 1) for i in range(STAGES - 1)])
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(2 * dims[i], dims[i], 1), PreNormConv(dims[i], dims[i], norm=norm))
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


class AuthorsDecoder(nn.Module):
    """The authors' `Decoder_fuse` (`fused=True`) and `Decoder_sep` (`mmformer/mmformer.py`), 2-D.

    Per scale: c1 = pre-norm 3x3 of the x2 bilinear upsample (align_corners=True) of the coarser output,
    concatenated with the skip (the fused skip first in `Decoder_fuse`, second in `Decoder_sep`), c2 =
    pre-norm 3x3 (2C -> C), out = pre-norm 1x1. `Decoder_fuse` has deep-supervision heads on the bottleneck
    and after `out` at 1/8, 1/4, 1/2; `Decoder_sep` only the full-resolution head.
    """

    def __init__(self, dims: Sequence[int], num_classes: int, *, fused: bool, norm: str) -> None:
        super().__init__()
        self.fused = fused
        levels = range(STAGES - 1)
        self.up_convs = nn.ModuleList([PreNormConv(dims[i + 1], dims[i], norm=norm) for i in levels])
        self.merge_convs = nn.ModuleList([PreNormConv(2 * dims[i], dims[i], norm=norm) for i in levels])
        self.out_convs = nn.ModuleList([PreNormConv(dims[i], dims[i], kernel=1, norm=norm) for i in levels])
        self.head = nn.Conv2d(dims[0], num_classes, 1)
        # seg_d4..seg_d1: on the bottleneck (dims[4]) and after `out` at 1/8 (dims[3]), 1/4, 1/2
        self.deep_heads = nn.ModuleList([nn.Conv2d(d, num_classes, 1) for d in dims[1:]]) if fused else None

    def forward(self, skips: Sequence[Tensor], bottleneck: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(full-resolution logits, auxiliary logits at 1/16, 1/8, 1/4, 1/2; empty for `Decoder_sep`)."""
        x = bottleneck
        auxiliary = [self.deep_heads[STAGES - 2](x)] if self.deep_heads is not None else []
        for level in range(STAGES - 2, -1, -1):
            skip = skips[level]
            up = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
            up = self.up_convs[level](up)
            x = self.out_convs[level](self.merge_convs[level](torch.cat([skip, up] if self.fused else [up, skip], 1)))
            if level and self.deep_heads is not None:
                auxiliary.append(self.deep_heads[level - 1](x))
        return self.head(x), auxiliary


def check_switches(config: Mapping[str, Any]) -> None:
    """One line per bad value of the network's switches, naming the key and the allowed values."""
    for key, allowed in SWITCHES.items():
        if config[key] not in allowed:
            raise ConfigError(f"method.{key}={config[key]!r}: use one of {', '.join(allowed)}")


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
        check_switches(config)
        dims = [config["basic_dims"] * 2**i for i in range(STAGES)]
        dim, count, norm = config["transformer_dim"], len(modalities), config["norm"]
        self.dims = dims
        entry = config["encoder_entry"]
        self.encoders = nn.ModuleDict(
            {name: ModalityEncoder(c, dims, entry=entry, norm=norm) for name, c in modalities.items()}
        )
        self.tokens = nn.ModuleDict({name: Tokens(dims[-1], dim, config["token_grid"]) for name in modalities})
        self.intra = nn.ModuleDict(
            {name: TransformerBlock(dim, config["heads"], config["mlp_dim"]) for name in modalities}
        )
        self.inter = TransformerBlock(dim, config["heads"], config["mlp_dim"])
        rfm5 = config["bottleneck_fusion"] == "rfm5"
        # the authors' `multimodal_decode_conv` (M*T -> M*C, then RFM5) or version 1's single 1x1 (M*T -> C)
        self.from_tokens = nn.Conv2d(count * dim, (count if rfm5 else 1) * dims[-1], 1)
        if config["sep_bottleneck"] == "tokens":
            self.sep_from_tokens = nn.Conv2d(dim, dims[-1], 1)
        prenorm = config["region_fusion"] == "prenorm"

        def fusion(channels: int) -> nn.Module:
            if prenorm:
                return PreNormFusion(channels, count, norm)
            return RegionFusion(channels, count, norm=norm)

        self.region_fusion = nn.ModuleList([fusion(d) for d in dims[:-1]])
        if rfm5:
            self.bottleneck_fusion = fusion(dims[-1])
        if config["decoder_blocks"] == "authors":
            self.fuse_decoder: nn.Module = AuthorsDecoder(dims, num_classes, fused=True, norm=norm)
            self.sep_decoder: nn.Module = AuthorsDecoder(dims, num_classes, fused=False, norm=norm)
        else:
            self.fuse_decoder = Decoder(dims, num_classes, norm=norm)
            self.sep_decoder = Decoder(dims, num_classes, norm=norm)
        if config["conv_init"] == "kaiming":  # the authors' loop over every conv of the model
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight)

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

    def _bottleneck(self, tokens: list[Tensor], grid: Sequence[int]) -> Tensor:
        """InterFormer over all modalities' (masked) tokens, back to one 1/16 map."""
        if self.config["inter_positions"]:  # the authors' Transformer adds `pos` before every layer
            tokens = [
                t + self.tokens[name].positions(grid) for t, name in zip(tokens, self.modality_names, strict=True)
            ]
        length, batch = tokens[0].shape[1], tokens[0].shape[0]
        mixed = self.inter(torch.cat(tokens, dim=1))  # inter-modal attention over M x L tokens
        if self.config["inter_layout"] == "authors":  # their `.view(B, p, p, T * M)` of the (B, M*L, T) tokens
            maps = mixed.reshape(batch, *grid, -1).permute(0, 3, 1, 2)
        else:
            maps = torch.cat(
                [
                    mixed[:, m * length : (m + 1) * length].transpose(1, 2).reshape(batch, -1, *grid)
                    for m in range(len(tokens))
                ],
                dim=1,
            )
        bottleneck = self.from_tokens(maps)
        if self.config["bottleneck_fusion"] == "rfm5":
            bottleneck = self.bottleneck_fusion(bottleneck)
        return bottleneck

    def _fuse(self, features: Mapping[str, Any], available: Tensor) -> tuple[Tensor, list[Tensor]]:
        skips, tokens = self._masked(features, available)
        bottleneck = self._bottleneck(tokens, skips[0][-1].shape[-2:])
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
        if self.config["sep_rows"] == "all":  # training data are complete: the separate decoder sees every modality
            features = {name: self.encode(name, inputs[name]) for name in self.modality_names}
        else:
            features = self.encode_available(inputs, available)
        terms = self.segmentation_terms(features, available, label, info.ignore_index)
        return {"loss": terms["loss"], **{name: terms[name].detach() for name in ("fused", "sep", "deep")}}

    def _sep_bottleneck(self, own: Mapping[str, Any], rows: Tensor | None) -> Tensor:
        if self.config["sep_bottleneck"] == "encoder":
            return own["skips"][-1] if rows is None else own["skips"][-1][rows]
        tokens = own["tokens"] if rows is None else own["tokens"][rows]
        grid = own["skips"][-1].shape[-2:]
        return self.sep_from_tokens(tokens.transpose(1, 2).reshape(tokens.shape[0], -1, *grid))

    def separate_terms(
        self, features: Mapping[str, Any], available: Tensor, label: Tensor, ignore_index: int
    ) -> Tensor:
        """Sum over modalities of the separate decoder's wCE + Dice on that modality's unmasked features:
        every sample of every modality in `features` (`sep_rows: all`, one batched decoder call), or only the
        samples that keep the modality (`available`, version 1)."""
        sep = torch.zeros((), device=label.device)
        if self.config["sep_rows"] == "all":
            names = [name for name in self.modality_names if name in features]
            if not names:
                return sep
            skips = [torch.cat([features[n]["skips"][level] for n in names]) for level in range(STAGES - 1)]
            bottleneck = torch.cat([self._sep_bottleneck(features[n], None) for n in names])
            logits, _ = self.sep_decoder(skips, bottleneck)
            for chunk in logits.chunk(len(names)):
                sep = sep + weighted_ce_dice(chunk, label, ignore_index)
            return sep
        for index, name in enumerate(self.modality_names):
            rows = available[:, index]
            if name not in features or not bool(rows.any()):
                continue
            own = features[name]
            sep_logits, _ = self.sep_decoder([s[rows] for s in own["skips"][:-1]], self._sep_bottleneck(own, rows))
            sep = sep + weighted_ce_dice(sep_logits, label[rows], ignore_index)
        return sep

    def segmentation_terms(
        self, features: Mapping[str, Any], available: Tensor, label: Tensor, ignore_index: int
    ) -> dict[str, Tensor]:
        """mmFormer's loss: fused + sep_weight x separate decoder + deep_supervision_weight x auxiliary scales
        (each wCE + Dice)."""
        logits, auxiliary = self._fuse(features, available)
        fused = weighted_ce_dice(logits, label, ignore_index)
        deep = sum(
            (weighted_ce_dice(upsample(a, label.shape[-2:]), label, ignore_index) for a in auxiliary),
            torch.zeros((), device=label.device),
        )
        sep = self.separate_terms(features, available, label, ignore_index)
        total = fused + self.config["sep_weight"] * sep + self.config["deep_supervision_weight"] * deep
        return {"loss": total, "fused": fused, "sep": sep, "deep": deep}
