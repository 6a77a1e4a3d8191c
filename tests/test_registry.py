"""Entry-point discovery, lazy loading, and the failure modes users meet: unknown names, broken
plugins, duplicate names, malformed specs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from mmbench.errors import PluginError
from mmbench.plugins import MethodSpec
from mmbench.registry import CONVERTERS, DATASETS, METHODS, PROTOCOLS, ConverterSpec, normalize_name

REPO_ROOT = Path(__file__).resolve().parents[1]
DUMMY = {  # what tests/plugin_factory.py's dummy distribution registers
    "mmbench.methods": ["dummy", "broken-impl", "engine-only"],
    "mmbench.protocols": ["dummy-protocol"],
    "mmbench.datasets": ["toy"],
    "mmbench.converters": [],
}


def declared(group: str) -> list[str]:
    """The built-in plugins of an entry-point group, as pyproject.toml declares them."""
    return list(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["entry-points"][group])


def expected_names(group: str) -> list[str]:
    return sorted(normalize_name(name) for name in declared(group) + DUMMY[group])


SPEC_MODULE = """
from mmbench.plugins import MethodSpec, ProtocolSpec
SPEC = MethodSpec(name="{name}", summary="s", version="1", target="{package}.model:Model")
"""


def test_discovers_plugins_of_every_kind_from_entry_points(dummy_plugin):
    """Installed metadata agrees with pyproject.toml (a stale editable install fails here), plus the dummy's."""
    assert len(declared("mmbench.methods")) > 1 and "synthetic" in declared("mmbench.datasets")
    assert METHODS.names() == expected_names("mmbench.methods")
    assert PROTOCOLS.names() == expected_names("mmbench.protocols")
    assert DATASETS.names() == expected_names("mmbench.datasets")
    assert CONVERTERS.names() == expected_names("mmbench.converters") and len(CONVERTERS.names()) > 1
    assert isinstance(CONVERTERS.get("isprs-vaihingen"), ConverterSpec)
    spec = METHODS.get("dummy")
    assert isinstance(spec, MethodSpec)
    assert spec.modalities == ("optical", "dsm")
    assert spec.paper == "https://example.org/dummy"
    assert DATASETS.get("toy").classes == ("a", "b", "c")


def test_discovery_imports_no_plugin_module_and_get_imports_only_the_spec(dummy_plugin):
    # the package folder, not the distribution's mmb_dummy_plugin-*.dist-info beside it (iterdir order is arbitrary)
    package = next(
        p.name for p in dummy_plugin.iterdir() if p.name.startswith("mmb_dummy_") and not p.name.endswith(".dist-info")
    )
    METHODS.names()
    assert package not in sys.modules
    METHODS.get("dummy")
    assert package in sys.modules
    assert f"{package}.impl" not in sys.modules, "the implementation must load only when a run needs it"
    implementation = METHODS.get("dummy").load()
    assert f"{package}.impl" in sys.modules
    assert callable(implementation.execute)


def test_names_are_case_and_separator_insensitive(dummy_plugin):
    assert normalize_name("Dummy_Protocol") == "dummy-protocol"
    assert PROTOCOLS.get("Dummy_Protocol").name == "dummy-protocol"
    assert "DUMMY" in METHODS


def test_unknown_name_suggests_close_matches_and_lists_registered(dummy_plugin):
    with pytest.raises(PluginError) as info:
        METHODS.get("dumy")
    message = str(info.value)
    assert "unknown method 'dumy'" in message
    assert "did you mean 'dummy'" in message
    assert f"registered methods: {', '.join(expected_names('mmbench.methods'))}" in message
    assert "\n" not in message


def test_unknown_name_with_empty_registry_says_how_to_register(monkeypatch):
    from importlib import metadata

    monkeypatch.setattr(metadata, "entry_points", lambda group: [])
    METHODS.refresh()
    with pytest.raises(PluginError, match="no methods are registered.*'mmbench.methods'"):
        METHODS.get("stars")


def test_broken_plugin_is_reported_and_the_others_still_work(install_dist, dummy_plugin):
    install_dist(
        "broken-dist",
        {"mmbench.methods": {"exploding": "mmb_exploding_pkg:SPEC"}},
        {"mmb_exploding_pkg/__init__.py": "raise ImportError('needs libfoo 9')\n"},
    )
    registrations = {r.name: r for r in METHODS.registrations()}
    assert registrations["exploding"].status == "broken"
    assert "ImportError: needs libfoo 9" in registrations["exploding"].error
    assert registrations["dummy"].status == "ok"
    with pytest.raises(PluginError) as info:
        METHODS.get("exploding")
    message = str(info.value)
    assert "mmb_exploding_pkg:SPEC" in message and "broken-dist 1.0.0" in message
    assert "ImportError: needs libfoo 9" in message
    assert METHODS.get("dummy").name == "dummy"


