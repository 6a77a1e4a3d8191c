"""Values are validated, not only types: every rule declared next to a default (`key: !check DEFAULT RULE`)
refuses what it should when the config is resolved, i.e. before anything runs, `--dry-run` included, with
exit code 2 and one line naming the key, the value and what is allowed."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from mmbench.cli.main import main
from mmbench.config import Check, load_plugin_defaults, resolve_run_config
from mmbench.errors import ConfigError


def dry_run(capsys, method: str, protocol: str, *settings: str) -> tuple[int, str, str]:
    argv = ["run", method, "--protocol", protocol, "--dry-run"]
    for setting in settings:
        argv += ["--set", setting]
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# (method, protocol, --set, what the one-line error must say). Every value here is one the harness, a model
# or a protocol refuses or mishandles at run time (or, before, was silently accepted): the rules refuse it first.
REFUSED = [
    # the brief's list
    ("stars", "last1", "method.train.lr=-1", "method.train.lr=-1.0 is out of range"),
    ("stars", "last1", "method.train.num_workers=-1", "method.train.num_workers=-1 is out of range"),
    ("stars", "last1", "method.train.betas=[1.5,0.999]", "method.train.betas=[1.5, 0.999] is out of range"),
    ("stars", "last1", "method.psa.temperature=0", "method.psa.temperature=0.0 is out of range"),
    ("stars", "last1", "method.missing_sampler=bogus", "method.missing_sampler='bogus' must be"),
    ("stars", "last1", "method.train.val_every=0", "method.train.val_every=0 is out of range"),
    ("stars", "last1", "method.train.grad_clip=-1", "method.train.grad_clip=-1.0 is out of range"),
    ("stars", "last1", "method.train.weight_decay=-1", "method.train.weight_decay=-1.0 is out of range"),
    ("stars", "last1", "method.train.val_tiles=-1", "method.train.val_tiles=-1 is out of range"),
    # the rest of the shared train recipe
    ("unimodal", "full", "method.train.iterations=0", "must be >= 1"),
    ("unimodal", "full", "method.train.batch_size=0", "method.train.batch_size=0 is out of range"),
    ("unimodal", "full", "method.train.crop_size=0", "method.train.crop_size=0 is out of range"),
    ("unimodal", "full", "method.train.accumulate=0", "method.train.accumulate=0 is out of range"),
    ("unimodal", "full", "method.train.log_every=0", "method.train.log_every=0 is out of range"),
    ("unimodal", "full", "method.train.amp=fp32", "must be one of off, bf16, fp16"),
    ("unimodal", "full", "method.train.warmup_start_factor=1.5", "must be in [0, 1]"),
    ("unimodal", "full", "method.train.warmup_start_factor=-0.1", "method.train.warmup_start_factor=-0.1"),
    ("unimodal", "full", "method.train.warmup_iterations=-1", "method.train.warmup_iterations=-1 is out of range"),
    ("unimodal", "full", "method.train.poly_power=0", "method.train.poly_power=0.0 is out of range"),
    ("unimodal", "full", "method.train.min_lr=-0.001", "method.train.min_lr=-0.001 is out of range"),
    ("unimodal", "full", "method.train.lr=0", "method.train.lr=0.0 is out of range"),
    ("unimodal", "full", "method.train.lr=.nan", "method.train.lr=nan must be"),
    ("unimodal", "full", "method.train.betas=[0.9]", "must be a list of 2 values, each in [0, 1)"),
    ("unimodal", "full", "method.train.betas=[0.9,1.0]", "method.train.betas=[0.9, 1.0] is out of range"),
    ("unimodal", "full", "method.train.val_tiles=0", "must be null or an int >= 1"),
    ("unimodal", "full", "method.train.val_tiles=2.5", "method.train.val_tiles=2.5 must be"),
    ("cgan", "full", "method.train.adversary.lr=0", "method.train.adversary.lr=0.0 is out of range"),
    ("gemmnet", "full", "method.train.adversary.betas=[0.5,1.5]", "method.train.adversary.betas=[0.5, 1.5]"),
    ("gemmnet", "full", "method.train.adversary.weight_decay=-1", "method.train.adversary.weight_decay=-1.0"),
    # the protocol settings every protocol records
    ("stars", "last1", "protocol.window=0", "protocol.window=0 is out of range"),
    ("stars", "last1", "protocol.window=1.5", "must be null or an int >= 1"),
    ("stars", "last1", "protocol.stride=0", "protocol.stride=0 is out of range"),
    ("stars", "full", "protocol.batch_size=0", "protocol.batch_size=0 is out of range"),
    ("stars", "full", "protocol.part=training", "must be one of train, val, test"),
    ("stars", "full", "protocol.classes_scored=[]", "must be null or a non-empty list, each a str"),
    ("stars", "full", "protocol.classes_scored=building", "protocol.classes_scored='building' must be"),
    ("stars", "full", "protocol.modalities=[]", "protocol.modalities=[] must be"),
    ("stars", "full", "protocol.seed=-1", "protocol.seed=-1 is out of range"),
    # each protocol's own settings (protocols/*.py checks them when the protocol is built)
    ("stars", "minority", "protocol.base=pixel-drop", "must be one of full, missing1, last1, subsets"),
    ("stars", "minority", "protocol.threshold=1", "must be in (0, 1)"),
    ("stars", "pixel-drop", "protocol.ratios=[]", "must be a non-empty list, each in (0, 1)"),
    ("stars", "pixel-drop", "protocol.ratios=[0.5,1]", "protocol.ratios=[0.5, 1.0] is out of range"),
    ("stars", "pixel-drop", "protocol.probabilities=[0]", "protocol.probabilities=[0.0] is out of range"),
    ("stars", "random-drop", "protocol.drop_probability=0", "protocol.drop_probability=0.0 is out of range"),
    ("stars", "random-drop", "protocol.repeats=0", "protocol.repeats=0 is out of range"),
    ("stars", "subsets", "protocol.probabilities=[0.2,1.0]", "protocol.probabilities=[0.2, 1.0] is out of range"),
    # the synthetic dataset (its generator refuses these) and the run section
    ("stars", "full", "dataset.tiles=4", "dataset.tiles=4 is out of range"),
    ("stars", "full", "dataset.size=32", "dataset.size=32 is out of range"),
    ("stars", "full", "dataset.codec=zip", "must be one of gzip, lzf, blosc-lz4, blosc-zstd, none"),
    ("stars", "full", "run.seed=4294967296", "run.seed=4294967296 is out of range"),
    # each method's own keys: what its model.py refuses (or a ResNet depth / width it cannot build)
    ("stars", "full", "method.backbone=101", "method.backbone=101 must be"),
    ("stars", "full", "method.specific_width=0", "method.specific_width=0 is out of range"),
    ("stars", "full", "method.translation_levels=first", "must be one of all, last"),
    ("stars", "full", "method.distance=l1", "must be one of cosine, mse"),
    ("stars", "full", "method.psa.sampling=random", "must be one of balanced, uniform"),
    ("stars", "full", "method.psa.mode=keep", "must be one of all, replace, drop"),
    ("stars", "full", "method.psa.backend=cuda", "must be one of auto, torch, triton"),
    ("stars", "full", "method.psa.max_views=0", "method.psa.max_views=0 is out of range"),
    ("stars", "full", "method.loss.translation=-1", "method.loss.translation=-1.0 is out of range"),
    ("stars", "full", "method.pretrained=3", "must be null or a str"),
    ("early-fusion", "full", "method.fill=zero", "must be one of mean, constant"),
    ("early-fusion", "full", "method.fill=learned", "must be one of mean, constant"),
    ("modality-dropout", "full", "method.fusion=sum", "must be one of mean, concat"),
    ("modality-dropout", "full", "method.sampler=random", "method.sampler='random' must be"),
    ("modality-dropout", "full", "method.p_drop=1", "must be in [0, 1)"),
    ("unimodal", "full", "method.selection=best", "must be one of loss, order"),
    ("unimodal", "full", "method.loss_momentum=1", "method.loss_momentum=1.0 is out of range"),
    ("unimodal", "full", "method.order=[1,2]", "method.order=[1, 2] must be"),
    ("shaspec", "full", "method.missing_feature=last", "must be one of first, mean"),
    ("shaspec", "full", "method.alpha=-0.5", "method.alpha=-0.5 is out of range"),
    ("mmformer", "full", "method.heads=0", "method.heads=0 is out of range"),
    ("mmformer", "full", "method.sampler=none", "method.sampler='none' must be"),
    ("perceiver", "full", "method.local=conv1d", "must be one of conv3d, conv2d, dual"),
    ("perceiver", "full", "method.latent_blocks=-1", "method.latent_blocks=-1 is out of range"),
    ("sgma", "full", "method.prototype_momentum=1", "method.prototype_momentum=1.0 is out of range"),
    ("sgma", "full", "method.robustness_momentum=-0.1", "method.robustness_momentum=-0.1 is out of range"),
    ("sgma", "full", "method.focus_probability=1.5", "must be in [0, 1]"),
    ("sgma", "full", "method.fusion_temperature=0", "method.fusion_temperature=0.0 is out of range"),
    ("sgma", "full", "method.focus_temperature=-1", "method.focus_temperature=-1.0 is out of range"),
    ("ae", "full", "method.reconstruction_weight=-1", "method.reconstruction_weight=-1.0 is out of range"),
    ("ae", "full", "method.generator_width=0", "method.generator_width=0 is out of range"),
    ("cgan", "full", "method.output=sigmoid", "must be one of linear, tanh"),
    ("cgan", "full", "method.l1_weight=-1", "method.l1_weight=-1.0 is out of range"),
    ("cgan", "full", "method.gan_weight=-0.05", "method.gan_weight=-0.05 is out of range"),
    ("gemmnet", "full", "method.gan_update=both", "must be one of alternating, joint"),
    ("gemmnet", "full", "method.discriminator_width=0", "method.discriminator_width=0 is out of range"),
    ("dis2", "full", "method.sampler=all", "must be one of subsets-per-sample, subsets-per-batch"),
    ("dis2", "full", "method.branches=both", "must be one of per-scenario, shared"),
    ("dis2", "full", "method.gf=0", "method.gf=0 is out of range"),
    ("dis2", "full", "method.kd_temperature=0", "method.kd_temperature=0.0 is out of range"),
    ("dis2", "full", "method.kd_warmup_iterations=-1", "method.kd_warmup_iterations=-1 is out of range"),
    ("dis2", "full", "method.orthogonality_weight=-1", "method.orthogonality_weight=-1.0 is out of range"),
]


@pytest.mark.parametrize(("method", "protocol", "setting", "fragment"), REFUSED, ids=[row[2] for row in REFUSED])
def test_out_of_range_values_are_refused_before_anything_runs(capsys, method, protocol, setting, fragment):
    code, out, err = dry_run(capsys, method, protocol, setting)
    key = setting.split("=", 1)[0]
    assert code == 2, out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"mmbench run: error: {key}=")
    assert fragment in lines[0]
    assert f"(set by --set {setting})" in lines[0]
    assert " must be " in lines[0]


def test_a_flag_value_is_checked_too(capsys):
    code = main(["run", "stars", "--protocol", "last1", "--seed", "-3", "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (
        "mmbench run: error: run.seed=-3 is out of range (set by command-line flag): must be in [0, 4294967295]"
    )


def test_a_config_file_value_is_checked_and_named(capsys, tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("method:\n  train:\n    amp: fp8\n")
    code = main(["run", "stars", "--protocol", "last1", "--config", str(path), "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (f"mmbench run: error: method.train.amp='fp8' must be one of off, bf16, fp16 (set by file {path})")


ACCEPTED = [
    ("stars", "last1", ["method.train.warmup_start_factor=0", "method.train.grad_clip=0", "method.train.min_lr=0"]),
    ("stars", "last1", ["method.train.warmup_start_factor=1", "method.train.weight_decay=0", "method.train.amp=fp16"]),
    ("stars", "last1", ["method.train.val_tiles=1", "method.train.num_workers=0", "method.train.betas=[0, 0.5]"]),
    ("stars", "last1", ["method.train.val_tiles=null", "method.pretrained=weights/r50.pt", "method.backbone=50"]),
    ("stars", "last1", ["protocol.window=512", "protocol.stride=341", "protocol.part=val", "run.seed=4294967295"]),
    ("stars", "full", ["protocol.classes_scored=[building, car]", "protocol.modalities=[optical, dsm]"]),
    ("modality-dropout", "pixel-drop", ["method.p_drop=0", "protocol.ratios=[0.5]", "protocol.probabilities=[]"]),
    ("sgma", "minority", ["method.focus_probability=1", "method.prototype_momentum=0", "protocol.base=subsets"]),
    ("perceiver", "random-drop", ["method.latent_blocks=0", "method.sampler=bernoulli", "protocol.repeats=1"]),
    ("cgan", "full", ["method.train.adversary.weight_decay=0", "method.l1_weight=0", "dataset.tiles=5"]),
    ("dis2", "full", ["method.sampler=subsets-per-batch", "method.kd_warmup_iterations=0", "dataset.codec=none"]),
]


@pytest.mark.parametrize(("method", "protocol", "settings"), ACCEPTED)
def test_values_at_the_edges_of_the_rules_are_accepted(capsys, method, protocol, settings):
    code, _, err = dry_run(capsys, method, protocol, *settings)
    assert code == 0, err


# -- every declared rule refuses what it says it refuses -------------------------------------------------


def _violations(check: Check, default: Any) -> list[Any]:
    """Values that `check` must refuse, of the default's type (the type check is not what is tested)."""
    as_list = isinstance(default, list) or check.nonempty or check.length is not None
    template = default[0] if isinstance(default, list) and default else None
    numbers: list[Any] = []
    if check.low is not None:
        numbers.append(check.low if check.low_open else check.low - 1)
    if check.high is not None:
        numbers.append(check.high if check.high_open else check.high + 1)
    if isinstance(template if as_list else default, float):
        numbers = [float(number) for number in numbers]
    elements: list[Any] = numbers
    if check.choices is not None:
        elements.append(999 if all(isinstance(choice, int) for choice in check.choices) else "not-a-choice")
    if check.kind == "int":
        elements.append(2.5)
    if check.kind == "str":
        elements.append(5)
    values = [[element, *default[1:]] if isinstance(default, list) and default else [element] for element in elements]
    if not as_list:
        values = elements
    if check.nonempty:
        values.append([])
    if check.length is not None:
        values.append(list(default) * 2)
    return values


