"""STARS version 2: PSA really cross-modal, one-factor ablations, the ShaSpec terms, the shared-encoder
norm, and version 1 still reachable bit for bit (docs/methods/stars.md)."""

from __future__ import annotations

import pytest
import torch
from git_reference import reference_pins
from stars_v1_case import CASES, V1_SWITCHES, batch_of, case_batch, case_config, case_info, grad_summary, pinned_threads

from mmbench.method import TrainStep, build_method
from mmbench.registry import METHODS
from mmbench.sampling import sample_availability

TWO = {"optical": 3, "sar": 1}
THREE = {"optical": 3, "dsm": 1, "sar": 1}
INFO = TrainStep(step=3, micro=0, seed=11, ignore_index=255, num_classes=6)


def build(modalities, extra=None, seed=0):
    torch.manual_seed(seed)
    return build_method(METHODS.get("stars"), modalities, 6, case_config({"psa": {}}, extra or {}))


@pytest.fixture(scope="module")
def version_1() -> dict:
    """What commit 9c50ce6's code (read from git) computes here (tests/git_reference.py): a pin stored from
    another machine is not bit-exact on a CPU with other kernels."""
    return reference_pins("stars_v1_reference", "9c50ce6")


@pytest.mark.parametrize("name", list(CASES))
def test_version_1_switches_reproduce_version_1_bit_for_bit(name, version_1):
    case = CASES[name]
    torch.manual_seed(0)
    model = build_method(METHODS.get("stars"), case["modalities"], 6, case_config(case, V1_SWITCHES))
    with pinned_threads():
        terms = model.training_loss(batch_of(case), case_info())
        terms["loss"].backward()
        grads = grad_summary(model)
    assert {key: float(value.detach()) for key, value in terms.items()} == version_1[name]["terms"]
    assert grads == pytest.approx(version_1[name]["grads"], rel=1e-6)


def _missing_rows(model, data, info):
    return sample_availability(
        model.config["missing_sampler"],
        len(model.modality_names),
        data["slots"].tolist(),
        (info.seed, info.step, info.micro),
        include_full=False,
        device=data["label"].device,
    )


@pytest.mark.parametrize("branch", ["both", "missing", "full", "v1"])
def test_psa_reaches_the_real_input_of_a_missing_modality(branch):
    """M = 2, BatchNorm in eval mode (no batch coupling): does the PSA gradient reach the real SAR input of
    the samples whose SAR the missing branch translated? Version 1 pairs the translation with the
    optical feature it came from, so it never does."""
    model = build(TWO, {"psa": {"branch": branch}}).eval()
    data = case_batch(TWO)
    sar = data["inputs"]["sar"].requires_grad_(True)
    terms = model.training_loss(data, INFO)
    terms["psa"].backward()
    lacking_sar = ~_missing_rows(model, data, INFO)[:, 1]
    assert lacking_sar.any()
    reach = sar.grad[lacking_sar].abs().sum()
    if branch == "v1":
        assert reach == 0
    else:
        assert reach > 0


def test_the_missing_branch_term_pairs_each_translation_with_its_own_modality():
    """With the real side detached (`stop_grad_keys`), the missing term sends no gradient into the real
    branch of the translated modality, and the full-branch term is absent, so the real SAR input of a
    SAR-missing sample gets none; without the detach it does."""
    data = case_batch(TWO)
    for detach, expect_reach in ((True, False), (False, True)):
        model = build(TWO, {"psa": {"branch": "missing", "stop_grad_keys": detach}}).eval()
        sar = data["inputs"]["sar"].detach().requires_grad_(True)
        data["inputs"]["sar"] = sar
        model.training_loss(data, INFO)["psa"].backward()
        lacking_sar = ~_missing_rows(model, data, INFO)[:, 1]
        assert bool(sar.grad[lacking_sar].abs().sum() > 0) is expect_reach


