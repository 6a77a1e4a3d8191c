"""`_base_` inheritance: of `--config` files, of plugin defaults (built-in and third-party), and of the
shared base files the built-in plugins inherit, in an editable and in an installed copy alike."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mmbench.cli.main import main
from mmbench.config import BASE_KEY, checked, load_defaults, load_plugin_defaults, read_config_layer, resolve_run_config
from mmbench.errors import ConfigError
from mmbench.plugins import MethodSpec, ProtocolSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
_packages = itertools.count()

METHOD = MethodSpec(
    name="m",
    summary="s",
    version="1",
    target="a:b",
    defaults={"lr": 0.01, "dims": [64, 128], "schedule": {"warmup": 10, "kind": "poly"}, "class_weights": {}},
)
PROTOCOL = ProtocolSpec(name="p", summary="s", version="1", target="a:b", defaults={"window": 64})


def resolve(config_file=None, overrides=(), method=METHOD):
    return resolve_run_config({"method": method, "protocol": PROTOCOL, "dataset": None}, config_file, overrides)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def one_line(message: str) -> str:
    assert "\n" not in message, message
    return message


# -- --config files ------------------------------------------------------------------------------------


def test_a_config_file_inherits_deeply_and_records_the_file_that_set_each_key(tmp_path):
    write(
        tmp_path, "shared/base.yaml", "method:\n  lr: 0.5\n  dims: [1, 2, 3]\n  schedule: {warmup: 3}\nrun: {seed: 7}\n"
    )
    path = write(tmp_path, "exp/child.yaml", "_base_: ../shared/base.yaml\nmethod:\n  schedule: {kind: cosine}\n")
    config = resolve(path)
    assert config.get("method.lr") == 0.5
    assert config.get("method.dims") == [1, 2, 3]  # a list replaces the default
    assert config.get("method.schedule") == {"warmup": 3, "kind": "cosine"}  # mappings merge
    assert config.get("run.seed") == 7
    base = tmp_path / "shared" / "base.yaml"  # the including file's folder joined with the reference, normalised
    assert config.sources["method.lr"] == f"file {base}"
    assert config.sources["method.schedule.warmup"] == f"file {base}"
    assert config.sources["method.schedule.kind"] == f"file {path}"


def test_the_including_file_wins_wherever_base_is_written_and_later_bases_win(tmp_path):
    write(tmp_path, "a.yaml", "method: {lr: 1.0, schedule: {warmup: 1, kind: a}}\n")
    write(tmp_path, "b.yaml", "method: {schedule: {kind: b}}\n")
    first = write(tmp_path, "first.yaml", "_base_: [a.yaml, b.yaml]\nmethod: {lr: 3.0}\n")
    last = write(tmp_path, "last.yaml", "method: {lr: 3.0}\n_base_: [a.yaml, b.yaml]\n")
    for path in (first, last):
        config = resolve(path)
        assert config.get("method.lr") == 3.0
        assert config.get("method.schedule") == {"warmup": 1, "kind": "b"}
        assert config.sources["method.lr"] == f"file {path}"
        assert config.sources["method.schedule.kind"] == f"file {tmp_path / 'b.yaml'}"


def test_inherited_keys_are_listed_where_base_is_written(tmp_path):
    write(tmp_path, "base.yaml", "method: {lr: 1.0, dims: [1]}\n")
    data, _ = read_config_layer(write(tmp_path, "top.yaml", "_base_: base.yaml\nmethod: {schedule: {kind: x}}\n"))
    assert list(data["method"]) == ["lr", "dims", "schedule"]
    data, _ = read_config_layer(write(tmp_path, "bottom.yaml", "method: {schedule: {kind: x}}\n_base_: base.yaml\n"))
    assert list(data["method"]) == ["schedule", "lr", "dims"]


def test_bases_chain_recursively(tmp_path):
    write(tmp_path, "one.yaml", "method: {lr: 1.0, dims: [1]}\n")
    write(tmp_path, "sub/two.yaml", "_base_: ../one.yaml\nmethod: {lr: 2.0}\n")
    config = resolve(write(tmp_path, "three.yaml", "_base_: sub/two.yaml\nmethod: {dims: [3]}\n"))
    assert (config.get("method.lr"), config.get("method.dims")) == (2.0, [3])


@pytest.mark.parametrize(
    ("files", "start"),
    [
        ({"self.yaml": "_base_: self.yaml\n"}, "self.yaml"),
        ({"a.yaml": "_base_: b.yaml\n", "b.yaml": "_base_: [c.yaml]\n", "c.yaml": "_base_: a.yaml\n"}, "a.yaml"),
    ],
)
def test_a_base_cycle_is_refused_in_one_line(tmp_path, files, start):
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(ConfigError, match=r"_base_ cycle: .*-> .*; remove one of these _base_ entries") as info:
        resolve(tmp_path / start)
    one_line(str(info.value))


def test_a_diamond_is_not_a_cycle(tmp_path):
    write(tmp_path, "root.yaml", "method: {lr: 1.0}\n")
    write(tmp_path, "left.yaml", "_base_: root.yaml\nmethod: {dims: [1]}\n")
    write(tmp_path, "right.yaml", "_base_: root.yaml\nmethod: {schedule: {kind: r}}\n")
    config = resolve(write(tmp_path, "top.yaml", "_base_: [left.yaml, right.yaml]\n"))
    assert (config.get("method.lr"), config.get("method.dims"), config.get("method.schedule.kind")) == (1.0, [1], "r")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("_base_: missing.yaml\n", r"config file '.*missing.yaml' \(_base_ of '.*child.yaml'\) does not exist"),
        ("_base_: []\n", "_base_ must be a path or a non-empty list of paths"),
        ("_base_: {a: 1}\n", "_base_ must be a path or a non-empty list of paths"),
        ("method:\n  _base_: x.yaml\n", "_base_ is only allowed at the top level of a file, not in 'method'"),
        ("method:\n  lr: !check 0.1 > 0\n", r"!check declares a constraint, which only a plugin's default YAML may"),
    ],
)
def test_malformed_inheritance_in_a_config_file_is_one_line(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as info:
        resolve(write(tmp_path, "child.yaml", text))
    one_line(str(info.value))


def test_an_unknown_key_in_a_base_names_the_base_file(tmp_path):
    write(tmp_path, "base.yaml", "method: {lrr: 1.0}\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'method.lrr' in file .*base.yaml \(did you mean"):
        resolve(write(tmp_path, "child.yaml", "_base_: base.yaml\n"))
    write(tmp_path, "sections.yaml", "trainer: {lr: 1}\n")
    with pytest.raises(ConfigError, match=r"config file '.*sections.yaml': unknown section 'trainer'"):
        resolve(write(tmp_path, "child2.yaml", "_base_: sections.yaml\n"))


def test_dry_run_shows_the_base_file_that_set_a_key(capsys, tmp_path):
    paper = REPO_ROOT / "methods" / "stars" / "paper.yaml"
    code = main(["run", "stars", "--protocol", "last1", "--config", str(paper), "--dry-run"])
    output = capsys.readouterr()
    assert code == 0, output.err
    rows = {line.split("│")[1].strip(): line for line in output.out.splitlines() if line.count("│") >= 3}
    assert str(REPO_ROOT / "methods" / "_base_paper.yaml") in rows["method.train.crop_size"]
    assert str(paper) in rows["method.backbone"]


# -- plugin defaults -----------------------------------------------------------------------------------


def test_builtin_plugins_inherit_the_shared_bases():
    from mmbench.registry import METHODS, PROTOCOLS

    for name in METHODS.names():
        defaults = load_plugin_defaults(METHODS.get(name).defaults, name)
        assert defaults.checks["train.lr"].origin == "mmbench.methods:_base_train_cpu.yaml", name
    adversarial = [
        name for name in METHODS.names() if "adversary" in load_defaults(METHODS.get(name).defaults, name)["train"]
    ]
    assert adversarial, "no built-in method trains a discriminator: the GAN base is unused"
    for name in adversarial:
        adversary = load_plugin_defaults(METHODS.get(name).defaults, name).checks["train.adversary.lr"]
        assert adversary.origin == "mmbench.methods:_base_train_cpu_gan.yaml", name
    for name in PROTOCOLS.names():
        defaults = load_plugin_defaults(PROTOCOLS.get(name).defaults, name)
        assert defaults.checks["window"].origin == "mmbench.protocols:_base_protocol.yaml", name


def test_the_shared_recipes_live_once():
    """The CPU recipe and the protocol settings are written in one file each, not repeated per plugin."""
    yaml_files = [*REPO_ROOT.joinpath("methods").rglob("*.yaml"), *REPO_ROOT.joinpath("protocols").rglob("*.yaml")]
    writers = {
        key: sorted(str(path.relative_to(REPO_ROOT)) for path in yaml_files if key in path.read_text())
        for key in ("warmup_start_factor:", "label_variant:", "betas:")
    }
    assert writers == {
        "warmup_start_factor:": ["methods/_base_paper.yaml", "methods/_base_train_cpu.yaml"],
        "label_variant:": ["protocols/_base_protocol.yaml"],
        "betas:": ["methods/_base_train_cpu.yaml", "methods/_base_train_cpu_gan.yaml"],
    }


def test_a_mapping_of_defaults_inherits_a_packaged_base_and_declares_checks():
    spec = MethodSpec(
        name="mapped",
        summary="s",
        version="1",
        target="a:b",
        defaults={"width": checked(8, ">= 1"), BASE_KEY: "mmbench.methods:_base_train_cpu.yaml"},
    )
    config = resolve(method=spec)
    assert list(config.section("method")) == ["width", "train"]
    assert config.get("method.train.iterations") == 1500
    with pytest.raises(ConfigError, match=r"method.width=0 is out of range .*: must be >= 1"):
        resolve(overrides=["method.width=0"], method=spec)
    with pytest.raises(ConfigError, match=r"method.train.amp='fp32' must be one of off, bf16, fp16 \(set by --set"):
        resolve(overrides=["method.train.amp=fp32"], method=spec)
    relative = MethodSpec(name="rel", summary="s", version="1", target="a:b", defaults={BASE_KEY: "base.yaml"})
    with pytest.raises(ConfigError, match="a mapping of defaults has no folder; write 'package:file.yaml'"):
        resolve(method=relative)


def _third_party(install_dist, files: dict[str, str]) -> str:
    package = f"mmb_inherit_{next(_packages)}"
    specs = f"""
        from mmbench.plugins import MethodSpec

        SPEC = MethodSpec(name="inheriting", summary="s", version="1", target="{package}.impl:M",
                          defaults="{package}.sub:defaults.yaml")
    """
    install_dist(
        package.replace("_", "-"),
        {"mmbench.methods": {"inheriting": f"{package}:SPEC"}},
        {
            f"{package}/__init__.py": specs,
            f"{package}/sub/__init__.py": "",
            **{f"{package}/{k}": v for k, v in files.items()},
        },
    )
    return package


def test_a_third_party_plugin_inherits_mmbench_and_its_own_bases(install_dist, capsys):
    _third_party(
        install_dist,
        {
            "common.yaml": "depth: !check 2 in {2, 4}\n",
            "sub/defaults.yaml": (
                "_base_: [../common.yaml, mmbench.methods:_base_train_cpu.yaml]\n"
                "width: !check 16 >= 8  # own key, own rule\n"
                "train:\n  iterations: 10\n"
            ),
        },
    )
    from mmbench.registry import METHODS

    values = load_defaults(METHODS.get("inheriting").defaults, "inheriting")
    assert list(values) == ["depth", "train", "width"]
    assert values["train"]["iterations"] == 10 and values["train"]["amp"] == "off"
    for override, fragment in [
        ("method.width=4", "method.width=4 is out of range"),
        ("method.depth=3", "method.depth=3 must be one of 2, 4"),
        ("method.train.iterations=0", "method.train.iterations=0 is out of range"),
    ]:
        code = main(["run", "inheriting", "--protocol", "full", "--set", override, "--dry-run"])
        err = capsys.readouterr().err
        assert code == 2 and fragment in one_line(err.strip())


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"sub/defaults.yaml": "_base_: ../../../x.yaml\n"}, r"_base_ '../../../x.yaml' of .* leaves package 'mmb_"),
        ({"sub/defaults.yaml": "_base_: nope.yaml\n"}, r"default config 'mmb_inherit_\d+.sub:nope.yaml' \(_base_ of"),
        (
            {"sub/defaults.yaml": "_base_: mmbench.methods:_base_train_cpu.yaml\ntrain:\n  lr: !check 0.1 >= 0\n"},
            r"the constraint of 'train.lr' is declared twice \(mmbench.methods:_base_train_cpu.yaml: '> 0'; ",
        ),
        (
            {"sub/defaults.yaml": "_base_: mmbench.methods:_base_train_cpu.yaml\ntrain:\n  lr: -0.1\n"},
            r"the default train.lr=-0.1 is out of range \(mmbench.methods:_base_train_cpu.yaml\): must be > 0",
        ),
        ({"sub/defaults.yaml": "a: !check 1 in [2, 1]\n"}, r"line 1: constraint 'in \[2, 1\]': the interval .* empty"),
        ({"sub/defaults.yaml": "a: !check 1\n"}, r"line 1: !check '1' gives a default but no rule"),
        ({"sub/defaults.yaml": "a: !check 1 >> 0\n"}, r"line 1: constraint '>> 0': cannot read"),
        ({"sub/defaults.yaml": "a: !check [1, 2]\n"}, r"line 1: write `!check DEFAULT RULE` as one scalar"),
        ({"sub/defaults.yaml": "a: !check 1 in {1, 2} > 0\n"}, "give choices or bounds, not both"),
        ({"sub/defaults.yaml": "a: [!check 1 > 0]\n"}, r"'a' holds a !check item; a rule applies to the whole list"),
    ],
)
def test_broken_plugin_defaults_are_refused_in_one_line(install_dist, capsys, files, message):
    _third_party(install_dist, files)
    code = main(["run", "inheriting", "--protocol", "full", "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert re.search(message, err), err


# -- packaging -----------------------------------------------------------------------------------------


def _builtin_bases() -> set[Path]:
    """Every file a built-in plugin's defaults or paper-scale config names in `_base_`, transitively."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!check", lambda loader, node: None)
    found: set[Path] = set()
    pending = [*REPO_ROOT.joinpath("methods").rglob("*.yaml"), *REPO_ROOT.joinpath("protocols").rglob("*.yaml")]
    while pending:
        path = pending.pop()
        references = (yaml.load(path.read_text(), Loader=Loader) or {}).get(BASE_KEY) or []
        for reference in [references] if isinstance(references, str) else references:
            base = (path.parent / reference).resolve()
            if base not in found:
                found.add(base)
                pending.append(base)
    return found