def _declared_rules() -> list[tuple[str, str, str, str, Any]]:
    """(section, plugin, dotted key, origin, violating value) for every rule of every built-in plugin; a rule
    a base file declares once is tested once."""
    from mmbench.registry import DATASETS, METHODS, PROTOCOLS

    cases, seen = [], set()
    sections = [("run", None)] + [
        (section, name)
        for section, registry in (("method", METHODS), ("protocol", PROTOCOLS), ("dataset", DATASETS))
        for name in registry.names()
    ]
    for section, name in sections:
        if section == "run":
            defaults = load_plugin_defaults("mmbench.config:run.yaml", "run")
        else:
            registry = {"method": METHODS, "protocol": PROTOCOLS, "dataset": DATASETS}[section]
            defaults = load_plugin_defaults(registry.get(name).defaults, name)
        for path, check in defaults.checks.items():
            if (check.origin, path) in seen:
                continue
            seen.add((check.origin, path))
            default = defaults.values
            for part in path.split("."):
                default = default[part]
            for value in _violations(check, default):
                cases.append((section, name, path, check.origin, value))
    return cases


RULES = _declared_rules()


def test_every_builtin_plugin_declares_rules():
    from mmbench.registry import DATASETS, METHODS, PROTOCOLS

    assert len({(origin, path) for _, _, path, origin, _ in RULES}) > 150
    for registry in (METHODS, PROTOCOLS, DATASETS):
        for name in registry.names():
            defaults = load_plugin_defaults(registry.get(name).defaults, name)
            assert defaults.checks, name


