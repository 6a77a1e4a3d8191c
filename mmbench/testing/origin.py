"""Where a plugin comes from, so that an error blames the right party: the distribution that registered its
entry point (mmbench/registry.py reads it from the entry point's metadata, as `pip show` would)."""

from __future__ import annotations

from mmbench.registry import Registry, normalize_name

MMBENCH_DISTRIBUTION = "mmbench"


def plugin_distribution(registry: Registry, name: str) -> str | None:
    """`"name version"` of the distribution whose entry point registered `name`, or None if unknown."""
    key = normalize_name(name)
    for registration in registry.registrations():
        if registration.name == key and registration.sources:
            return registration.sources[0].distribution
    return None


def describe_origin(registry: Registry, name: str) -> str:
    """`from distribution NAME VERSION` for messages; a spec checked without registering it says so."""
    distribution = plugin_distribution(registry, name)
    return f"from distribution {distribution}" if distribution else "not registered by any installed distribution"


def is_builtin(registry: Registry, name: str) -> bool:
    """Whether mmbench itself ships the plugin: its failures are mmbench's bugs (exit 1), not a plugin's."""
    distribution = plugin_distribution(registry, name) or ""
    return distribution.split(" ")[0] == MMBENCH_DISTRIBUTION
