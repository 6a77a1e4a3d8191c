"""mmFormer-2D version 2 (methods/blocks/mmformer.py; GEMMNet runs the same network): the network equals a
direct re-implementation of the authors' forward (`mmformer/mmformer.py` and `mmformer/layers.py` of
github.com/YaoZhang93/mmFormer at b18663a, written out below in 2-D with the authors' own ops) on the same
weights; the separate decoder sees every modality of every training sample from the encoder's features;
nothing is dead; version 1 stays reachable bit for bit through its switches."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from git_reference import reference_pins
from mmformer_v1_case import CASES, V1_SWITCHES, case_config, pin_of
from stars_v1_case import pinned_threads
from torch import nn

from mmbench.errors import ConfigError
from mmbench.method import TrainStep, build_method
from mmbench.registry import METHODS

THREE = {"optical": 3, "dsm": 1, "sar": 1}
INFO = TrainStep(step=0, micro=0, seed=0, ignore_index=255, num_classes=5)


def build(method: str = "mmformer", modalities=THREE, **switches):
    case = {"method": method, "modalities": modalities}
    torch.manual_seed(0)
    return build_method(METHODS.get(method), modalities, 5, case_config(case, switches))


def batch(modalities=THREE, count=4, size=64, seed=1):
    generator = torch.Generator().manual_seed(seed)
    inputs = {n: torch.randn(count, c, size, size, generator=generator) for n, c in modalities.items()}
    label = torch.randint(0, 5, (count, size, size), generator=generator)
    return {"inputs": inputs, "label": label, "available": torch.ones(count, len(modalities), dtype=torch.bool)}


@pytest.fixture(scope="module")
def version_1() -> dict:
    """What commit 00b8884's code (read from git) computes here, on one thread (tests/git_reference.py)."""
    return reference_pins("mmformer_v1_reference", "00b8884")


@pytest.mark.parametrize("name", list(CASES))
def test_version_1_switches_reproduce_version_1_bit_for_bit(name, version_1):
    """The current code with `V1_SWITCHES` against commit 00b8884's code, both run now on this machine and on
    one thread: CPU kernels split work by thread count and round by instruction set, so a pin stored from
    another machine is not bit-exact here (tests/git_reference.py)."""
    case = CASES[name]
    with pinned_threads(1):
        torch.manual_seed(0)
        model = METHODS.get(case["method"]).load()(case["modalities"], 6, case_config(case, V1_SWITCHES))
        got = pin_of(model, case)
    assert got == version_1[name]


# -- the authors' forward, 2-D, on mmbench's weights ---------------------------------------------------
def authors_norm(x, kind):
    """`normalization('in')` = nn.InstanceNorm3d: on a (B, C, H, W) tensor (the 2-D ports) it reads each
    sample as one unbatched volume (`joint`); on mmFormer's 5-D volumes it is per channel (`instance`,
    here a depth-1 volume)."""
    if kind == "joint":
        with warnings.catch_warnings():  # torch notes that the "channels" (B) differ from num_features
            warnings.simplefilter("ignore")
            return nn.InstanceNorm3d(x.shape[1])(x)
    return nn.InstanceNorm3d(x.shape[1])(x.unsqueeze(2)).squeeze(2)


def conv(x, layer, stride=1, pad_type="reflect"):
    """nn.Conv2d(padding=k // 2, padding_mode=pad_type) from the weights of `layer` (a Conv2d)."""
    k = layer.weight.shape[-1] // 2
    if k:
        x = F.pad(x, (k, k, k, k), mode="reflect" if pad_type == "reflect" else "constant")
    return F.conv2d(x, layer.weight, layer.bias, stride=stride)


def prenorm(x, block, norm, stride=1, pad_type="reflect"):
    """`general_conv3d_prenorm`: norm -> LeakyReLU(0.2) -> conv."""
    return conv(F.leaky_relu(authors_norm(x, norm), 0.2), block.conv, stride, pad_type)


def fusion_prenorm(x, block, norm):
    """`fusion_prenorm`: three `general_conv3d_prenorm` with the default (zero) padding."""
    for layer in block.layers:
        x = prenorm(x, layer, norm, pad_type="zeros")
    return x


def encoder(x, stages, norm):
    features = []
    for index, stage in enumerate(stages):
        x = conv(x, stage.entry) if index == 0 else prenorm(x, stage.entry, norm, stride=2)
        x = x + prenorm(prenorm(x, stage.block[0], norm), stage.block[1], norm)
        features.append(x)
    return features


def up2(x):
    return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)(x)