@pytest.mark.parametrize(
    ("section", "name", "path", "origin", "value"),
    RULES,
    ids=[f"{origin}:{path}={json.dumps(value)}" for _, _, path, origin, value in RULES],
)
def test_every_declared_rule_refuses_a_value_outside_it(section, name, path, origin, value):
    from mmbench.registry import DATASETS, METHODS, PROTOCOLS

    specs = {"method": METHODS.get("stars"), "protocol": PROTOCOLS.get("full"), "dataset": DATASETS.get("synthetic")}
    if section != "run":
        specs[section] = {"method": METHODS, "protocol": PROTOCOLS, "dataset": DATASETS}[section].get(name)
    setting = f"{section}.{path}={json.dumps(value)}"
    with pytest.raises(ConfigError) as info:
        resolve_run_config(specs, overrides=[setting])
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{section}.{path}=")
    assert f"{section}.{path}={value!r} is out of range (set by --set " in message or (
        f"{section}.{path}={value!r} must be " in message
    )


# -- the rule grammar ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "good", "bad", "described"),
    [
        ("> 0", [1e-9, 3], [0, -1, math.nan, True, "1"], "> 0"),
        (">= 1 <= 3", [1, 3], [0, 4, 3.5], ">= 1 and <= 3"),
        ("in (0, 1]", [1, 0.5], [0, 1.01], "in (0, 1]"),
        ("in [1, inf)", [1, 1e12], [0.5], "in [1, inf)"),
        ("int >= 1", [1, None], [1.0, 0, "2"], "an int >= 1"),
        ("in {off, 18, 'a b'}", ["off", 18, "a b"], [False, "18", "on", 18.5], "one of off, 18, a b"),
        ("in {1, 2}", [1, 2], [True], "one of 1, 2"),
        ("nonempty str", [["a"], None], [[], "a", [1]], "a non-empty list, each a str"),
        ("length 2 in [0, 1)", [[0, 0.5]], [[0.5], [0.5, 1.0], 0.5], "a list of 2 values, each in [0, 1)"),
    ],
)
def test_rule_grammar(rule, good, bad, described):
    check = Check.parse(rule)
    for value in good:
        assert check.violation(value) is None, value
    for value in bad:
        assert check.violation(value) is not None, value
    assert check.describe() == described
    assert check.describe(nullable=True) == f"null or {described}"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("", "needs a rule"),
        ("> zero", "cannot read"),
        ("in [1, 0]", "is empty"),
        ("in [0 1]", "an interval looks like"),
        ("in {}", "choices need at least one value"),
        ("in {a, b", "'{' is not closed"),
        ("> 0 > 1", "a lower bound is given twice"),
        ("int float", "a type is given twice"),
        ("str > 0", "a str has no numeric bounds"),
        ("odd", "unknown term 'odd'"),
        ("length", "'length' needs a whole number"),
    ],
)
def test_malformed_rules_are_refused(rule, message):
    with pytest.raises(ConfigError, match=message):
        Check.parse(rule)