def test_base_files_sit_in_package_folders_that_install_their_yaml():
    """pyproject.toml installs `*.yaml` of each package folder, not of its plain subfolders (such as `_base_/`)."""
    bases = _builtin_bases()
    assert {path.name for path in bases} >= {"_base_train_cpu.yaml", "_base_paper.yaml", "_base_protocol.yaml"}
    for path in bases:
        assert (path.parent / "__init__.py").is_file(), f"{path} is not in a package folder: it would not install"


@pytest.mark.slow
def test_an_installed_copy_resolves_the_same_defaults(tmp_path):
    """Built and pip-installed (not editable): every plugin's defaults and a paper config, from the copy."""
    from test_packaging import pip_install_into

    target, env = pip_install_into(tmp_path / "site", REPO_ROOT)
    paper = target / "mmbench" / "methods" / "imputation" / "paper_cgan.yaml"
    probe = (
        "import json, mmbench.config as c\n"
        "from mmbench.registry import METHODS as M, PROTOCOLS as P, DATASETS as D\n"
        "out = {'file': c.__file__, 'defaults': {}}\n"
        "for key, registry in (('methods', M), ('protocols', P), ('datasets', D)):\n"
        "    out['defaults'][key] = {n: c.load_defaults(registry.get(n).defaults, n) for n in registry.names()}\n"
        "specs = {'method': M.get('cgan'), 'protocol': P.get('last1'), 'dataset': D.get('synthetic')}\n"
        f"out['paper'] = c.resolve_run_config(specs, config_file={str(paper)!r}).data\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    probed = json.loads(result.stdout)
    assert Path(probed["file"]).parent == target / "mmbench" / "config"  # the installed copy, not the tree
    snapshot = json.loads((REPO_ROOT / "tests" / "fixtures" / "resolved_defaults.json").read_text())
    for key in ("methods", "protocols", "datasets"):  # the pinned plugins (one added later has no pin)
        pinned = {name: probed["defaults"][key][name] for name in snapshot[key]}
        assert json.dumps(pinned) == json.dumps(snapshot[key])
    assert json.dumps(probed["paper"]) == json.dumps(snapshot["paper"]["methods/imputation/paper_cgan.yaml"]["config"])