def test_uniform_ablation_draws_as_many_pixels_as_the_balanced_sampler():
    model = build(THREE)
    uniform = build(THREE, {"psa": {"sampling": "uniform"}})
    old_count = build(THREE, {"psa": {"sampling": "uniform", "uniform_count": "max_samples"}})
    small = case_batch(THREE, count=4, size=128)["label"][:, ::4, ::4]
    balanced, _ = model._psa_sample(small, INFO, None)
    matched, matched_labels = uniform._psa_sample(small, INFO, None)
    capped, _ = old_count._psa_sample(small, INFO, None)
    assert matched.numel() == balanced.numel() > 0
    assert not torch.equal(matched, balanced)
    assert torch.equal(matched_labels, small.reshape(-1)[matched]) and (matched_labels != 255).all()
    valid = int((small != 255).sum())
    assert capped.numel() == min(valid, model.config["psa"]["max_samples"]) > balanced.numel()


def test_shaspec_terms_are_weighted_in_and_switch_off():
    data = case_batch(THREE)
    on = build(THREE, {"translator": "copy", "loss": {**case_config({"psa": {}}, {})["loss"]}})
    weights = {"translation": 0.0, "shared_alignment": 0.1, "modality_classification": 0.02}
    model = build(THREE, {"translator": "copy", "loss": {**on.config["loss"], **weights}})
    # Switching the classifier on leaves every other initial weight as it was.
    assert model.modality_classifier is not None and on.modality_classifier is None
    shared = {k: v for k, v in model.state_dict().items() if not k.startswith("modality_classifier")}
    assert all(torch.equal(v, on.state_dict()[k]) for k, v in shared.items())
    terms = model.training_loss(data, INFO)
    assert "translation" not in terms and {"shared_l1", "modality_ce"} <= set(terms)
    expected = (
        terms["ce_full"] + terms["ce_missing"] + 0.1 * terms["shared_l1"] + 0.02 * terms["modality_ce"]
    ) + 0.1 * terms["psa"]
    torch.testing.assert_close(terms["loss"], expected)


def test_base_temperature_scales_psa_by_tau_over_base_tau():
    data = case_batch(THREE)
    plain = build(THREE).training_loss(data, INFO)["psa"]
    scaled = build(THREE, {"psa": {"base_temperature": 0.07}}).training_loss(data, INFO)["psa"]
    torch.testing.assert_close(scaled, plain * (0.1 / 0.07))


def test_hard_easy_anchors_sample_from_misclassified_pixels():
    model = build(THREE, {"psa": {"anchors": "hard-easy"}})
    terms = model.training_loss(case_batch(THREE), INFO)
    assert torch.isfinite(terms["psa"])
    small = case_batch(THREE)["label"][:, ::4, ::4]
    hard = torch.zeros_like(small, dtype=torch.bool)
    hard[:, :, :3] = True
    indices, labels = model._psa_sample(small, INFO, hard)
    flat_hard = hard.reshape(-1)[indices]
    for c in labels.unique().tolist():
        picked = flat_hard[labels == c]
        assert 0 < int(picked.sum()) < picked.numel()  # both kinds present for every class here


@pytest.mark.parametrize("method", ["stars", "shaspec"])
def test_joint_norm_trains_on_the_mixture_and_evaluates_like_per_call(method):
    spec = METHODS.get(method)
    from mmbench.config import load_defaults

    def make(norm):
        config = {**load_defaults(spec.defaults, method), **spec.load().tiny_config, "shared_norm": norm}
        torch.manual_seed(0)
        return build_method(spec, THREE, 6, config)

    data = case_batch(THREE)
    everything = data["available"]
    joint, per_call = make("joint"), make("per_call")
    same = zip(joint.state_dict().values(), per_call.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in same)
    # Training mode: the joint pass normalises with the statistics of all modalities together.
    a = joint.encode_available(data["inputs"], everything)
    b = per_call.encode_available(data["inputs"], everything)
    assert not torch.allclose(a["optical"]["shared"][0], b["optical"]["shared"][0])
    # Evaluation: same weights and running statistics give the same function whichever mode.
    per_call.load_state_dict(joint.state_dict())
    joint.eval(), per_call.eval()
    torch.testing.assert_close(joint(data["inputs"], everything), per_call(data["inputs"], everything))