def decoder_fuse(xs, x5, model, norm):
    """`Decoder_fuse.forward` (RFM5 on the bottleneck, RFM1-4, c1/c2/out per scale); logits, not softmax."""
    d = model.fuse_decoder
    de = fusion_prenorm(x5, model.bottleneck_fusion, norm)
    preds = [F.conv2d(de, d.deep_heads[3].weight, d.deep_heads[3].bias)]
    for level in (3, 2, 1, 0):
        up = prenorm(up2(de), d.up_convs[level], norm)
        skip = fusion_prenorm(xs[level], model.region_fusion[level], norm)
        de = prenorm(prenorm(torch.cat((skip, up), 1), d.merge_convs[level], norm), d.out_convs[level], norm)
        if level:
            preds.append(F.conv2d(de, d.deep_heads[level - 1].weight, d.deep_heads[level - 1].bias))
    return F.conv2d(de, d.head.weight, d.head.bias), preds


def decoder_sep(xs, model, norm):
    """`Decoder_sep.forward` on one modality's unmasked x1..x5."""
    d = model.sep_decoder
    de = xs[4]
    for level in (3, 2, 1, 0):
        de = prenorm(up2(de), d.up_convs[level], norm)
        de = prenorm(prenorm(torch.cat((de, xs[level]), 1), d.merge_convs[level], norm), d.out_convs[level], norm)
    return F.conv2d(de, d.head.weight, d.head.bias)


def authors_forward(model, inputs, mask, norm):
    """`Model.forward` with `is_training = True`: (fuse logits, deep logits at 1/16..1/2, sep logits)."""
    names = model.modality_names
    feats = {n: encoder(inputs[n], model.encoders[n].stages, norm) for n in names}
    grid = feats[names[0]][4].shape[-2:]
    pos = {n: model.tokens[n].position.flatten(2).transpose(1, 2) for n in names}  # (1, L, T) at the trained grid
    intra = {}
    for n in names:
        token = F.conv2d(feats[n][4], model.tokens[n].to_tokens.weight, model.tokens[n].to_tokens.bias)
        intra[n] = model.intra[n](token.flatten(2).transpose(1, 2) + pos[n])  # Transformer: x = x + pos first
    sep = [decoder_sep(feats[n], model, norm) for n in names]

    def masker(parts):  # MaskModal: y[mask] = x[mask] over the (B, K, ...) stack, then K folded into channels
        stacked = torch.stack(parts, dim=1)
        y = torch.zeros_like(stacked)
        y[mask, ...] = stacked[mask, ...]
        return y.view(y.shape[0], -1, *y.shape[3:])

    xs = [masker([feats[n][level] for n in names]) for level in range(4)]
    intra_maps = [intra[n].transpose(1, 2).reshape(intra[n].shape[0], -1, *grid) for n in names]
    masked = torch.chunk(masker(intra_maps), len(names), dim=1)
    tokens = torch.cat([m.flatten(2).transpose(1, 2) for m in masked], dim=1)
    inter = model.inter(tokens + torch.cat([pos[n] for n in names], dim=1))
    x5 = inter.view(inter.shape[0], *grid, -1).permute(0, 3, 1, 2).contiguous()  # their interleaving view
    x5 = F.conv2d(x5, model.from_tokens.weight, model.from_tokens.bias)  # multimodal_decode_conv
    fuse, preds = decoder_fuse(xs, x5, model, norm)
    return fuse, preds, sep


