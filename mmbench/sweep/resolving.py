"""The project's config resolution (`mmbench.config.resolve_run_config`), with the YAML it reads cached.

Resolving one run's config parses every plugin's default YAML and the `--config` file again; that is
95 % of its cost (about 30 ms). A sweep resolves hundreds of configs (one per dataset x method config x
protocol) from the same few files, so while it plans, `cached_reads()` memoises the two readers that
`mmbench/config/resolve.py` calls. The resolution itself (layering, key and type checks, `!check`
rules) is the project's, unchanged: a suite's `set:` is checked exactly as `mmbench run --set` checks it.
The cached values are never mutated: `ConfigBuilder` deep-copies whatever it merges.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import mmbench.config.resolve as resolve_module
from mmbench.config import ResolvedConfig, resolve_run_config
from mmbench.plugins import PluginSpec


@contextlib.contextmanager
def cached_reads() -> Iterator[None]:
    """Memoise plugin defaults and config files while the block runs (planning is single-threaded)."""
    original_defaults = resolve_module.load_plugin_defaults
    original_layer = resolve_module.read_config_layer
    defaults_cache: dict[tuple[str, str], Any] = {}
    layer_cache: dict[tuple[str, int], Any] = {}

    def load_plugin_defaults(defaults: Any, owner: str) -> Any:
        if not isinstance(defaults, str):  # a mapping or None: cheap, and not hashable
            return original_defaults(defaults, owner)
        key = (defaults, owner)
        if key not in defaults_cache:
            defaults_cache[key] = original_defaults(defaults, owner)
        return defaults_cache[key]

    def read_config_layer(path: str | Path) -> Any:
        key = (str(Path(path).resolve()), Path(path).stat().st_mtime_ns)
        if key not in layer_cache:
            layer_cache[key] = original_layer(path)
        return layer_cache[key]

    resolve_module.load_plugin_defaults = load_plugin_defaults  # type: ignore[assignment]
    resolve_module.read_config_layer = read_config_layer  # type: ignore[assignment]
    try:
        yield
    finally:
        resolve_module.load_plugin_defaults = original_defaults  # type: ignore[assignment]
        resolve_module.read_config_layer = original_layer  # type: ignore[assignment]


def resolve(
    specs: Mapping[str, PluginSpec | None],
    config_file: Path | None,
    overrides: Sequence[str],
    flags: Mapping[str, Any],
) -> ResolvedConfig:
    """`resolve_run_config`, named for the planner (call it inside `cached_reads()` for speed)."""
    return resolve_run_config(specs, config_file=config_file, overrides=overrides, flags=flags)


Resolver = Callable[[Mapping[str, PluginSpec | None], Path | None, Sequence[str], Mapping[str, Any]], ResolvedConfig]
