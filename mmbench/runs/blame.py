"""Errors that blame the right party while the training engine runs a plugin's code.

An exception raised inside a third-party plugin's own modules, or a `PluginContractError` the evaluation engine
raises about what the plugin returned (mmbench/evaluation/runner.py), becomes one line naming the plugin and its
distribution, exit 2: its author fixes it, not mmbench's. Exceptions in mmbench's own code, and anything a
plugin shipped with mmbench raises, stay internal errors (exit 1: please report them). `--debug` shows the
original traceback (the new error is raised `from` it).
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mmbench.context import RunPlan
from mmbench.errors import PluginContractError, UserError
from mmbench.plugins import PluginSpec
from mmbench.registry import METHODS, PROTOCOLS, Registry
from mmbench.testing.origin import describe_origin, is_builtin


def plugin_roots(spec: PluginSpec) -> list[Path]:
    """The files of the plugin's top-level package (or its single module) named by its `target`."""
    top = spec.target.partition(":")[0].split(".")[0]
    try:
        module = importlib.import_module(top)
    except Exception:  # it loaded for the run; if it cannot be imported again, nothing is blamed on it
        return []
    paths = [Path(path).resolve() for path in getattr(module, "__path__", [])]
    if not paths and getattr(module, "__file__", None):
        paths = [Path(module.__file__).resolve()]
    return paths


def _in_roots(filename: str, roots: list[Path]) -> bool:
    path = Path(filename).resolve()
    return any(path == root or root in path.parents for root in roots)


@contextmanager
def blame_plugins(plan: RunPlan) -> Iterator[None]:
    """Turn failures of the run's third-party method or protocol into one-line `PluginContractError`s."""
    try:
        yield
    except UserError as exc:
        if isinstance(exc, PluginContractError) and not str(exc).startswith(f"method {plan.method.name!r}"):
            builtin, origin = _suspect(plan, METHODS, plan.method)
            line = f"method {plan.method.name!r} ({origin}) breaks its contract during the run: {exc}"
            if builtin:  # a method shipped with mmbench breaking the contract is mmbench's bug
                raise RuntimeError(f"built-in {line}") from exc
            raise PluginContractError(f"{line}; 'mmbench check method {plan.method.name}' reproduces it") from exc
        raise
    except Exception as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        for registry, spec in ((METHODS, plan.method), (PROTOCOLS, plan.protocol)):
            builtin, origin = _suspect(plan, registry, spec)
            if builtin:
                continue
            roots = plugin_roots(spec)
            inside = [frame for frame in frames if _in_roots(frame.filename, roots)]
            if inside:
                frame = inside[-1]
                message = " ".join(str(exc).split()) or "(no message)"
                raise PluginContractError(
                    f"{registry.kind} {spec.name!r} ({origin}) raised {type(exc).__name__}: {message} in its own "
                    f"code ({Path(frame.filename).name}:{frame.lineno}, in {frame.name}); fix the plugin or report "
                    "it to its authors (rerun with --debug for the traceback)"
                ) from exc
        raise


def _suspect(plan: RunPlan, registry: Registry, spec: PluginSpec) -> tuple[bool, str]:
    return is_builtin(registry, spec.name), describe_origin(registry, spec.name)
