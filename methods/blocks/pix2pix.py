"""pix2pix building blocks (Isola et al., CVPR 2017) as GEMMNet's code uses them: a U-Net generator of
4x4 stride-2 convolutions and a conditional PatchGAN discriminator.

The generator optionally carries GEMMNet's `EnhancedGenerator` bottleneck: 1x1 to tokens, a pre-norm
transformer layer with learned positions, back to the map (docs/methods/gemmnet.md).

Shared by `cgan` (methods/imputation/model.py) and `gemmnet` (methods/gemmnet/model.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbench.methods.blocks.attention import TransformerBlock

DEPTH = 4  # 4 stride-2 stages: the bottleneck is at 1/16, as in GEMMNet's generators


def _down(inp: int, out: int, norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(inp, out, 4, stride=2, padding=1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(out))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def _up(inp: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ReLU(), nn.ConvTranspose2d(inp, out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(out)
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
    """

    def __init__(
        self, inp: int, out: int, width: int, tanh: bool = False, bottleneck: BottleneckTransformer | None = None
    ) -> None:
        super().__init__()
        widths = [width * 2**i for i in range(DEPTH)]  # gf, 2gf, 4gf, 8gf
        self.downs = nn.ModuleList(
            [_down(inp if i == 0 else widths[i - 1], widths[i], norm=i > 0) for i in range(DEPTH)]
        )
        self.bottleneck = bottleneck
        ups = []
        for i in range(DEPTH - 1, 0, -1):  # from 8gf to gf; from the second one on, the input has the skip
            ups.append(_up(widths[i] if i == DEPTH - 1 else 2 * widths[i], widths[i - 1]))
        self.ups = nn.ModuleList(ups)
        self.out = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * widths[0], out, 4, stride=2, padding=1))
        self.tanh = tanh

    def forward(self, x: Tensor) -> Tensor:
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
