"""Every built-in method (the registry's entries from the mmbench distribution, as timm's tests take its model
registry): every availability pattern, no NaN leaks, learning, determinism, checkpoint round trip, on 2 and 3
modalities with small widths, and every protocol. Adding a method adds it here without editing this file.

What differs between methods is what they declare: the narrow widths each one is built with here are its
implementation's `tiny_config` (overrides of its defaults; none: its defaults), the split interface its
`has_split_interface`, the adversarial update its `adversary_parameters()`, the modalities it accepts its spec.
Tests of one method's own behaviour follow, named after it.
"""

from __future__ import annotations

import io
import itertools

import pytest
import torch
from builtin_plugins import REPO_ROOT, builtin_methods, paper_config_method, paper_configs

from mmbench.config import load_defaults
from mmbench.method import TrainStep, build_method
from mmbench.registry import METHODS

METHOD_NAMES = builtin_methods()
MODALITY_SETS = {2: {"optical": 3, "dsm": 1}, 3: {"optical": 3, "dsm": 1, "sar": 1}}
CLASSES, SIZE = 4, 64


def tiny_config(name: str) -> dict:
    """The method's own narrow-width overrides (`tiny_config` on its implementation), or none."""
    return dict(getattr(METHODS.get(name).load(), "tiny_config", {}))


def build(name: str, modalities: dict[str, int], seed: int = 0, classes: int = CLASSES, **overrides):
    spec = METHODS.get(name)
    config = {**load_defaults(spec.defaults, name), **tiny_config(name), **overrides}
    torch.manual_seed(seed)
    return build_method(spec, modalities, classes, config)


def build_every(name: str, modalities: dict[str, int], **options):
    """`build` for the tests every method runs: skipped where the method's spec declares it cannot run on
    `modalities` (too few, one it requires is absent, or one it does not accept)."""
    spec = METHODS.get(name)
    accepted = set(spec.modalities) if spec.modalities else set(modalities)
    needed = set(spec.required_modalities)
    if len(modalities) < spec.min_modalities or not needed <= set(modalities) <= accepted:
        pytest.skip(f"{name} does not run on {sorted(modalities)} (its spec: {spec.describe_modalities()})")
    return build(name, modalities, **options)


