"""`ae` / `cgan` with `segmenter: mmformer`: the completed input goes through the mmFormer-2D network as GEMMNet
runs it (methods/imputation/segmenters.py), so an imputer can be compared with `gemmnet`'s alone; the default
`early-fusion` segmenter is unchanged (pinned numbers from before the switch existed)."""

from __future__ import annotations

import pytest
import torch

from mmbench.config import load_defaults, resolve_run_config
from mmbench.errors import ConfigError
from mmbench.method import TrainStep, build_method, count_parameters, parameter_budget
from mmbench.methods.blocks.mmformer import MmFormer
from mmbench.methods.imputation.segmenters import EarlyFusionSegmenter, MmFormerSegmenter
from mmbench.registry import DATASETS, METHODS, PROTOCOLS

NAMES = ("ae", "cgan")
MODALITIES = {"optical": 3, "dsm": 1, "sar": 1}
CLASSES, SIZE = 4, 64
INFO = TrainStep(step=3, micro=0, seed=0, ignore_index=255, num_classes=CLASSES)


def config_of(name: str, **overrides) -> dict:
    spec = METHODS.get(name)
    return {**load_defaults(spec.defaults, name), **spec.load().tiny_config, **overrides}


def build(name: str, modalities: dict[str, int] = MODALITIES, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_method(METHODS.get(name), modalities, CLASSES, config_of(name, **overrides))


def batch_for(modalities: dict[str, int] = MODALITIES, batch: int = 4, seed: int = 1) -> dict:
    generator = torch.Generator().manual_seed(seed)
    inputs = {name: torch.randn(batch, c, SIZE, SIZE, generator=generator) for name, c in modalities.items()}
    label = torch.randint(0, CLASSES, (batch, SIZE, SIZE), generator=generator)
    return {"inputs": inputs, "label": label, "available": torch.ones(batch, len(modalities), dtype=torch.bool)}


MIXED = torch.tensor([[True, False, True], [False, True, False], [True, True, True], [False, False, True]])


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- mmformer ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("modalities", [{"optical": 3, "dsm": 1}, MODALITIES], ids=["2", "3"])
def test_mmformer_forward_gives_finite_logits_for_every_mix(name, modalities):
    model = build(name, modalities, segmenter="mmformer").eval()
    batch = batch_for(modalities)
    available = MIXED[:, : len(modalities)].clone()
    available[1, 0] = True  # no sample without any modality
    with torch.no_grad():
        logits = model(batch["inputs"], available)
    assert logits.shape == (4, CLASSES, SIZE, SIZE) and bool(torch.isfinite(logits).all())


@pytest.mark.parametrize("name", NAMES)
def test_the_mmformer_segmenter_is_the_mmformer_network_and_nothing_else(name):
    config = config_of(name, segmenter="mmformer")
    model = build(name, segmenter="mmformer")
    assert isinstance(model.segmenter, MmFormerSegmenter) and isinstance(model.segmenter, MmFormer)
    reference = MmFormer(MODALITIES, CLASSES, config)
    assert count_parameters(model.segmenter) == count_parameters(reference)
    assert [n for n, _ in model.segmenter.named_parameters()] == [n for n, _ in reference.named_parameters()]
    parts = [model.generators, model.segmenter, *model.adversary_modules()]
    assert count_parameters(model) == sum(count_parameters(part) for part in parts), "no early-fusion network built"
    early = build(name)
    assert isinstance(early.segmenter, EarlyFusionSegmenter)
    assert count_parameters(early.segmenter) != count_parameters(model.segmenter)


@pytest.mark.parametrize("name", NAMES)
def test_mmformer_segments_and_trains_as_gemmnet_runs_its_network(name):
    """segment = decode(encode every completed modality, availability all ones); loss = segmentation_terms."""
    model = build(name, segmenter="mmformer").eval()
    batch = batch_for()
    reference = MmFormer(MODALITIES, CLASSES, model.config).eval()
    reference.load_state_dict(model.segmenter.state_dict())
    with torch.no_grad():
        completed = model.complete(batch["inputs"], MIXED)
        features = {n: reference.encode(n, completed[n]) for n in reference.modality_names}
        ones = torch.ones_like(MIXED)
        torch.testing.assert_close(model(batch["inputs"], MIXED), reference.decode(features, ones), rtol=0, atol=0)
        terms = model.segmenter.loss_terms(completed, batch["label"], 255)
        expected = reference.segmentation_terms(features, ones, batch["label"], 255)
    assert set(terms) == {"loss", "fused", "sep", "deep"}
    for key in terms:
        torch.testing.assert_close(terms[key], expected[key], rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_mmformer_training_loss_holds_the_fused_sep_and_deep_terms_and_the_imputers(name):
    model = build(name, segmenter="mmformer").train()
    model.training_availability = lambda batch, info: MIXED  # a fixed withheld pattern
    terms = model.training_loss(batch_for(), INFO)
    imputer = {"ae": {"l1"}, "cgan": {"l1", "g_adv"}}[name]
    assert set(terms) == {"loss", "fused", "sep", "deep"} | imputer
    assert all(bool(torch.isfinite(value)) for value in terms.values())
    config = model.config
    segmentation = (
        terms["fused"] + config["sep_weight"] * terms["sep"] + config["deep_supervision_weight"] * terms["deep"]
    )
    if name == "ae":
        imputation = config["reconstruction_weight"] * terms["l1"]
    else:
        imputation = config["gan_weight"] * (terms["g_adv"] + config["l1_weight"] * terms["l1"])
    torch.testing.assert_close(terms["loss"].detach(), segmentation + imputation)
    assert float(terms["sep"]) > 0 and float(terms["deep"]) > 0
    terms["loss"].backward()
    assert all(p.grad is not None for p in model.segmenter.fuse_decoder.parameters())


@pytest.mark.parametrize("detach", [False, True])
def test_detach_imputation_stops_the_mmformer_loss_at_the_generators(detach):
    model = build("ae", segmenter="mmformer", detach_imputation=detach).train()
    batch = batch_for()
    completed = model.complete(batch["inputs"], MIXED)
    first_weight = next(model.generators["dsm"].parameters())
    loss = model._segmentation_terms(completed, batch["label"], 255)["loss"]
    (grad,) = torch.autograd.grad(loss, [first_weight], allow_unused=True)
    assert (grad is None) == detach


@pytest.mark.parametrize("name", NAMES)
def test_mmformer_no_leak_from_missing_inputs(name):
    """Whatever fills a missing modality (zeros, noise, NaN), the logits are the same and finite."""
    model = build(name, segmenter="mmformer").eval()
    inputs = batch_for()["inputs"]
    generator = torch.Generator().manual_seed(7)
    outputs = []
    with torch.no_grad():
        for fill in ("zeros", "noise", "nan"):
            filled = {}
            for index, (key, value) in enumerate(inputs.items()):
                replacement = {
                    "zeros": torch.zeros_like(value),
                    "noise": 100 * torch.randn(value.shape, generator=generator),
                    "nan": torch.full_like(value, float("nan")),
                }[fill]
                filled[key] = torch.where(MIXED[:, index].view(-1, 1, 1, 1), value, replacement)
            outputs.append(model(filled, MIXED))
    assert all(bool(torch.isfinite(out).all()) for out in outputs)
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=0)
    torch.testing.assert_close(outputs[2], outputs[0], rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_budget_of_the_mmformer_form(name):
    model = build(name, segmenter="mmformer").train()
    scenarios = [
        {"name": "optical only", "available": ["optical"]},
        {"name": "full set", "available": list(MODALITIES)},
    ]
    budget = parameter_budget(model, MODALITIES, scenarios)
    assert budget["trainable"] == count_parameters(model)
    assert (budget["adversary"] > 0) == (name == "cgan")
    used = budget["used_at_inference"]
    # complete data: no generator runs, and the separate decoder is for training only
    assert 0 < used["full set"] < count_parameters(model.segmenter)
    assert used["full set"] < used["optical only"] <= budget["trainable"] - budget["adversary"]
    assert model.training and all(p.grad is None for p in model.parameters())


# -- config ----------------------------------------------------------------------------------------------


def resolve(name: str, *overrides: str):
    specs = {"method": METHODS.get(name), "protocol": PROTOCOLS.get("full"), "dataset": DATASETS.get("synthetic")}
    return resolve_run_config(specs, overrides=list(overrides)).section("method")


@pytest.mark.parametrize("name", NAMES)
def test_the_mmformer_keys_come_from_the_mmformer_method_defaults(name):
    """ae.yaml / cgan.yaml inherit methods/mmformer/mmformer.yaml: every key it has (now or later) is in the
    resolved config with its default and its rule; the imputer's own keys win (sampler) and the recipe
    is the method's."""
    mmformer = load_defaults(METHODS.get("mmformer").defaults, "mmformer")
    own = load_defaults(METHODS.get(name).defaults, name)
    assert own["segmenter"] == "early-fusion"
    gemmnet = load_defaults(METHODS.get("gemmnet").defaults, "gemmnet")
    for key, value in mmformer.items():
        if key in ("norm", "conv_init"):  # GEMMNet's forms, so gemmnet vs segmenter=mmformer isolates the imputer
            assert own[key] == gemmnet[key] != value, key
        elif key not in ("train", "sampler"):
            assert own[key] == value, key
    network = [key for key in mmformer if key not in ("train", "sampler", "sep_weight", "deep_supervision_weight")]
    assert {k: own[k] for k in network} == {k: gemmnet[k] for k in network}, "the same segmenter as gemmnet's"
    method = resolve(name, "method.segmenter=mmformer", "method.basic_dims=12")
    assert method["segmenter"] == "mmformer" and method["basic_dims"] == 12
    assert set(mmformer) <= set(method), "the record's config holds every mmformer key"
    with pytest.raises(ConfigError, match="basic_dims"):
        resolve(name, "method.basic_dims=0")
    with pytest.raises(ConfigError, match="segmenter") as info:
        resolve(name, "method.segmenter=unet")
    assert "\n" not in str(info.value)


def test_an_unknown_segmenter_is_refused_when_built():
    with pytest.raises(ConfigError, match="method.segmenter='unet'"):
        build("ae", segmenter="unet")


# -- early-fusion: unchanged -------------------------------------------------------------------------------

# Numbers of the tiny ae/cgan on MODALITIES, seed 0, `batch_for()`, MIXED, INFO, written by the code before
# the `segmenter` switch existed (commit 00b8884): the default form must reproduce them.
EARLY_FUSION_PINS = {
    "ae": {"logits_sum": -44696.08984375, "logits_abs": 98221.1875, "loss": 2.582109, "ce": 1.726466, "l1": 0.855643},
    "cgan": {
        "logits_sum": -14843.2314453125,
        "logits_abs": 27079.376953125,
        "loss": 6.158866,
        "ce": 1.939269,
        "l1": 0.830031,
        "g_adv": 1.388841,
    },
}


@pytest.mark.parametrize("name", NAMES)
def test_the_default_early_fusion_form_is_unchanged(name):
    default, explicit = build(name), build(name, segmenter="early-fusion")
    assert isinstance(default.segmenter, EarlyFusionSegmenter)
    batch = batch_for(batch=4)
    default.eval(), explicit.eval()
    with torch.no_grad():
        logits = default(batch["inputs"], MIXED)
        torch.testing.assert_close(explicit(batch["inputs"], MIXED), logits, rtol=0, atol=0)
    pin = EARLY_FUSION_PINS[name]
    assert float(logits.sum()) == pytest.approx(pin["logits_sum"], rel=1e-4)
    assert float(logits.abs().sum()) == pytest.approx(pin["logits_abs"], rel=1e-4)
    default.train()
    terms = default.training_loss(batch, INFO)
    assert list(terms) == list(pin)[2:]
    for key in terms:
        assert float(terms[key].detach()) == pytest.approx(pin[key], rel=1e-4, abs=1e-5), key


def test_checkpoints_written_before_the_switch_still_load():
    """v1 named the early-fusion parts `encoder.*` and `decoder.*`; they load into `segmenter.*`."""
    source, target = build("ae", seed=0), build("ae", seed=1)
    legacy = {key.removeprefix("segmenter."): value for key, value in source.state_dict().items()}
    assert any(key.startswith("encoder.") for key in legacy)
    target.load_state_dict(legacy)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
