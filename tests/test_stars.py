"""STARS: every availability pattern, no leakage from missing inputs, the split interface, the loss terms
and ablation switches, and a short run through `mmbench run`."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from mmbench.config import load_defaults
from mmbench.errors import ConfigError
from mmbench.method import TrainStep, build_method
from mmbench.registry import METHODS

MODALITIES3 = {"optical": 3, "dsm": 1, "sar": 1}
MODALITIES2 = {"optical": 3, "sar": 1}
TINY = METHODS.get("stars").load().tiny_config  # the narrow widths STARS declares for fast CPU checks


def stars(modalities=MODALITIES3, seed=0, **overrides):
    spec = METHODS.get("stars")
    config = load_defaults(spec.defaults, "stars")
    config.update(TINY)
    for key, value in overrides.items():
        if isinstance(value, dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    torch.manual_seed(seed)
    return build_method(spec, modalities, 6, config)


def batch(modalities, size=32, count=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    inputs = {
        name: torch.randn(count, channels, size, size, generator=generator) for name, channels in modalities.items()
    }
    label = torch.randint(0, 6, (count, size, size), generator=generator)
    label[:, :2] = 255
    return {
        "inputs": inputs,
        "label": label,
        "available": torch.ones(count, len(modalities), dtype=torch.bool),
        "slots": torch.arange(count),
    }


def patterns(count):
    return [row for row in itertools.product([True, False], repeat=count) if any(row)]


@pytest.mark.parametrize("modalities", [MODALITIES2, MODALITIES3], ids=["2 modalities", "3 modalities"])
def test_every_availability_pattern_runs_forward_and_backward(modalities):
    model = stars(modalities)
    data = batch(modalities)
    for row in patterns(len(modalities)):
        available = torch.tensor([row, row])
        logits = model(data["inputs"], available)
        assert logits.shape == (2, 6, 32, 32) and torch.isfinite(logits).all()
        logits.mean().backward()
    mixed = torch.tensor([patterns(len(modalities))[0], patterns(len(modalities))[-1]])
    assert model(data["inputs"], mixed).shape == (2, 6, 32, 32)


@pytest.mark.parametrize("modalities", [MODALITIES2, MODALITIES3], ids=["2 modalities", "3 modalities"])
def test_missing_inputs_are_never_read(modalities):
    model = stars(modalities).eval()
    data = batch(modalities)
    names = list(modalities)
    rows = patterns(len(names))
    available = torch.tensor([rows[1], rows[-1]])  # per-sample mix
    for scenario in (available, torch.tensor([rows[-1], rows[-1]])):
        filled = {
            name: torch.where(scenario[:, i].view(-1, 1, 1, 1), x, torch.full_like(x, math.nan))
            for i, (name, x) in enumerate(data["inputs"].items())
        }
        zeros = {
            name: torch.where(scenario[:, i].view(-1, 1, 1, 1), x, torch.zeros_like(x))
            for i, (name, x) in enumerate(data["inputs"].items())
        }
        with torch.no_grad():
            from_nan, from_zero = model(filled, scenario), model(zeros, scenario)
        assert torch.isfinite(from_nan).all()
        torch.testing.assert_close(from_nan, from_zero)


def test_the_split_interface_matches_forward():
    model = stars().eval()
    data = batch(MODALITIES3)
    available = torch.tensor([[True, False, True], [False, True, False]])
    with torch.no_grad():
        features = {name: model.encode(name, x) for name, x in data["inputs"].items()}
        torch.testing.assert_close(model.decode(features, available), model(data["inputs"], available))
    assert model.has_split_interface


def test_training_loss_terms_and_ablations():
    data = batch(MODALITIES3)
    info = TrainStep(step=0, micro=0, seed=0, ignore_index=255, num_classes=6)
    terms = stars().training_loss(data, info)
    assert set(terms) == {"loss", "ce_full", "ce_missing", "translation", "psa", "shared_std"}
    expected = terms["ce_full"] + terms["ce_missing"] + terms["translation"] + 0.1 * terms["psa"]
    torch.testing.assert_close(terms["loss"], expected)
    copy = stars(translator="copy")
    assert not any(True for _ in copy.translators.parameters())  # identity translators: nothing to learn
    assert "translation" in copy.training_loss(data, info)  # the loss stays: only the translator changed
    assert "translation" not in stars(loss={"translation": 0.0}).training_loss(data, info)
    assert "psa" not in stars(psa={"enabled": False}).training_loss(data, info)
    uniform = stars(psa={"sampling": "uniform"}).training_loss(data, info)
    assert torch.isfinite(uniform["psa"])


def test_stop_gradient_keeps_the_target_encoder_out_of_the_translation_gradient():
    data = batch(MODALITIES2)
    features_of = lambda model: {name: model.encode(name, x) for name, x in data["inputs"].items()}  # noqa: E731
    for stop_gradient in (True, False):
        model = stars(MODALITIES2, stop_gradient=stop_gradient, translation_levels="last")
        loss = model._translation_loss(features_of(model))
        loss.backward()
        # The optical stem feeds only the optical shared features: with stop-gradient it gets gradient only as a
        # source (through T_{optical->sar}); without it also as a target. Compare to a source-only computation.
        grad = model.stems["optical"].body[0].weight.grad.clone()
        model.zero_grad()
        features = features_of(model)
        source_only = -torch.nn.functional.cosine_similarity(
            model.translators["optical__sar"][-1](features["optical"]["shared"][-1]),
            features["sar"]["shared"][-1].detach(),
            dim=1,
        ).mean()
        target_side = -torch.nn.functional.cosine_similarity(
            model.translators["sar__optical"][-1](features["sar"]["shared"][-1]).detach(),
            features["optical"]["shared"][-1],
            dim=1,
        ).mean()
        (source_only / 2 + (0 if stop_gradient else target_side / 2)).backward()
        torch.testing.assert_close(grad, model.stems["optical"].body[0].weight.grad)


def test_psa_sampling_is_seeded_by_the_step():
    data = batch(MODALITIES3)
    model = stars()
    first = model.training_loss(data, TrainStep(3, 0, 0, 255, 6))["psa"]
    again = model.training_loss(data, TrainStep(3, 0, 0, 255, 6))["psa"]
    other = model.training_loss(data, TrainStep(4, 0, 0, 255, 6))["psa"]
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_bad_configs_are_rejected():
    with pytest.raises(ConfigError, match="needs at least 2 modalities; the dataset has 1"):
        stars({"optical": 3})
    with pytest.raises(ConfigError, match="translation_levels='some'"):
        stars(translation_levels="some")
    with pytest.raises(ConfigError, match="distance='l2'"):
        stars(distance="l2")
    for key, value in (("translator", "mean"), ("shared_norm", "group"), ("decoder_norm", "shared")):
        with pytest.raises(ConfigError, match=f"method.{key}={value!r}: use one of"):
            stars(**{key: value})
    with pytest.raises(ConfigError, match="method.psa.branch='real': use one of both, full, missing, v1"):
        stars(psa={"branch": "real"})
    with pytest.raises(ConfigError, match="psa.anchors=hard-easy draws batch-level quotas"):
        stars(psa={"anchors": "hard-easy", "per_image": True})


def decoder_batch_sizes(model, data, info):
    """The batch size each of the decoder's BatchNorm calls saw in one training step, in call order."""
    sizes = []
    for module in model.decoder.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.register_forward_hook(lambda _, args, __: sizes.append(args[0].shape[0]))
    model.training_loss(data, info)
    return sizes