@pytest.mark.parametrize("method", ["stars", "shaspec"])
def test_per_modality_norm_keeps_private_statistics(method):
    spec = METHODS.get(method)
    from mmbench.config import load_defaults

    config = {**load_defaults(spec.defaults, method), **spec.load().tiny_config, "shared_norm": "per_modality"}
    model = build_method(spec, THREE, 6, config)
    keys = [k for k in model.state_dict() if k.startswith("shared.") and "running_mean" in k]
    assert keys and all(any(f".norms.{m}." in k for m in THREE) for k in keys)
    data = case_batch(THREE)
    only_sar = torch.tensor([[False, False, True]] * 4)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running_mean" in k and k.startswith("shared.")}
    model.encode_available(data["inputs"], only_sar)
    after = model.state_dict()
    changed = {k for k, v in before.items() if not torch.equal(v, after[k])}
    assert changed and all(".norms.sar." in k for k in changed)


def test_projecting_the_sampled_pixels_equals_projecting_whole_maps():
    """`_project_at` gathers right after the head's BatchNorm; projecting whole maps and gathering after
    the head (version 1's order) gives the same unit vectors up to float rounding."""
    model = build(THREE)
    maps = {name: torch.randn(4, 8, 6, 6, generator=torch.Generator().manual_seed(i)) for i, name in enumerate(THREE)}
    picks = {name: torch.randperm(4 * 36, generator=torch.Generator().manual_seed(9))[:50] for name in THREE}
    fast = model._project_at({name: (maps[name], picks[name]) for name in THREE})
    whole = model._project(torch.cat(list(maps.values())))
    for i, name in enumerate(THREE):
        expected = whole[4 * i : 4 * (i + 1)].reshape(-1, whole.shape[-1])[picks[name]]
        torch.testing.assert_close(fast[name], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["stars", "shaspec"])
@pytest.mark.parametrize("specific_width", [64, 8])
def test_pretrained_reaches_stems_shared_and_fitting_specific_encoders(tmp_path, method, specific_width):
    """`pretrained` fills the per-modality stems (RGB copied, one channel = mean of RGB), the shared
    encoder's stages and the specific encoders when they are 64 wide; narrower ones start random."""
    from mmbench.config import load_defaults
    from mmbench.methods.blocks.backbones import resnet

    torch.manual_seed(3)
    source = resnet(18, width=64)
    state = {**source.state_dict(), "fc.weight": torch.randn(10, 512), "fc.bias": torch.randn(10)}
    path = tmp_path / "resnet18.pt"
    torch.save(state, path)
    spec = METHODS.get(method)
    config = {
        **load_defaults(spec.defaults, method),
        "width": 64,
        "specific_width": specific_width,
        "pretrained": str(path),
        "shared_norm": "per_modality",  # loading happens before the norms are made private
    }
    model = build_method(spec, TWO, 6, config)
    rgb = state["conv1.weight"]
    torch.testing.assert_close(model.stems["optical"].body[0].weight, rgb, rtol=0, atol=0)
    torch.testing.assert_close(model.stems["sar"].body[0].weight, rgb.mean(1, keepdim=True), rtol=0, atol=0)
    torch.testing.assert_close(model.shared.layer2[0].conv1.weight, state["layer2.0.conv1.weight"], rtol=0, atol=0)
    private = model.shared.layer2[0].bn1.norms["sar"].weight
    torch.testing.assert_close(private, state["layer2.0.bn1.weight"], rtol=0, atol=0)
    loaded = torch.equal(model.specific["sar"].layer3[0].conv2.weight, state["layer3.0.conv2.weight"])
    assert loaded is (specific_width == 64)