def batch_for(modalities: dict[str, int], size: int = SIZE, batch: int = 4, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    inputs = {name: torch.randn(batch, c, size, size, generator=generator) for name, c in modalities.items()}
    label = torch.randint(0, CLASSES, (batch, size, size), generator=generator)
    label[:, :4] = 255
    return {"inputs": inputs, "label": label, "available": torch.ones(batch, len(modalities), dtype=torch.bool)}


def patterns(count: int) -> list[tuple[bool, ...]]:
    return [p for p in itertools.product([True, False], repeat=count) if any(p)]


def test_the_builtin_methods_are_found():
    assert "stars" in METHOD_NAMES and len(METHOD_NAMES) == len(set(METHOD_NAMES)) > 1


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_registered_with_defaults(name):
    spec = METHODS.get(name)
    defaults = load_defaults(spec.defaults, name)
    assert "train" in defaults and spec.summary
    assert set(tiny_config(name)) <= set(defaults), "tiny_config may only override keys of the defaults"


@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("name", METHOD_NAMES)
def test_every_pattern_forward_backward_and_no_leak(name, count):
    modalities = MODALITY_SETS[count]
    model = build_every(name, modalities)
    model.train()
    every = patterns(count)
    batch = batch_for(modalities, batch=len(every))
    available = torch.tensor(every)
    logits = model(batch["inputs"], available)  # one batch mixing every pattern, one per sample
    assert logits.shape == (len(every), CLASSES, SIZE, SIZE) and bool(torch.isfinite(logits).all())
    logits.mean().backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())

    model.eval()
    with torch.no_grad():
        clean = model(batch["inputs"], available)
        poisoned = {
            key: torch.where(available[:, index].view(-1, 1, 1, 1), value, float("nan"))
            for index, (key, value) in enumerate(batch["inputs"].items())
        }
        leaked = model(poisoned, available)
    assert bool(torch.isfinite(leaked).all()), "NaN in a missing modality reached the output"
    torch.testing.assert_close(leaked, clean, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_split_interface_matches_forward(name):
    model = build_every(name, MODALITY_SETS[3]).eval()
    if not model.has_split_interface:
        pytest.skip(f"{name} has no split interface (its modalities meet before any per-modality encoder)")
    batch = batch_for(MODALITY_SETS[3])
    available = torch.tensor([[True, False, True], [False, True, False], [True, True, True], [False, False, True]])
    with torch.no_grad():
        features = {n: model.encode(n, batch["inputs"][n]) for n in model.modality_names}
        torch.testing.assert_close(
            model.decode(features, available)[..., :SIZE, :SIZE], model(batch["inputs"], available)
        )


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_training_loss_decreases_and_is_deterministic(name):
    modalities = MODALITY_SETS[2]
    batch = batch_for(modalities, size=32)

    def train(seed: int) -> list[float]:
        model = build_every(name, modalities, seed=seed)
        model.train()
        adversary = model.adversary_parameters()  # discriminators: their own optimizer, stepped first (as the engine)
        held_out = {id(parameter) for parameter in adversary}
        optimizer = torch.optim.Adam([p for p in model.parameters() if id(p) not in held_out], lr=3e-3)
        adversary_optimizer = torch.optim.Adam(adversary, lr=3e-3) if adversary else None
        info = TrainStep(step=0, micro=0, seed=seed, ignore_index=255, num_classes=CLASSES)
        losses = []
        for _ in range(12):
            if adversary_optimizer is not None:
                adversary_optimizer.zero_grad()
                model.adversary_loss(batch, info)["loss"].backward()
                adversary_optimizer.step()
            terms = model.training_loss(batch, info)
            optimizer.zero_grad()
            terms["loss"].backward()
            optimizer.step()
            losses.append(float(terms["loss"].detach()))
        return losses

    first = train(0)
    assert first[-1] < first[0], first  # same availability every step (step=0), so the loss must fall
    assert train(0) == first  # same seed, same numbers


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_checkpoint_round_trip(name):
    modalities = MODALITY_SETS[2]
    model = build_every(name, modalities)
    batch = batch_for(modalities, size=32)
    model.train()
    model.training_loss(batch, TrainStep(step=0, micro=0, seed=0, ignore_index=255, num_classes=CLASSES))
    model.eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    restored = build_every(name, modalities, seed=123)
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    restored.eval()
    available = torch.tensor([[True, False], [False, True], [True, True], [True, False]])
    with torch.no_grad():
        assert torch.equal(model(batch["inputs"], available), restored(batch["inputs"], available))


def test_unimodal_uses_the_best_available_model():
    model = build("unimodal", MODALITY_SETS[3], selection="order", order=["dsm", "sar", "optical"]).eval()
    batch = batch_for(MODALITY_SETS[3])
    with torch.no_grad():
        own = {n: model.models[n](batch["inputs"][n]) for n in model.modality_names}
        available = torch.tensor([[True, True, True], [True, False, True], [True, False, False], [False, False, True]])
        logits = model(batch["inputs"], available)
    for row, expected in enumerate(["dsm", "sar", "optical", "sar"]):
        assert torch.equal(logits[row], own[expected][row])


def test_unimodal_ranks_by_running_training_loss():
    model = build("unimodal", MODALITY_SETS[2])
    assert model.ranking() == [0, 1]  # untrained: +inf everywhere, dataset order
    model.running_loss.copy_(torch.tensor([0.9, 0.4]))
    assert model.ranking() == [1, 0]


@pytest.mark.parametrize("fill", ["mean", "constant"])
def test_early_fusion_fills(fill):
    model = build("early-fusion", MODALITY_SETS[2], fill=fill, fill_value=2.5)
    assert not model.fill_tokens["dsm"].requires_grad  # complete-data training: nothing could learn a fill
    x = torch.full((2, 1, 8, 8), float("nan"))
    filled = model._filled("dsm", x, torch.tensor([False, False]))
    assert bool(torch.isfinite(filled).all()) and float(filled.detach().mean()) == (2.5 if fill == "constant" else 0.0)


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("early-fusion", "fill", "noise"),
        ("modality-dropout", "fusion", "max"),
        ("modality-dropout", "sampler", "sometimes"),
        ("shaspec", "missing_feature", "last"),
        ("unimodal", "order", ["optical"]),
    ],
)
def test_bad_settings_are_config_errors(name, key, value):
    from mmbench.errors import ConfigError

    overrides = {key: value, **({"selection": "order"} if key == "order" else {})}
    with pytest.raises(ConfigError, match=f"method.{key}"):
        build(name, MODALITY_SETS[2], **overrides)


