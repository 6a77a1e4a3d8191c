"""`method.train` as the engine reads it: the keys every trained method defines, the smoke-run limits and
the discriminators' optimiser section. One reading of the section, shared by set-up, optimisation and the loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mmbench.data.augment import TRANSFORMS
from mmbench.errors import ConfigError

TRAIN_KEYS = (
    "iterations",
    "batch_size",
    "crop_size",
    "lr",
    "weight_decay",
    "betas",
    "warmup_iterations",
    "warmup_start_factor",
    "poly_power",
    "min_lr",
    "grad_clip",
    "accumulate",
    "amp",
    "val_every",
    "val_tiles",
    "num_workers",
    "augment",
    "log_every",
)
ADVERSARY_KEYS = ("lr", "betas", "weight_decay")
SMOKE = {"iterations": 3, "val_every": 3, "val_tiles": 2, "log_every": 1}


def train_settings(method_config: Mapping[str, Any], smoke: bool) -> dict[str, Any]:
    settings = method_config.get("train")
    if not isinstance(settings, Mapping):
        raise ConfigError(
            "the method's config has no 'train' section; training methods must define one "
            "(see methods/stars/stars.yaml)"
        )
    missing = [key for key in TRAIN_KEYS if key not in settings]
    if missing:
        raise ConfigError(f"method.train lacks {missing[0]!r}; every key of {', '.join(TRAIN_KEYS)} is needed")
    settings = dict(settings)
    if smoke:
        settings.update(SMOKE)
    if settings["amp"] not in ("off", "bf16", "fp16"):
        raise ConfigError(f"method.train.amp={settings['amp']!r}: use off, bf16 or fp16")
    for key in ("iterations", "batch_size", "crop_size", "accumulate", "val_every", "log_every"):
        if settings[key] < 1:
            raise ConfigError(f"method.train.{key}={settings[key]} must be at least 1")
    return settings


def adversary_settings(settings: Mapping[str, Any], method: str) -> dict[str, Any]:
    """`train.adversary` of a method that trains discriminators: their optimizer (same schedule shape)."""
    section = settings.get("adversary")
    if not isinstance(section, Mapping):
        raise ConfigError(
            f"method {method!r} trains a discriminator: its config needs a 'train.adversary' section "
            f"with {', '.join(ADVERSARY_KEYS)} (see methods/imputation/cgan.yaml)"
        )
    missing = [key for key in ADVERSARY_KEYS if key not in section]
    if missing:
        raise ConfigError(
            f"method.train.adversary lacks {missing[0]!r}; every key of {', '.join(ADVERSARY_KEYS)} is needed"
        )
    if not section["lr"] > 0:
        raise ConfigError(f"method.train.adversary.lr={section['lr']} must be positive")
    return dict(section)


def augment_overrides(settings: Mapping[str, Any], store_modalities: Sequence[str]) -> dict[str, dict[str, bool]]:
    """`method.train.augment_modalities`, checked: modality -> {transform: bool}.

    Optional (a method whose `train:` section predates it, or does not inherit the shared recipe, has none).
    The shared recipe declares it as an open mapping, which the config rules cannot check, so this does:
    modalities of the store, transforms of `mmbench.data.augment.TRANSFORMS`, booleans.
    """
    section = settings.get("augment_modalities") or {}
    key = "method.train.augment_modalities"
    if not isinstance(section, Mapping):
        raise ConfigError(
            f"{key}={section!r} must map modalities to {{transform: true/false}}, e.g. {{sar: {{hflip: true}}}}"
        )
    checked: dict[str, dict[str, bool]] = {}
    for name, switches in section.items():
        if name not in store_modalities:
            raise ConfigError(
                f"{key} names modality {name!r}, which the store lacks (it has {', '.join(store_modalities)})"
            )
        if not isinstance(switches, Mapping):
            raise ConfigError(f"{key}.{name}={switches!r} must map transforms to true/false, e.g. {{hflip: true}}")
        for transform, value in switches.items():
            if transform not in TRANSFORMS:
                raise ConfigError(f"{key}.{name}.{transform}: unknown transform; use {', '.join(TRANSFORMS)}")
            if not isinstance(value, bool):
                raise ConfigError(f"{key}.{name}.{transform}={value!r} must be true or false")
        checked[str(name)] = dict(switches)
    return checked