def test_two_distributions_claiming_one_name_is_an_error_naming_both(install_dist):
    install_dist(
        "first-dist",
        {"mmbench.methods": {"twin": "mmb_first_pkg:SPEC"}},
        {"mmb_first_pkg/__init__.py": SPEC_MODULE.format(name="twin", package="mmb_first_pkg")},
    )
    install_dist(
        "second-dist",
        {"mmbench.methods": {"twin": "mmb_second_pkg:SPEC"}},
        {"mmb_second_pkg/__init__.py": SPEC_MODULE.format(name="twin", package="mmb_second_pkg")},
    )
    with pytest.raises(PluginError) as info:
        METHODS.get("twin")
    message = str(info.value)
    assert "registered more than once" in message
    assert "first-dist 1.0.0" in message and "second-dist 1.0.0" in message
    assert "mmb_first_pkg:SPEC" in message and "mmb_second_pkg:SPEC" in message
    assert {r.name: r.status for r in METHODS.registrations()}["twin"] == "conflict"


def test_entry_point_must_point_at_a_spec_of_the_right_kind(install_dist):
    install_dist(
        "wrong-kind",
        {"mmbench.protocols": {"odd": "mmb_wrong_kind:SPEC"}},
        {"mmb_wrong_kind/__init__.py": SPEC_MODULE.format(name="odd", package="mmb_wrong_kind")},
    )
    with pytest.raises(PluginError, match="points at a MethodSpec, expected a mmbench.plugins.ProtocolSpec"):
        PROTOCOLS.get("odd")


def test_entry_point_and_spec_names_must_agree(install_dist):
    install_dist(
        "mismatch",
        {"mmbench.methods": {"alias": "mmb_mismatch:SPEC"}},
        {"mmb_mismatch/__init__.py": SPEC_MODULE.format(name="real-name", package="mmb_mismatch")},
    )
    with pytest.raises(PluginError, match="spec is named 'real-name'"):
        METHODS.get("alias")


def test_invalid_spec_fields_are_rejected_at_discovery(install_dist):
    bad = (
        "from mmbench.plugins import MethodSpec\n"
        'SPEC = MethodSpec(name="bad", summary="s", version="1", target="no colon")\n'
    )
    install_dist("bad-target", {"mmbench.methods": {"bad": "mmb_bad_target:SPEC"}}, {"mmb_bad_target/__init__.py": bad})
    with pytest.raises(PluginError, match="target 'no colon' must look like 'package.module:attribute'"):
        METHODS.get("bad")


def test_implementation_import_failure_names_the_target(dummy_plugin):
    spec = METHODS.get("broken-impl")
    with pytest.raises(PluginError, match=r"cannot load its implementation '.*missing_module:Nope': ModuleNotFound"):
        spec.load()


def test_converters_register_like_every_plugin(install_dist):
    """Unknown names, broken entry points and specs of the wrong kind fail as for methods, naming the converter."""
    install_dist(
        "converter-dist",
        {
            "mmbench.converters": {
                "exploding-format": "mmb_exploding_converter:SPEC",
                "method-format": "mmb_method_converter:SPEC",
            }
        },
        {
            "mmb_exploding_converter/__init__.py": "raise ImportError('needs gdal')\n",
            "mmb_method_converter/__init__.py": SPEC_MODULE.format(name="method-format", package="mmb_method"),
        },
    )
    with pytest.raises(PluginError) as info:
        CONVERTERS.get("earthmis")
    assert "unknown converter 'earthmis'; did you mean 'earthmiss'" in str(info.value)
    with pytest.raises(PluginError, match="converter 'exploding-format' failed to load .*ImportError: needs gdal"):
        CONVERTERS.get("exploding-format")
    with pytest.raises(PluginError, match="points at a MethodSpec, expected a mmbench.plugins.ConverterSpec"):
        CONVERTERS.get("method-format")
    assert CONVERTERS.get("earthmiss").name == "earthmiss"  # the others keep working
    with pytest.raises(PluginError, match="'modalities' must be a tuple of modality names"):
        ConverterSpec(name="x", summary="s", version="1", target="a:b", modalities="optical")