@pytest.mark.parametrize("local", ["conv2d", "dual"])
def test_perceiver_local_module_ablations(local):
    model = build("perceiver", MODALITY_SETS[3], local=local).eval()
    batch = batch_for(MODALITY_SETS[3], size=32)
    available = torch.tensor([[True, False, True], [False, True, False], [True, True, True], [False, False, True]])
    poisoned = {
        key: torch.where(available[:, i].view(-1, 1, 1, 1), value, float("nan"))
        for i, (key, value) in enumerate(batch["inputs"].items())
    }
    with torch.no_grad():
        torch.testing.assert_close(model(poisoned, available), model(batch["inputs"], available))


def test_sgma_prototypes_weights_and_fragile_sampling():
    model = build("sgma", MODALITY_SETS[2], focus_probability=1.0)
    batch = batch_for(MODALITY_SETS[2], size=32, batch=8)
    info = TrainStep(step=0, micro=0, seed=0, ignore_index=255, num_classes=CLASSES)
    assert not bool(model.prototype_seen.any())
    model.train()
    model.training_loss(batch, info)
    assert bool(model.prototype_seen[0].all())  # at stride 4 every class is in the batch, for both modalities
    assert bool((model.mean_robustness != 0).all())
    model.mean_robustness.copy_(torch.tensor([0.9, 0.1]))  # dsm is the fragile one
    available = model.training_availability(batch, info)
    assert bool((available.sum(1) == 1).all()) and int(available[:, 1].sum()) >= 6  # almost always dsm alone
    model.eval()
    features = {n: model.encode(n, batch["inputs"][n]) for n in model.modality_names}
    mixed = torch.tensor([[True, True], [True, False], [False, True], [True, True]] * 2)
    pyramids = {i: features[n] for i, n in enumerate(model.modality_names)}
    weights = model.fusion_weights(pyramids, mixed, 0)
    torch.testing.assert_close(weights.sum(1), torch.ones(8))
    assert bool((weights[~mixed] == 0).all())


def test_ae_imputes_only_missing_modalities_and_learns_to_reconstruct():
    model = build("ae", MODALITY_SETS[2], reconstruction_weight=10.0)
    batch = batch_for(MODALITY_SETS[2], size=32, batch=4)
    batch["inputs"]["dsm"] = batch["inputs"]["optical"][:, :1] * 0.5  # dsm is predictable from optical
    available = torch.tensor([[True, False], [True, True], [False, True], [True, False]])
    completed = model.complete(batch["inputs"], available)
    assert torch.equal(completed["dsm"][1], batch["inputs"]["dsm"][1])  # real where available
    assert not torch.equal(completed["dsm"][0], batch["inputs"]["dsm"][0])  # generated where missing
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    info = TrainStep(step=0, micro=0, seed=1, ignore_index=255, num_classes=CLASSES)
    errors = []
    for _ in range(15):
        terms = model.training_loss(batch, info)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        errors.append(float(terms["l1"]))
    assert errors[-1] < 0.8 * errors[0] and errors == sorted(errors, reverse=True), errors


