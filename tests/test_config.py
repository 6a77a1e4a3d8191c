"""Config layering (defaults < file < --set < flags) and the rejections that stop silent
misconfiguration: unknown keys, wrong types, malformed YAML and overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmbench.config import ConfigBuilder, parse_override, read_yaml_file, resolve_run_config
from mmbench.errors import ConfigError
from mmbench.plugins import MethodSpec, ProtocolSpec

METHOD = MethodSpec(
    name="m",
    summary="s",
    version="1",
    target="a:b",
    defaults={
        "lr": 0.01,
        "layers": 2,
        "name": "tiny",
        "use_bias": True,
        "dims": [64, 128],
        "schedule": {"warmup": 10, "kind": "poly"},
        "class_weights": {},
        "pretrained": None,
    },
)
PROTOCOL = ProtocolSpec(name="p", summary="s", version="1", target="a:b", defaults={"window": 64})


def resolve(config_file=None, overrides=(), flags=None, specs=None):
    return resolve_run_config(
        specs or {"method": METHOD, "protocol": PROTOCOL, "dataset": None},
        config_file=config_file,
        overrides=overrides,
        flags=flags,
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_cover_every_section_and_record_their_source():
    config = resolve()
    assert config.data["run"] == {
        "seed": 0,
        "threads": 0,
        "deterministic": False,
        "device": "auto",
        "out": "runs",
        "label": "",
        "compile": False,
    }
    assert config.data["method"]["schedule"] == {"warmup": 10, "kind": "poly"}
    assert config.data["dataset"] == {}
    assert config.sources["method.schedule.warmup"] == "defaults"


def test_layers_apply_in_order_defaults_file_set_flags(tmp_path):
    path = write(tmp_path, "method:\n  lr: 0.5\n  layers: 4\n  schedule: {kind: cosine}\nrun:\n  seed: 3\n")
    config = resolve(path, overrides=["method.layers=8", "run.device=cpu"], flags={"run.out": "elsewhere"})
    assert config.get("method.lr") == 0.5
    assert config.get("method.layers") == 8
    assert config.get("method.schedule") == {"warmup": 10, "kind": "cosine"}
    assert config.get("run.seed") == 3
    assert config.get("run.out") == "elsewhere"
    assert config.sources["method.lr"] == f"file {path}"
    assert config.sources["method.layers"] == "--set method.layers=8"
    assert config.sources["run.out"] == "command-line flag"
    assert config.sources["method.schedule.warmup"] == "defaults"


def test_unknown_key_names_full_path_suggestion_and_allowed_keys(tmp_path):
    with pytest.raises(ConfigError) as info:
        resolve(write(tmp_path, "method:\n  schedule:\n    warmpu: 5\n"))
    message = str(info.value)
    assert "unknown config key 'method.schedule.warmpu'" in message
    assert "did you mean method.schedule.warmup?" in message
    assert "allowed here: warmup, kind" in message
    with pytest.raises(ConfigError, match=r"unknown config key 'method.lrr' in --set method.lrr=1.*did you mean"):
        resolve(overrides=["method.lrr=1"])


def test_a_plugin_without_defaults_takes_no_keys():
    with pytest.raises(ConfigError, match=r"unknown config key 'dataset.root'.*allowed here: no keys"):
        resolve(overrides=["dataset.root=/data"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("method.layers=2.5", r"'method.layers' .* expects a int, got 2.5 \(float\)"),
        ("method.layers=true", r"expects a int, got True \(bool\)"),
        ("method.lr=fast", r"'method.lr' .* expects a float, got 'fast' \(str\)"),
        ("method.use_bias=1", r"expects a bool, got 1 \(int\)"),
        ("method.name=3", r"expects a str, got 3 \(int\)"),
        ("method.name=null", r"expects a str, got None \(null\)"),
        ("method.dims=[64, x]", r"'method.dims\[1\]' .* expects a int"),
        ("method.dims=64", r"expects a list"),
        ("method.schedule=3", r"'method.schedule' .* expects a mapping of warmup, kind"),
    ],
)
def test_wrong_types_are_rejected(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve(overrides=[override])


def test_value_coercions_that_are_safe():
    config = resolve(overrides=["method.lr=1", "method.dims=[1, 2, 3]", "method.pretrained=/w.pt"])
    assert config.get("method.lr") == 1.0 and isinstance(config.get("method.lr"), float)
    assert config.get("method.dims") == [1, 2, 3]
    assert config.get("method.pretrained") == "/w.pt"  # a null default accepts any type


def test_types_are_checked_against_the_defaults_not_the_current_value(tmp_path):
    path = write(tmp_path, "method:\n  pretrained: /weights.pt\n")
    assert resolve(path, overrides=["method.pretrained=null"]).get("method.pretrained") is None
    assert resolve(path, overrides=["method.pretrained=3"]).get("method.pretrained") == 3


def test_only_true_and_false_are_booleans():
    assert parse_override("method.amp=off") == ("method.amp", "off")
    assert parse_override("method.flag=yes") == ("method.flag", "yes")
    assert parse_override("method.flag=True") == ("method.flag", True)
    assert parse_override("method.flag=false") == ("method.flag", False)


def test_scientific_notation_is_a_float_not_a_string():
    # PyYAML reads '1e-3' as a string; the config loader must not.
    assert parse_override("method.lr=1e-3") == ("method.lr", 0.001)
    assert resolve(overrides=["method.lr=3E-4"]).get("method.lr") == pytest.approx(3e-4)


def test_open_mappings_accept_free_keys_across_layers(tmp_path):
    path = write(tmp_path, "method:\n  class_weights: {car: 2.0}\n")
    config = resolve(path, overrides=["method.class_weights.clutter=0.5"])
    assert config.get("method.class_weights") == {"car": 2.0, "clutter": 0.5}


@pytest.mark.parametrize("text", ["method.lr", "=3", "method..lr=3", ""])
def test_malformed_overrides_are_rejected(text):
    with pytest.raises(ConfigError, match="override"):
        parse_override(text)


def test_override_with_unknown_section():
    with pytest.raises(ConfigError, match=r"unknown section 'model'; allowed sections: run, method, protocol, dataset"):
        resolve(overrides=["model.lr=1"])


def test_file_problems_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_yaml_file(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"config.yaml line 3, column 1: invalid YAML \(expected .,. or .\]."):
        read_yaml_file(write(tmp_path, "method:\n  lr: [1, 2\n"))
    with pytest.raises(ConfigError, match="must hold a mapping of sections"):
        read_yaml_file(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match=r"duplicate key 'lr' .* line 3"):
        read_yaml_file(write(tmp_path, "method:\n  lr: 1.0\n  lr: 2.0\n"))
    with pytest.raises(ConfigError, match="unknown section 'trainer'"):
        resolve(write(tmp_path, "trainer:\n  lr: 1\n"))
    with pytest.raises(ConfigError, match="section 'method' must be a mapping"):
        resolve(write(tmp_path, "method: 3\n"))
    assert resolve(write(tmp_path, "")).get("method.lr") == 0.01


def test_flag_and_set_for_one_key_must_agree():
    assert resolve(overrides=["run.seed=4"], flags={"run.seed": 4}).get("run.seed") == 4
    with pytest.raises(ConfigError, match=r"run.seed is given twice with different values \(5 by its flag, 4 by"):
        resolve(overrides=["run.seed=4"], flags={"run.seed": 5})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("run.seed=-1", r"run.seed=-1 is out of range"),
        ("run.seed=4294967296", "out of range"),
        ("run.device=gpu", r"run.device='gpu' is invalid; use auto, cpu, cuda or cuda:N"),
    ],
)
def test_run_section_values_are_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve(overrides=[override])


def test_plugin_defaults_from_a_packaged_yaml_resource(dummy_plugin):
    from mmbench.registry import METHODS

    config = resolve(specs={"method": METHODS.get("dummy"), "protocol": None, "dataset": None})
    assert config.get("method.schedule") == {"warmup": 10, "kind": "poly"}
    assert config.get("method.fail_with") is None


def test_builder_does_not_mutate_the_defaults():
    defaults = {"method": {"a": 1}}
    builder = ConfigBuilder(defaults)
    builder.apply_override("method.a", 2, "test")
    assert defaults == {"method": {"a": 1}}
    assert builder.build().data == {"method": {"a": 2}}