@pytest.mark.parametrize("method,norm", [("mmformer", "instance"), ("mmformer", "joint"), ("gemmnet", "joint")])
def test_the_network_equals_the_authors_forward_on_the_same_weights(method, norm):
    model = build(method, norm=norm, inter_layout="authors")
    model.eval()
    data = batch()
    mask = torch.tensor([[True, True, True], [True, False, True], [False, True, False], [False, False, True]])
    with torch.no_grad():
        expected_fuse, expected_deep, expected_sep = authors_forward(model, data["inputs"], mask, norm)
        features = {n: model.encode(n, data["inputs"][n]) for n in model.modality_names}
        fuse, deep = model._fuse(features, mask)
        names = model.modality_names
        sep = [model.sep_decoder(features[n]["skips"][:4], features[n]["skips"][4])[0] for n in names]
    torch.testing.assert_close(fuse, expected_fuse, rtol=1e-4, atol=1e-4)
    assert len(deep) == len(expected_deep) == 4
    for ours, theirs in zip(deep, expected_deep, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    for ours, theirs in zip(sep, expected_sep, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_the_grid_layout_differs_from_the_authors_interleaving_only_at_the_bottleneck():
    """`inter_layout: grid` (default) keeps each modality's tokens on its own positions; the authors' `view`
    does not, so the two give different logits from the same weights."""
    model = build()
    model.eval()
    data = batch(count=2)
    with torch.no_grad():
        grid = model(data["inputs"], data["available"])
        model.config = {**model.config, "inter_layout": "authors"}
        authors = model(data["inputs"], data["available"])
    assert not torch.allclose(grid, authors)


def spy_separate_decoder(model):
    calls = []
    original = model.sep_decoder.forward

    def forward(skips, bottleneck):
        calls.append((bottleneck.detach().clone(), [s.shape[0] for s in skips]))
        return original(skips, bottleneck)

    model.sep_decoder.forward = forward
    return calls


@pytest.mark.parametrize("method", ["mmformer", "gemmnet"])
def test_the_separate_decoder_sees_every_modality_of_every_sample_from_encoder_features(method):
    model = build(method)
    model.train()
    data = batch()
    kept = torch.tensor([[True, False, False], [False, True, False], [False, False, True], [True, True, False]])
    model.training_availability = lambda batch, info: kept
    calls = spy_separate_decoder(model)
    terms = model.training_loss(data, INFO)
    assert float(terms["sep"]) > 0
    rows = sum(call[1][0] for call in calls)
    assert rows == len(model.modality_names) * 4  # M modalities x B samples, whatever the sampled pattern
    bottleneck = torch.cat([call[0] for call in calls])
    if method == "mmformer":  # GEMMNet's encoders read the completed (imputed) input
        with torch.no_grad():
            x5 = torch.cat([model.encoders[n](data["inputs"][n])[-1] for n in model.modality_names])
        torch.testing.assert_close(bottleneck, x5)


def test_version_1_runs_the_separate_decoder_only_on_kept_rows():
    model = build(sep_rows="available")
    kept = torch.tensor([[True, False, False], [False, True, False], [False, False, True], [True, True, False]])
    model.training_availability = lambda batch, info: kept
    calls = spy_separate_decoder(model)
    model.training_loss(batch(), INFO)
    assert sum(call[1][0] for call in calls) == int(kept.sum())


def test_separate_loss_never_reaches_the_transformers_when_fed_from_the_encoder():
    """`sep_bottleneck: encoder`: the separate decoder's loss trains the encoders and itself only."""
    model = build(sep_weight=1.0, deep_supervision_weight=0.0)
    features = {n: model.encode(n, x) for n, x in batch()["inputs"].items()}
    sep = model.separate_terms(features, torch.ones(4, 3, dtype=torch.bool), batch()["label"], 255)
    sep.backward()
    assert all(p.grad is None for p in model.intra.parameters())
    assert all(p.grad is None for p in model.fuse_decoder.parameters())
    assert any(p.grad is not None for p in model.encoders.parameters())


@pytest.mark.parametrize("method", ["mmformer", "gemmnet"])
def test_nothing_is_dead_at_the_defaults(method):
    """Version 1 had four never-used heads in the separate decoder; every parameter now gets gradient."""
    model = build(method)
    model.train()
    model.training_availability = lambda batch, info: torch.tensor(
        [[True, False, True], [False, True, False], [True, True, True], [False, False, True]]
    )
    model.training_loss(batch(), INFO)["loss"].backward()
    discriminators = {id(p) for m in model.adversary_modules() for p in m.parameters()}
    dead = [
        name
        for name, p in model.named_parameters()
        if id(p) not in discriminators and (p.grad is None or not bool(p.grad.abs().sum() > 0))
    ]
    assert dead == []


@pytest.mark.parametrize("key", ["norm", "region_fusion", "inter_layout", "sep_rows"])
def test_a_bad_switch_value_is_one_config_error_naming_the_key(key):
    with pytest.raises(ConfigError, match=f"method.{key}="):
        build(**{key: "nonsense"})


@pytest.mark.parametrize("method", ["mmformer", "gemmnet"])
def test_missing_inputs_never_reach_the_logits(method):
    model = build(method)
    model.eval()
    data = batch(count=3)
    available = torch.tensor([[True, False, True], [False, True, False], [True, True, False]])
    outputs = []
    for fill in (0.0, 7.0, float("nan")):
        inputs = {
            n: torch.where(available[:, i].view(-1, 1, 1, 1), x, torch.full_like(x, fill))
            for i, (n, x) in enumerate(data["inputs"].items())
        }
        with torch.no_grad():
            outputs.append(model(inputs, available))
    assert torch.isfinite(outputs[0]).all()
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=0)
    torch.testing.assert_close(outputs[2], outputs[0], rtol=0, atol=0)