def test_ae_detached_imputation_still_learns_reconstruction_but_not_segmentation():
    model = build("ae", MODALITY_SETS[2], detach_imputation=True)
    inputs = batch_for(MODALITY_SETS[2], size=32)["inputs"]
    available = torch.tensor([[True, False]] * 4)
    completed = model.complete(inputs, available)
    first_weight = next(model.generators["dsm"].parameters())
    (reconstruction,) = torch.autograd.grad(model._reconstruction(completed, inputs, available), [first_weight])
    assert float(reconstruction.abs().sum()) > 0
    segmentation = model._segment(completed).sum()
    assert torch.autograd.grad(segmentation, [first_weight], allow_unused=True) == (None,)


def test_cgan_discriminator_sees_real_and_generated_pairs_only_where_withheld():
    model = build("cgan", MODALITY_SETS[2])
    model.train()
    batch = batch_for(MODALITY_SETS[2], size=32)
    model.training_availability = lambda batch, info: batch["available"]  # a fixed withheld pattern
    batch["available"] = torch.tensor([[True, False], [True, True], [True, True], [True, False]])
    info = TrainStep(step=0, micro=0, seed=0, ignore_index=255, num_classes=CLASSES)
    completed = model.complete(batch["inputs"], batch["available"])
    pairs = model._pairs(batch["inputs"], batch["available"], completed)
    assert list(pairs) == ["dsm"]
    rows, condition, real, generated = pairs["dsm"]
    assert rows.tolist() == [True, False, False, True] and condition.shape[0] == real.shape[0] == 2
    assert torch.equal(real, batch["inputs"]["dsm"][rows])
    assert condition.shape[1] == model.condition_channels("dsm") == 4  # optical (3) + its flag
    adversary = model.adversary_loss(batch, info)
    generator_params = list(model.generators["dsm"].parameters())
    # the discriminator's loss never reaches the generators (generated under no_grad) ...
    assert all(g is None for g in torch.autograd.grad(adversary["loss"], generator_params, allow_unused=True))
    # ... and the generator's objective reaches both the generators and, through its input, the discriminator
    terms = model.training_loss(batch, info)
    assert float(terms["g_adv"]) > 0 and float(terms["l1"]) > 0
    grads = torch.autograd.grad(terms["loss"], generator_params[:1])
    assert float(grads[0].abs().sum()) > 0
    assert model.adversary_parameters() == list(model.discriminators.parameters())


def test_cgan_learns_to_fool_a_fixed_critic_and_to_reconstruct():
    """The generator objective falls when only the generators train: adversarial + 100 x L1 are wired up."""
    model = build("cgan", MODALITY_SETS[2], gan_weight=1.0)
    model.train()
    model.training_availability = lambda batch, info: batch["available"]  # a fixed withheld pattern
    batch = batch_for(MODALITY_SETS[2], size=32)
    batch["inputs"]["dsm"] = batch["inputs"]["optical"][:, :1] * 0.5
    batch["available"] = torch.tensor([[True, False]] * 4)
    info = TrainStep(step=0, micro=0, seed=0, ignore_index=255, num_classes=CLASSES)
    optimizer = torch.optim.Adam(model.generators.parameters(), lr=3e-3)
    first = last = None
    for _ in range(10):
        terms = model.training_loss(batch, info)
        objective = terms["g_adv"] + 100 * terms["l1"]
        first = float(objective) if first is None else first
        last = float(objective)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
    assert last < 0.8 * first


def test_shaspec_needs_two_modalities():
    from mmbench.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 2 modalities"):
        build("shaspec", {"optical": 3})


PAPER_CONFIGS = paper_configs()


def test_paper_scale_configs_are_found():
    assert "methods/stars/paper.yaml" in PAPER_CONFIGS and paper_config_method("methods/stars/paper.yaml") == "stars"
    assert paper_config_method("methods/imputation/paper_cgan.yaml") == "cgan"


