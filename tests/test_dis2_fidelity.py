"""DIS2 version 2: the hierarchical fusion's convolutional block at levels 1-3 is the authors'
`fusion_prenorm_2d` (github.com/nhikieu/DIS2, `models_bank/module/layers.py`), checked against a direct
re-implementation of it written here, on the same weights; version 1's block stays reachable (`fusion: v1`);
docs/methods/dis2.md."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from mmbench.config import load_defaults
from mmbench.errors import ConfigError
from mmbench.methods.blocks.mmformer import RegionFusion
from mmbench.methods.dis2.model import Dis2, PreNormFusion
from mmbench.registry import METHODS

TWO = {"optical": 3, "dsm": 1}
THREE = {"optical": 3, "dsm": 1, "sar": 1}
CLASSES = 4


class AuthorsPreNormConv(nn.Module):
    """`general_conv2d_prenorm` with its defaults (norm 'in', LeakyReLU 0.2, zero padding), as written there:
    the norm is built for `out_ch` and applied to the input, and `normalization('in')` is an InstanceNorm3d."""

    def __init__(self, in_ch: int, out_ch: int, k_size: int, padding: int, per_channel: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, k_size, stride=1, padding=padding, padding_mode="zeros", bias=True)
        self.norm = nn.InstanceNorm2d(in_ch, affine=True) if per_channel else nn.InstanceNorm3d(out_ch)
        self.activation = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x):
        with warnings.catch_warnings():  # InstanceNorm3d warns that dim 0 (the batch) is not num_features
            warnings.simplefilter("ignore")
            x = self.norm(x)
        return self.conv(self.activation(x))


class AuthorsFusion(nn.Module):
    """`fusion_prenorm_2d(in_channel, num_modals)`."""

    def __init__(self, in_channel: int, num_modals: int, per_channel: bool = False) -> None:
        super().__init__()
        self.fusion_layer = nn.Sequential(
            AuthorsPreNormConv(in_channel * num_modals, in_channel, 1, 0, per_channel),
            AuthorsPreNormConv(in_channel, in_channel, 3, 1, per_channel),
            AuthorsPreNormConv(in_channel, in_channel, 1, 0, per_channel),
        )

    def forward(self, x):
        return self.fusion_layer(x)


def authors_copy(block: PreNormFusion, channels: int, modalities: int, per_channel: bool = False) -> AuthorsFusion:
    reference = AuthorsFusion(channels, modalities, per_channel)
    for theirs, ours in zip(reference.fusion_layer, block.layers, strict=True):
        theirs.conv.load_state_dict(ours.conv.state_dict())
        if per_channel:
            theirs.norm.load_state_dict(ours.norm.state_dict())
    return reference


def build(modalities, **overrides) -> Dis2:
    config = {**load_defaults("mmbench.methods.dis2:dis2.yaml", "dis2"), **Dis2.tiny_config, **overrides}
    torch.manual_seed(0)
    return Dis2(modalities, CLASSES, config)


def features(batch: int, channels: int, size: int = 9, seed: int = 1) -> torch.Tensor:
    """Per-sample and per-channel offsets and scales, so that a wrong norm shows."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, size, size, generator=generator)
    scale = torch.rand(batch, channels, 1, 1, generator=generator) * 3 + 0.1
    shift = torch.randn(batch, channels, 1, 1, generator=generator) * 2
    return x * scale + shift


@pytest.mark.parametrize("modalities", [TWO, THREE], ids=["M2", "M3"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_default_fusion_is_the_authors_fusion_prenorm_2d(modalities, mode):
    model = build(modalities)
    model.train(mode == "train")
    count = len(modalities)
    for branch in model.branches.values():
        for level, block in enumerate(branch.fusion.fuse):
            assert isinstance(block, PreNormFusion)
            channels = Dis2.tiny_config["gf"] * 2**level
            reference = authors_copy(block, channels, count).train(mode == "train")
            x = features(3, channels * count, seed=level)
            torch.testing.assert_close(block(x), reference(x), rtol=1e-5, atol=1e-5)


def test_per_channel_norm_is_an_affine_instance_norm_in_the_same_three_convs():
    model = build(THREE, fusion_norm="per_channel")
    block = model.branches["p111"].fusion.fuse[1]
    with torch.no_grad():
        for layer in block.layers:
            layer.norm.weight.uniform_(0.5, 1.5)
            layer.norm.bias.uniform_(-0.5, 0.5)
    channels = Dis2.tiny_config["gf"] * 2
    reference = authors_copy(block, channels, 3, per_channel=True)
    x = features(2, channels * 3)
    torch.testing.assert_close(block(x), reference(x), rtol=1e-5, atol=1e-5)
    joint = authors_copy(build(THREE).branches["p111"].fusion.fuse[1], channels, 3)
    assert not torch.allclose(block(x), joint(x), atol=1e-3)


def test_v1_restores_version_1s_region_fusion():
    model = build(TWO, fusion="v1")
    for branch in model.branches.values():
        assert all(type(block) is RegionFusion for block in branch.fusion.fuse)


def test_defaults_version_and_config_errors():
    defaults = load_defaults("mmbench.methods.dis2:dis2.yaml", "dis2")
    assert (defaults["fusion"], defaults["fusion_norm"]) == ("prenorm", "joint")
    assert int(METHODS.get("dis2").version) >= 2  # 2: authors' fusion; 3: widened to the capacity band
    with pytest.raises(ConfigError, match="method.fusion='v2': use one of prenorm, v1"):
        build(TWO, fusion="v2")
    with pytest.raises(ConfigError, match="method.fusion_norm='layer': use one of joint, per_channel"):
        build(TWO, fusion_norm="layer")
