"""ResNet encoders: pyramid shapes, the well-known parameter counts, local pretrained loading, init, gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmbench.errors import ConfigError
from mmbench.methods.blocks.backbones import BasicBlock, Bottleneck, ResNet, resnet

EXPANSION = {18: 1, 34: 1, 50: 4}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randomize_bn(model: torch.nn.Module, seed: int) -> None:
    """Give every BN non-trivial affine parameters and running stats, so loading them is actually tested."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            c = module.num_features
            module.weight.data = torch.rand(c, generator=gen) + 0.5
            module.bias.data = torch.randn(c, generator=gen) * 0.1
            module.running_mean = torch.randn(c, generator=gen) * 0.1
            module.running_var = torch.rand(c, generator=gen) + 0.5


def save_torchvision_like(model: ResNet, path: Path, n_classes: int = 10) -> dict[str, torch.Tensor]:
    """A state_dict in torchvision's layout: the encoder's keys plus a classifier `fc.*`."""
    state = dict(model.state_dict())
    in_features = model.channels[-1]
    state["fc.weight"] = torch.randn(n_classes, in_features)
    state["fc.bias"] = torch.randn(n_classes)
    torch.save(state, path)
    return state


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_pyramid_strides_and_channels_with_and_without_stem(depth):
    width, size = 8, 64
    model = resnet(depth, width=width).eval()
    e = EXPANSION[depth]
    assert model.channels == (width * e, 2 * width * e, 4 * width * e, 8 * width * e)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        feats = model(x)
    assert [f.shape[1] for f in feats] == list(model.channels)
    assert [size // f.shape[-1] for f in feats] == [4, 8, 16, 32] == list(model.strides)
    assert [size // f.shape[-2] for f in feats] == [4, 8, 16, 32]
    with torch.no_grad():
        stem_out = model.forward_stem(x)
        assert stem_out.shape == (1, width, size // 4, size // 4)
        for a, b in zip(model.forward_stages(stem_out), feats, strict=True):
            torch.testing.assert_close(a, b)

    bare = resnet(depth, width=width, stem=False).eval()
    assert bare.channels == model.channels
    assert not any(name.startswith(("conv1.", "bn1.")) for name in bare.state_dict())
    with torch.no_grad():
        bare_feats = bare(torch.randn(1, width, size // 4, size // 4))
    assert [f.shape[1] for f in bare_feats] == list(model.channels)
    assert [size // f.shape[-1] for f in bare_feats] == [4, 8, 16, 32]
    with pytest.raises(RuntimeError, match="stem=False"):
        bare.forward_stem(x)


@pytest.mark.parametrize("in_channels", [1, 4])
def test_stem_takes_any_number_of_input_channels(in_channels):
    model = resnet(18, in_channels=in_channels, width=8).eval()
    assert model.conv1.weight.shape == (8, in_channels, 7, 7)
    with torch.no_grad():
        assert model(torch.randn(1, in_channels, 32, 32))[-1].shape == (1, 64, 1, 1)


def test_standard_parameter_counts_without_classifier():
    # torchvision's 11,689,512 / 25,557,032 minus the fc layer (512*1000+1000 / 2048*1000+1000).
    assert n_params(resnet(18)) == 11_176_512
    assert n_params(resnet(50)) == 23_508_032
    r50 = resnet(50)
    assert r50.channels == (256, 512, 1024, 2048)
    assert resnet(18).channels == (64, 128, 256, 512)
    # Bottlenecks carry the stride on the 3x3 conv (v1.5).
    first = r50.layer2[0]
    assert isinstance(first, Bottleneck)
    assert first.conv1.stride == (1, 1) and first.conv2.stride == (2, 2)


def test_pretrained_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(1)
    source = resnet(18)
    randomize_bn(source, seed=2)
    path = tmp_path / "r18.pth"
    save_torchvision_like(source, path)

    torch.manual_seed(3)
    loaded = resnet(18, pretrained=str(path))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(source.eval()(x), loaded.eval()(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_pretrained_single_channel_stem_averages_rgb(tmp_path):
    torch.manual_seed(4)
    source = resnet(18)
    path = tmp_path / "r18.pth"
    state = save_torchvision_like(source, path)
    rgb = state["conv1.weight"]

    sar = resnet(18, in_channels=1, pretrained=path)
    assert sar.conv1.weight.shape == (64, 1, 7, 7)
    torch.testing.assert_close(sar.conv1.weight.data, (rgb[:, 0:1] + rgb[:, 1:2] + rgb[:, 2:3]) / 3)
    torch.testing.assert_close(sar.layer3[1].conv2.weight.data, state["layer3.1.conv2.weight"])

    four = resnet(18, in_channels=4, pretrained=path)
    for c in range(4):
        torch.testing.assert_close(four.conv1.weight.data[:, c : c + 1], sar.conv1.weight.data)


def test_pretrained_into_stemless_model_ignores_stem_keys(tmp_path):
    torch.manual_seed(5)
    source = resnet(18)
    path = tmp_path / "r18.pth"
    state = save_torchvision_like(source, path)
    bare = resnet(18, stem=False, pretrained=path)
    torch.testing.assert_close(bare.layer4[0].downsample[0].weight.data, state["layer4.0.downsample.0.weight"])


def test_pretrained_errors_name_the_file(tmp_path):
    missing = tmp_path / "nowhere" / "weights.pth"
    with pytest.raises(ConfigError, match="does not exist") as info:
        resnet(18, pretrained=missing)
    assert str(missing) in str(info.value)

    path = tmp_path / "r18.pth"
    state = save_torchvision_like(resnet(18), path)

    with pytest.raises(ConfigError, match="width") as info:
        resnet(18, width=32, pretrained=path)
    assert str(path) in str(info.value)

    wrong = {k: v for k, v in state.items() if not k.startswith("layer4.1.")}
    wrong["head.weight"] = torch.zeros(1)
    wrong_path = tmp_path / "wrong.pth"
    torch.save(wrong, wrong_path)
    with pytest.raises(ConfigError) as info:
        resnet(18, pretrained=wrong_path)
    message = str(info.value)
    assert str(wrong_path) in message and "\n" not in message
    assert "missing keys: layer4.1.conv1.weight" in message and "unexpected keys: head.weight" in message

    # resnet18 weights into resnet34: keys missing; into resnet50: shapes and keys differ.
    for depth in (34, 50):
        with pytest.raises(ConfigError, match="r18.pth"):
            resnet(depth, pretrained=path)

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="garbage.pth"):
        resnet(18, pretrained=garbage)

    nested = tmp_path / "nested.pth"
    torch.save({"state_dict": state, "epoch": 3}, nested)
    with pytest.raises(ConfigError, match="nested.pth"):
        resnet(18, pretrained=nested)


@pytest.mark.parametrize("kwargs", [{"depth": 101}, {"depth": 18, "width": 0}, {"depth": 18, "in_channels": 0}])
def test_invalid_arguments_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        resnet(**kwargs)


def test_init_is_deterministic_under_a_seed():
    def build(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return resnet(34, width=8).state_dict()

    first, again, other = build(0), build(0), build(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["layer2.0.conv1.weight"], other["layer2.0.conv1.weight"])


def test_zero_init_residual_zeroes_the_last_bn_of_each_block():
    model = resnet(50, width=8, zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 16 and all(torch.all(b.bn3.weight == 0) for b in blocks)
    default = resnet(18, width=8)
    assert all(torch.all(m.bn2.weight == 1) for m in default.modules() if isinstance(m, BasicBlock))


@pytest.mark.parametrize("depth,stem", [(18, True), (50, True), (18, False)])
def test_gradients_reach_every_parameter(depth, stem):
    torch.manual_seed(0)
    model = resnet(depth, width=8, in_channels=2, stem=stem).train()
    x = torch.randn(2, 2, 64, 64) if stem else torch.randn(2, 8, 16, 16)
    loss = sum(f.pow(2).mean() for f in model(x))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# -- load_pretrained_resnet: every part with a torchvision counterpart -----------------------------------

# A few of torchvision's resnet18 state_dict keys, spelled out so that the fake file below is checked to
# be in torchvision's layout rather than assumed to be.
TORCHVISION_KEYS = (
    "conv1.weight",
    "bn1.running_mean",
    "layer1.0.conv1.weight",
    "layer2.0.downsample.0.weight",
    "layer2.0.downsample.1.running_var",
    "layer4.1.bn2.bias",
    "fc.weight",
)


@pytest.fixture
def torchvision_file(tmp_path):
    """A fake torchvision resnet18 file (random weights, non-trivial BN) and its state_dict."""
    torch.manual_seed(11)
    source = resnet(18)
    randomize_bn(source, seed=12)
    path = tmp_path / "resnet18-torchvision.pth"
    state = save_torchvision_like(source, path, n_classes=1000)
    assert set(TORCHVISION_KEYS) <= set(state)
    return path, state, source


@pytest.mark.parametrize("in_channels", [3, 1, 4])
def test_a_per_modality_stem_takes_the_file_s_stem(torchvision_file, in_channels):
    from mmbench.methods.blocks.backbones import load_pretrained_resnet, pretrained_fits
    from mmbench.methods.blocks.common import Stem

    path, state, source = torchvision_file
    torch.manual_seed(13)
    stem = Stem(in_channels, 64)
    assert pretrained_fits(stem)
    load_pretrained_resnet(stem, path)
    rgb = state["conv1.weight"]
    expected = rgb if in_channels == 3 else rgb.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)
    torch.testing.assert_close(stem.body[0].weight.data, expected, rtol=0, atol=0)
    for name in ("weight", "bias", "running_mean", "running_var"):
        torch.testing.assert_close(getattr(stem.body[1], name), state[f"bn1.{name}"], rtol=0, atol=0)
    # The same rule as a whole ResNet's stem, so a stem and a ResNet built for the same input agree.
    whole = resnet(18, in_channels=in_channels, pretrained=path).eval()
    x = torch.randn(2, in_channels, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(stem.eval()(x), whole.forward_stem(x), rtol=0, atol=0)


def test_a_shared_encoder_with_stems_and_specific_encoders_all_start_from_the_file(torchvision_file):
    """STARS/ShaSpec's layout: stems + a stem-less shared ResNet equal the torchvision network on RGB;
    a specific encoder of width 64 loads whole (its stem adapted to its channels)."""
    from mmbench.methods.blocks.backbones import load_pretrained_resnet, pretrained_fits
    from mmbench.methods.blocks.common import Stem

    path, state, source = torchvision_file
    torch.manual_seed(14)
    stem, shared, specific = Stem(3, 64), resnet(18, stem=False), resnet(18, in_channels=2)
    for part in (stem, shared, specific):
        load_pretrained_resnet(part, path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(shared.eval()(stem.eval()(x)), source.eval()(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(specific.layer3[0].downsample[0].weight, state["layer3.0.downsample.0.weight"])
    torch.testing.assert_close(specific.conv1.weight, state["conv1.weight"].mean(1, keepdim=True).repeat(1, 2, 1, 1))
    # Narrower parts do not fit: methods leave them random (pretrained_fits) or get a one-line error.
    narrow_stem, narrow_specific = Stem(1, 16), resnet(18, in_channels=1, width=16)
    assert not pretrained_fits(narrow_stem) and not pretrained_fits(narrow_specific)
    assert not pretrained_fits(torch.nn.Conv2d(3, 64, 7))
    for part in (narrow_stem, narrow_specific):
        with pytest.raises(ConfigError, match="width 16") as info:
            load_pretrained_resnet(part, path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_load_pretrained_resnet_errors(tmp_path, torchvision_file):
    from mmbench.methods.blocks.backbones import load_pretrained_resnet
    from mmbench.methods.blocks.common import Stem

    path, state, _ = torchvision_file
    stemless = tmp_path / "no-stem.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith(("conv1.", "bn1."))}, stemless)
    with pytest.raises(ConfigError, match="no ResNet stem \\(missing keys: conv1.weight, bn1.weight"):
        load_pretrained_resnet(Stem(1, 64), stemless)
    with pytest.raises(ConfigError, match="does not exist"):
        load_pretrained_resnet(Stem(1, 64), tmp_path / "absent.pth")
    # A ResNet-18 file into a ResNet-50 specific encoder: the depth must match.
    with pytest.raises(ConfigError, match="resnet18-torchvision.pth"):
        load_pretrained_resnet(resnet(50), path)
    with pytest.raises(TypeError, match="not a Conv2d"):
        load_pretrained_resnet(torch.nn.Conv2d(3, 64, 7), path)