@pytest.mark.parametrize("path", PAPER_CONFIGS)
def test_paper_scale_configs_resolve(capsys, path):
    """Every documented paper-scale config passes the strict config layer (keys and types) in a dry run."""
    from mmbench.cli.main import main

    name = paper_config_method(path)
    code = main(["run", name, "--protocol", "last1", "--config", str(REPO_ROOT / path), "--dry-run"])
    output = capsys.readouterr()
    assert code == 0, output.err
    assert "crop_size: 512" in output.out


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("methods") / "s.h5", SyntheticConfig(tiles=6, size=64))


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_every_protocol_evaluates_without_reading_missing_inputs(tiny_store, name):
    """All seven built-in protocols, with NaN as the engine's fill: any read of a missing input would raise."""
    import math

    from mmbench.evaluation.engine import evaluate
    from mmbench.registry import PROTOCOLS

    model = build_every(name, {"optical": 3, "dsm": 1, "sar": 1}, classes=6).eval()  # the synthetic store's layout
    for protocol_name in PROTOCOLS.names():
        spec = PROTOCOLS.get(protocol_name)
        protocol = spec.load()(load_defaults(spec.defaults, protocol_name))
        result = evaluate(model, tiny_store, protocol, missing_fill=math.nan, show_progress=False, limit_tiles=2)
        assert result.scenarios, protocol_name
        for scenario in result.scenarios:
            assert sum(map(sum, scenario["confusion_matrix"])) > 0, (protocol_name, scenario["name"])


@pytest.mark.parametrize("update", ["alternating", "joint"])
def test_gemmnet_gan_update_modes(update):
    model = build("gemmnet", MODALITY_SETS[2], gan_update=update)
    model.train()
    model.training_availability = lambda batch, info: batch["available"]  # a fixed withheld pattern
    batch = batch_for(MODALITY_SETS[2], size=32)
    batch["available"] = torch.tensor([[True, False], [False, True], [True, True], [True, False]])
    info = TrainStep(step=0, micro=0, seed=0, ignore_index=255, num_classes=CLASSES)
    terms = model.training_loss(batch, info)
    assert float(terms["g_adv"]) > 0 and float(terms["l1"]) > 0
    discriminator = list(model.discriminators.parameters())
    if update == "alternating":
        assert model.adversary_parameters() == discriminator and "d_loss" not in terms
        assert float(model.adversary_loss(batch, info)["loss"].detach()) > 0
    else:  # the authors' single optimizer: D's loss is part of the one objective, D is an ordinary parameter
        assert model.adversary_parameters() == [] and float(terms["d_loss"]) > 0
        grads = torch.autograd.grad(terms["loss"], discriminator[:1])
        assert float(grads[0].abs().sum()) > 0


def test_gemmnet_segmentation_trains_the_generators_and_complete_batches_have_no_gan_loss():
    model = build("gemmnet", MODALITY_SETS[3])
    model.train()
    model.training_availability = lambda batch, info: batch["available"]
    batch = batch_for(MODALITY_SETS[3], size=32)
    info = TrainStep(step=0, micro=0, seed=0, ignore_index=255, num_classes=CLASSES)
    complete = model.training_loss(batch, info)
    assert float(complete["g_adv"]) == 0 and float(complete["l1"]) == 0
    batch["available"] = torch.tensor([[True, False, True]] * 4)
    completed = model.complete(batch["inputs"], batch["available"])
    features = model._encode_completed(completed)
    segmentation = model.segmentation_terms(features, torch.ones_like(batch["available"]), batch["label"], 255)
    weight = next(model.generators["dsm"].parameters())
    (grad,) = torch.autograd.grad(segmentation["loss"], [weight])  # the imputed tensor is not detached
    assert float(grad.abs().sum()) > 0
    assert model.generators["dsm"].bottleneck is not None  # EnhancedGenerator: transformer at 1/16
    from mmbench.errors import ConfigError

    with pytest.raises(ConfigError, match="method.gan_update='both': use alternating or joint"):
        build("gemmnet", MODALITY_SETS[2], gan_update="both")