def test_decoder_norm_joint_decodes_both_branches_as_one_batch():
    """`per_branch` (version 3) gives the decoder's BatchNorm the full and the missing branch as two batches,
    so training normalises each with statistics evaluation never uses (its running statistics average the
    two); `joint` gives it one batch holding both, the mixture the running statistics hold."""
    data, info = batch(MODALITIES3, count=4), TrainStep(step=0, micro=0, seed=0, ignore_index=255, num_classes=6)
    levels = stars().levels
    assert decoder_batch_sizes(stars(), data, info) == [4] * (2 * levels)
    assert decoder_batch_sizes(stars(decoder_norm="joint"), data, info) == [8] * levels


def test_decoder_norm_changes_nothing_but_the_decoders_batch_statistics():
    """With the decoder's BatchNorm on its running statistics both settings compute every loss term alike (to
    float rounding: one convolution over 2B rows instead of two over B); with batch statistics they differ."""
    data, info = batch(MODALITIES3, count=4), TrainStep(step=0, micro=0, seed=0, ignore_index=255, num_classes=6)
    terms = {}
    for fixed in (True, False):
        for choice in ("per_branch", "joint"):
            model = stars(decoder_norm=choice)
            if fixed:
                for module in model.decoder.modules():
                    if isinstance(module, torch.nn.BatchNorm2d):
                        module.eval()
            loss = model.training_loss(data, info)
            terms[fixed, choice] = {key: float(value.detach()) for key, value in loss.items()}
    for key, value in terms[True, "per_branch"].items():
        assert terms[True, "joint"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    for key in ("ce_full", "ce_missing"):
        assert terms[False, "joint"][key] != pytest.approx(terms[False, "per_branch"][key], rel=1e-4), key


def test_stars_runs_through_the_cli(capsys, tmp_path):
    from mmbench.cli.main import main
    from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic
    from mmbench.records import read_record

    store = write_synthetic(tmp_path / "s.h5", SyntheticConfig(tiles=6, size=64))
    code = main(
        [
            "run",
            "stars",
            "-p",
            "last1",
            "-d",
            str(store),
            "--smoke",
            "--out",
            str(tmp_path / "runs"),
            *[f"--set=method.{key}={value}" for key, value in TINY.items()],
            "--set",
            "method.train.crop_size=32",
            "--set",
            "method.train.batch_size=2",
        ]
    )
    assert code == 0, capsys.readouterr().err
    (path,) = (tmp_path / "runs").rglob("result.json")
    record = read_record(path)
    assert record["smoke"] and [s["name"] for s in record["scenarios"]] == ["optical only", "dsm only", "sar only"]
    assert record["method"]["paper"] == "https://arxiv.org/abs/2601.17342"
    assert record["method"]["trained_for_missing"] is True  # its missing branch (missing_sampler)
    budget = record["method"]["budget"]
    assert budget["trainable"] == record["method"]["params"] and budget["adversary"] == 0
    assert set(budget["used_at_inference"]) == {"optical only", "dsm only", "sar only"}
