"""Plugin registries fed by Python entry points.

Built-in plugins and third-party packages register the same way: an entry point in group
`mmbench.methods`, `mmbench.protocols`, `mmbench.datasets` or `mmbench.converters` whose value points at a
spec object (see `mmbench.plugins`; converters' `ConverterSpec` is defined here). Discovery reads entry-point
metadata only; a spec module is imported the first time its name is asked for, and the implementation behind
it only when a run (or a conversion) loads it.

Failures stay local: a plugin whose entry point cannot be imported is reported with the entry point and
the original error while every other plugin keeps working, and two distributions claiming one name are
an error only for that name, naming both sources.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib import metadata
from typing import Generic, TypeVar

from mmbench.errors import PluginError
from mmbench.plugins import ConverterSpec, DatasetSpec, MethodSpec, PluginSpec, ProtocolSpec

SpecT = TypeVar("SpecT", bound=PluginSpec)


def normalize_name(name: str) -> str:
    """Names compare case-insensitively with '_' and '-' interchangeable (`Random_Drop` = `random-drop`)."""
    return name.strip().lower().replace("_", "-")


@dataclass(frozen=True)
class EntryPointSource:
    """Where a registration came from, as a user can look it up (`pip show DIST`)."""

    name: str
    value: str
    group: str
    distribution: str | None

    def describe(self) -> str:
        dist = self.distribution or "unknown distribution"
        return f"{self.name} = {self.value!r} from {dist}"


@dataclass
class Registration(Generic[SpecT]):
    """One registered name: its sources, and once loaded, its spec or the reason it failed."""

    name: str
    sources: list[EntryPointSource]
    spec: SpecT | None = None
    error: str | None = None
    loaded: bool = False

    @property
    def status(self) -> str:
        if len(self.sources) > 1:
            return "conflict"
        if self.error is not None:
            return "broken"
        return "ok" if self.loaded else "unloaded"


@dataclass
class Registry(Generic[SpecT]):
    """Plugins of one kind. Discovery is cached per process; `refresh()` forgets it."""

    kind: str
    plural: str
    group: str
    spec_type: type[SpecT]
    _registrations: dict[str, Registration[SpecT]] | None = field(default=None, init=False, repr=False)

    def refresh(self) -> None:
        self._registrations = None

    def _discover(self) -> dict[str, Registration[SpecT]]:
        if self._registrations is None:
            found: dict[str, Registration[SpecT]] = {}
            for entry_point in metadata.entry_points(group=self.group):
                dist = getattr(entry_point, "dist", None)
                source = EntryPointSource(
                    name=entry_point.name,
                    value=entry_point.value,
                    group=self.group,
                    distribution=f"{dist.name} {dist.version}" if dist is not None else None,
                )
                key = normalize_name(entry_point.name)
                registration = found.setdefault(key, Registration(name=key, sources=[]))
                if source not in registration.sources:
                    registration.sources.append(source)
            self._registrations = dict(sorted(found.items()))
        return self._registrations

    def names(self) -> list[str]:
        """Registered names, without importing any plugin module."""
        return list(self._discover())

    def __contains__(self, name: str) -> bool:
        return normalize_name(name) in self._discover()

    def _load(self, registration: Registration[SpecT]) -> Registration[SpecT]:
        if registration.loaded or registration.status == "conflict":
            return registration
        registration.loaded = True
        source = registration.sources[0]
        entry_point = metadata.EntryPoint(name=source.name, value=source.value, group=source.group)
        try:
            spec = entry_point.load()
        except Exception as exc:  # third-party import errors of any type are reported, not raised
            registration.error = f"{type(exc).__name__}: {exc}"
            return registration
        if not isinstance(spec, self.spec_type):
            expected = f"{self.spec_type.__module__}.{self.spec_type.__qualname__}"
            registration.error = f"points at a {type(spec).__name__}, expected a {expected}"
        elif normalize_name(spec.name) != registration.name:
            registration.error = f"its spec is named {spec.name!r}; the entry point and spec names must agree"
        else:
            registration.spec = spec
        return registration

    def registrations(self) -> list[Registration[SpecT]]:
        """Every registration with its spec loaded (imports each plugin's light spec module)."""
        return [self._load(registration) for registration in self._discover().values()]

    def get(self, name: str) -> SpecT:
        """The spec registered under `name`, or a one-line `PluginError` saying what to do."""
        registrations = self._discover()
        key = normalize_name(name)
        if key not in registrations:
            raise PluginError(self._unknown_message(name, list(registrations)))
        registration = self._load(registrations[key])
        if registration.status == "conflict":
            sources = "; ".join(source.describe() for source in registration.sources)
            raise PluginError(
                f"{self.kind} {name!r} is registered more than once ({sources}); uninstall or rename one of them"
            )
        if registration.spec is None:
            source = registration.sources[0]
            raise PluginError(
                f"{self.kind} {name!r} failed to load from entry point {source.describe()} "
                f"in group {self.group!r}: {registration.error}"
            )
        return registration.spec

    def _unknown_message(self, name: str, known: list[str]) -> str:
        if not known:
            return (
                f"unknown {self.kind} {name!r}: no {self.plural} are registered "
                f"(install a package that provides entry points in group {self.group!r})"
            )
        close = difflib.get_close_matches(normalize_name(name), known, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        return f"unknown {self.kind} {name!r}; {hint}registered {self.plural}: {', '.join(known)}"


METHODS: Registry[MethodSpec] = Registry("method", "methods", "mmbench.methods", MethodSpec)
PROTOCOLS: Registry[ProtocolSpec] = Registry("protocol", "protocols", "mmbench.protocols", ProtocolSpec)
DATASETS: Registry[DatasetSpec] = Registry("dataset", "datasets", "mmbench.datasets", DatasetSpec)
CONVERTERS: Registry[ConverterSpec] = Registry("converter", "converters", "mmbench.converters", ConverterSpec)

REGISTRIES: dict[str, Registry] = {
    "methods": METHODS,
    "protocols": PROTOCOLS,
    "datasets": DATASETS,
    "converters": CONVERTERS,
}


def refresh_all() -> None:
    """Forget cached discovery, e.g. after installing a plugin into the running interpreter."""
    for registry in REGISTRIES.values():
        registry.refresh()
