"""`method.train` as the engine reads it: the keys every trained method defines, the smoke-run limits and
the discriminators' optimiser section. One reading of the section, shared by set-up, optimisation and the loop.

Every value is checked against the rule of `TRAIN_RULES` (the grammar of docs/configuration.md): built-in
methods declare the same rules next to their defaults (methods/_base_train_cpu.yaml, checked when the config is
resolved), but a third-party method's `train:` section may declare none, and a value that cannot mean what it
says (`val_tiles: 0` validating on nothing, a negative clipping norm, `min_lr` above `lr`) must stop the run
before training, not be recorded as if it had been used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mmbench.config import Check
from mmbench.config.yaml_text import show
from mmbench.data.augment import TRANSFORMS
from mmbench.engine.speed import SPEED_RULES
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
# What each key allows (the rules of methods/_base_train_cpu.yaml); `val_tiles` may also be null (every tile).
TRAIN_RULES = {
    "iterations": "int >= 1",
    "batch_size": "int >= 1",
    "crop_size": "int >= 1",
    "lr": "number > 0",
    "weight_decay": "number >= 0",
    "betas": "length 2 number in [0, 1)",
    "warmup_iterations": "int >= 0",
    "warmup_start_factor": "number in [0, 1]",
    "poly_power": "number > 0",
    "min_lr": "number >= 0",
    "grad_clip": "number >= 0",
    "accumulate": "int >= 1",
    "amp": "in {off, bf16, fp16}",
    "val_every": "int >= 1",
    "val_tiles": "int >= 1",
    "num_workers": "int >= 0",
    "augment": "bool",
    "log_every": "int >= 1",
    **SPEED_RULES,
}
ADVERSARY_RULES = {"lr": "number > 0", "betas": "length 2 number in [0, 1)", "weight_decay": "number >= 0"}
NULLABLE = ("val_tiles",)
SOURCE = "rule of the training engine, docs/training.md"


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
    check_values(settings, TRAIN_RULES, "method.train")
    if settings["min_lr"] > settings["lr"]:
        raise ConfigError(
            f"method.train.min_lr={show(settings['min_lr'])} is above method.train.lr={show(settings['lr'])}: the "
            "decay would raise the learning rate; set min_lr to at most lr"
        )
    if smoke:
        settings.update(SMOKE)
    return settings


def check_values(section: Mapping[str, Any], rules: Mapping[str, str], prefix: str) -> None:
    """Each key of `rules` in `section` is allowed by its rule and, when a number, finite (one-line ConfigError)."""
    for key, rule in rules.items():
        if key not in section:
            continue
        value = section[key]
        if value is None and key in NULLABLE:
            continue
        check = Check.parse(rule)
        problem = "value" if value is None else check.violation(value)
        if problem:
            raise ConfigError(check.message(f"{prefix}.{key}", value, problem, SOURCE, nullable=key in NULLABLE))
        numbers = value if isinstance(value, list) else [value]
        if any(isinstance(item, float) and not math.isfinite(item) for item in numbers):
            raise ConfigError(f"{prefix}.{key}={show(value)} is not finite ({SOURCE}): must be {check.describe()}")


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
    check_values(section, ADVERSARY_RULES, "method.train.adversary")
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
