"""pix2pix building blocks (Isola et al., CVPR 2017) as GEMMNet's code uses them: a U-Net generator of
4x4 stride-2 convolutions and a conditional PatchGAN discriminator.

The generator optionally carries GEMMNet's `EnhancedGenerator` bottleneck: 1x1 to tokens, a pre-norm
transformer layer with learned positions, back to the map (docs/methods/gemmnet.md), and optionally keeps
its BatchNorm statistics per availability pattern of its inputs (`PatternBatchNorm2d`, below).

Shared by `cgan` (methods/imputation/model.py) and `gemmnet` (methods/gemmnet/model.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbench.methods.blocks.attention import TransformerBlock

DEPTH = 4  # 4 stride-2 stages: the bottleneck is at 1/16, as in GEMMNet's generators


PatternGroups = list[tuple[int, Tensor]]  # (pattern id, its rows) per pattern in the batch


def pattern_groups(pattern: Tensor) -> PatternGroups:
    """The rows of each pattern id in `pattern` (one id per sample).

    Computed once per generator forward and shared by all its `PatternBatchNorm2d` layers: `unique` and
    `tolist` wait for the device, once instead of once per layer.
    """
    values = pattern.unique().tolist()
    if len(values) == 1:
        return [(values[0], torch.ones_like(pattern, dtype=torch.bool))]
    return [(value, pattern == value) for value in values]


class PatternBatchNorm2d(nn.Module):
    """BatchNorm2d with its statistics kept per availability pattern of the generator's inputs.

    Why: a generator is conditioned on the other modalities, zeroed where missing. With M >= 3 and one
    pattern per training batch (GEMMNet's sampler), each batch normalises with the statistics of one input
    pattern, but plain BatchNorm's running statistics average whichever patterns the last batches drew, so
    at evaluation no pattern is normalised as in training, and the mixture changes from checkpoint to
    checkpoint (docs/methods/gemmnet.md, "Version 4"). Here the rows of each pattern are normalised as a
    BatchNorm2d of their own: in training with their own batch statistics, which update that pattern's
    running statistics; in evaluation with that pattern's running statistics. A batch of one pattern is
    therefore computed exactly as BatchNorm2d computes it (the same kernel), and so is everything with
    M = 2 and one pattern per batch. Our reconstruction: the authors' code has M = 2 only.

    `groups` (set by `Pix2PixGenerator.forward` from `pattern_groups`) selects the statistics.
    """

    def __init__(self, channels: int, patterns: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(patterns, channels))
        self.register_buffer("running_var", torch.ones(patterns, channels))
        self.register_buffer("num_batches_tracked", torch.zeros(patterns, dtype=torch.long))
        self.groups: PatternGroups | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.groups is None:
            raise RuntimeError("PatternBatchNorm2d needs the availability pattern of each sample (`groups`)")
        if len(self.groups) == 1:
            return self._normalise(x, self.groups[0][0])
        out = torch.empty_like(x)
        for value, chosen in self.groups:
            out[chosen] = self._normalise(x[chosen], value)
        return out

    def _normalise(self, x: Tensor, pattern: int) -> Tensor:
        """BatchNorm2d's own kernel on rows of one pattern, with that pattern's statistics."""
        mean, var = self.running_mean[pattern], self.running_var[pattern]  # views: training updates them in place
        if self.training:
            self.num_batches_tracked[pattern] += 1
        return F.batch_norm(x, mean, var, self.weight, self.bias, self.training, self.momentum, self.eps)


def _norm(channels: int, patterns: int) -> nn.Module:
    return PatternBatchNorm2d(channels, patterns) if patterns else nn.BatchNorm2d(channels)


def _down(inp: int, out: int, norm: bool, patterns: int = 0) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(inp, out, 4, stride=2, padding=1, bias=not norm)]
    if norm:
        layers.append(_norm(out, patterns))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def _up(inp: int, out: int, patterns: int = 0) -> nn.Sequential:
    return nn.Sequential(
        nn.ReLU(), nn.ConvTranspose2d(inp, out, 4, stride=2, padding=1, bias=False), _norm(out, patterns)
    )


class BottleneckTransformer(nn.Module):
    """GEMMNet's generator bottleneck: tokens + learned positions (resized to the grid) -> 1 pre-norm layer."""

    def __init__(self, channels: int, dim: int, heads: int, mlp_dim: int, grid: int) -> None:
        super().__init__()
        self.to_tokens = nn.Conv2d(channels, dim, 1)
        self.position = nn.Parameter(torch.zeros(1, dim, grid, grid))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.block = TransformerBlock(dim, heads, mlp_dim)
        self.from_tokens = nn.Conv2d(dim, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.to_tokens(x)
        position = self.position
        if position.shape[-2:] != tokens.shape[-2:]:
            position = F.interpolate(position, size=tokens.shape[-2:], mode="bilinear", align_corners=False)
        batch, dim, height, width = tokens.shape
        mixed = self.block((tokens + position).flatten(2).transpose(1, 2))
        return self.from_tokens(mixed.transpose(1, 2).reshape(batch, dim, height, width))


class Pix2PixGenerator(nn.Module):
    """U-Net: 4 x (conv 4x4/2) down to 1/16, 4 x (transposed conv 4x4/2) up with skips concatenated.

    Inputs whose sides are not multiples of 16 are padded (replicate) and the output cropped back, so
    any window size works. `tanh` bounds the output as pix2pix does for images in [-1, 1]; mmbench's
    inputs are standardised (unbounded), so the default output is linear.

    `patterns` > 0 keeps the BatchNorm statistics per input pattern (`PatternBatchNorm2d`); `forward` then
    needs `pattern`, one id in [0, patterns) per sample.
    """

    def __init__(
        self,
        inp: int,
        out: int,
        width: int,
        tanh: bool = False,
        bottleneck: BottleneckTransformer | None = None,
        patterns: int = 0,
    ) -> None:
        super().__init__()
        widths = [width * 2**i for i in range(DEPTH)]  # gf, 2gf, 4gf, 8gf
        self.patterns = patterns
        self.downs = nn.ModuleList(
            [_down(inp if i == 0 else widths[i - 1], widths[i], norm=i > 0, patterns=patterns) for i in range(DEPTH)]
        )
        self.bottleneck = bottleneck
        ups = []
        for i in range(DEPTH - 1, 0, -1):  # from 8gf to gf; from the second one on, the input has the skip
            ups.append(_up(widths[i] if i == DEPTH - 1 else 2 * widths[i], widths[i - 1], patterns))
        self.ups = nn.ModuleList(ups)
        self.out = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * widths[0], out, 4, stride=2, padding=1))
        self.tanh = tanh

    def forward(self, x: Tensor, pattern: Tensor | None = None) -> Tensor:
        norms = [module for module in self.modules() if isinstance(module, PatternBatchNorm2d)]
        groups = pattern_groups(pattern) if norms and pattern is not None else None
        for norm in norms:
            norm.groups = groups
        try:
            return self._forward(x)
        finally:
            for norm in norms:
                norm.groups = None

    def _forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        multiple = 2**DEPTH
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        y = skips.pop()
        if self.bottleneck is not None:
            y = self.bottleneck(y)
        for up in self.ups:
            y = torch.cat([up(y), skips.pop()], dim=1)
        y = self.out(y)[..., :height, :width]
        return torch.tanh(y) if self.tanh else y


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN (pix2pix's 70x70 at 256 px): 5 convs 4x4, strides 2,2,2,1,1, one logit per patch."""

    def __init__(self, inp: int, width: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            _down(inp, width, norm=False),
            _down(width, 2 * width, norm=True),
            _down(2 * width, 4 * width, norm=True),
            nn.Conv2d(4 * width, 8 * width, 4, padding=1, bias=False),
            nn.BatchNorm2d(8 * width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(8 * width, 1, 4, padding=1),
        ]
        self.body = nn.Sequential(*layers)

    def forward(self, condition: Tensor, target: Tensor) -> Tensor:
        return self.body(torch.cat([condition, target], dim=1))
