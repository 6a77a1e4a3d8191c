"""Plugin specs: the light, import-cheap description of a method, protocol or dataset.

An entry point in group `mmbench.methods`, `mmbench.protocols` or `mmbench.datasets` points at a spec
object, never at the model or protocol code itself. The spec carries the metadata `mmbench list` shows
and a `target` ("package.module:attribute") naming the implementation, which is imported only when a run
needs it. That keeps `mmbench list` fast and lets a broken model module fail only the runs that use it.

A third-party package declares, in a module that imports nothing heavy::

    from mmbench.plugins import MethodSpec

    SPEC = MethodSpec(
        name="my-method",
        summary="One line on what it does.",
        version="0.1.0",
        target="my_package.model:MyMethod",
        paper="https://arxiv.org/abs/...",
        modalities=("optical", "dsm"),
        defaults="my_package:defaults.yaml",
    )

and registers it in its `pyproject.toml`::

    [project.entry-points."mmbench.methods"]
    my-method = "my_package:SPEC"
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mmbench.errors import PluginError

_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
_TARGET_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

# A method's declared capacity policy (`MethodSpec.capacity`), checked at its default config by
# tests/test_capacity_band.py on the synthetic benchmark's modalities:
# - "matched": parameters used at inference on the full set (`mmbench.method.parameter_budget`) within
#   CAPACITY_BAND times the reference method's;
# - "reference-backbone": the method runs the reference method's own encoder/decoder family at the
#   reference's default depths and widths (its backbone keys equal the reference's), whatever its count.
CAPACITY_POLICIES = ("matched", "reference-backbone")
CAPACITY_REFERENCE = "stars"
CAPACITY_BAND = (0.8, 1.2)


@dataclass(frozen=True)
class PluginSpec:
    """What every plugin declares. Subclasses add what their kind needs."""

    kind: ClassVar[str] = "plugin"

    name: str
    summary: str
    version: str
    target: str
    paper: str | None = None
    defaults: str | Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        # Specs are validated when built so that a malformed third-party spec is reported at
        # discovery with its entry point, not later in the middle of a run.
        if not isinstance(self.name, str) or not _NAME_PATTERN.match(self.name):
            raise PluginError(
                f"{self.kind} name {self.name!r} is invalid: use lowercase letters, digits, '-', '_' or '.'"
            )
        for attribute in ("summary", "version"):
            value = getattr(self, attribute)
            if not isinstance(value, str) or not value.strip():
                raise PluginError(f"{self.kind} {self.name!r}: '{attribute}' must be a non-empty string")
        if "\n" in self.summary:
            raise PluginError(f"{self.kind} {self.name!r}: 'summary' must be one line")
        if not isinstance(self.target, str) or not _TARGET_PATTERN.match(self.target):
            raise PluginError(
                f"{self.kind} {self.name!r}: target {self.target!r} must look like 'package.module:attribute'"
            )
        if self.defaults is not None and not isinstance(self.defaults, (str, Mapping)):
            raise PluginError(f"{self.kind} {self.name!r}: 'defaults' must be 'package:file.yaml' or a mapping")

    def load(self) -> Any:
        """Import and return the implementation named by `target`."""
        module_name, _, attribute_path = self.target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attribute_path.split("."):
                obj = getattr(obj, part)
        except Exception as exc:  # any import-time failure of plugin code is reported the same way
            raise PluginError(
                f"{self.kind} {self.name!r}: cannot load its implementation {self.target!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return obj

    def metadata(self) -> dict[str, Any]:
        """The fields a run record and `mmbench list --json` carry."""
        return {
            "name": self.name,
            "summary": self.summary,
            "version": self.version,
            "target": self.target,
            "paper": self.paper,
        }


@dataclass(frozen=True)
class MethodSpec(PluginSpec):
    """A segmentation method.

    `modalities` names the modalities the method accepts (empty: any the dataset has);
    `required_modalities` those it cannot run without (e.g. an optical-only generator's source);
    `min_modalities` how many it needs at all; `needs_all_modalities_for_training` whether training
    requires complete samples (translation-based methods such as STARS do); `capacity` its declared
    capacity policy at the default config, one of CAPACITY_POLICIES ("matched" unless it declares otherwise).
    """

    kind: ClassVar[str] = "method"

    modalities: tuple[str, ...] = ()
    required_modalities: tuple[str, ...] = ()
    min_modalities: int = 1
    needs_all_modalities_for_training: bool = False
    capacity: str = "matched"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.capacity not in CAPACITY_POLICIES:
            raise PluginError(
                f"method {self.name!r}: capacity {self.capacity!r} must be one of {', '.join(CAPACITY_POLICIES)}"
            )
        for attribute in ("modalities", "required_modalities"):
            value = getattr(self, attribute)
            if isinstance(value, str) or not all(isinstance(m, str) for m in value):
                raise PluginError(f"method {self.name!r}: {attribute!r} must be a tuple of modality names")
            object.__setattr__(self, attribute, tuple(value))
        unknown = set(self.required_modalities) - set(self.modalities)
        if self.modalities and unknown:
            raise PluginError(
                f"method {self.name!r}: required modalities {sorted(unknown)} are not among its modalities"
            )
        if not isinstance(self.min_modalities, int) or self.min_modalities < 1:
            raise PluginError(f"method {self.name!r}: 'min_modalities' must be an integer >= 1")

    def describe_modalities(self) -> str:
        """For tables: accepted modalities, required ones marked."""
        names = self.modalities or self.required_modalities
        if not names:
            return "any" if self.min_modalities == 1 else f"any (at least {self.min_modalities})"
        return ", ".join(f"{m} (required)" if m in self.required_modalities else m for m in names)

    def metadata(self) -> dict[str, Any]:
        return {
            **super().metadata(),
            "modalities": list(self.modalities),
            "required_modalities": list(self.required_modalities),
            "min_modalities": self.min_modalities,
            "needs_all_modalities_for_training": self.needs_all_modalities_for_training,
            "capacity": self.capacity,
        }


@dataclass(frozen=True)
class ProtocolSpec(PluginSpec):
    """A missing-modality evaluation protocol; `version` changes whenever its numbers could change."""

    kind: ClassVar[str] = "protocol"


@dataclass(frozen=True)
class DatasetSpec(PluginSpec):
    """A dataset: `modalities` lists what its store holds, `classes` its class names (if fixed)."""

    kind: ClassVar[str] = "dataset"

    modalities: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "modalities", tuple(self.modalities))
        object.__setattr__(self, "classes", tuple(self.classes))

    def describe_modalities(self) -> str:
        return ", ".join(self.modalities) or "unknown until loaded"

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "modalities": list(self.modalities), "classes": list(self.classes)}


@dataclass(frozen=True)
class ConverterSpec(PluginSpec):
    """A converter from an official dataset distribution to a tile store (`mmbench data convert NAME`).

    `target` names the implementation: an object with `convert(source, output, *, tile_size, stride, codec,
    progress)` that writes the store and returns a report with `output`, `tiles`, `off_palette_pixels` and
    `notes` (e.g. a `mmbench.datasets.converters.common.LayoutConverter`, which runs a declarative layout through
    mmbench's conversion engine). `modalities` names the modalities its stores hold (optional ones included).
    """

    kind: ClassVar[str] = "converter"

    modalities: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.modalities, str) or not all(isinstance(m, str) for m in self.modalities):
            raise PluginError(f"converter {self.name!r}: 'modalities' must be a tuple of modality names")
        object.__setattr__(self, "modalities", tuple(self.modalities))

    def describe_modalities(self) -> str:
        return ", ".join(self.modalities) or "unknown until converted"

    def converter(self) -> Any:
        """The implementation, checked to have a `convert` method (a one-line `PluginError` otherwise)."""
        implementation = self.load()
        if not callable(getattr(implementation, "convert", None)):
            raise PluginError(
                f"converter {self.name!r}: {self.target} has no convert(source, output, ...) method "
                f"(it is a {type(implementation).__name__})"
            )
        return implementation

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "modalities": list(self.modalities)}
