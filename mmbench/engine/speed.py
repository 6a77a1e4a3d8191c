"""The engine's speed settings: how the model and its inputs are laid out in memory, which AdamW kernel
updates the parameters, and opt-in compilation.

They change how a step is computed, never what: the same seed gives the same losses to float rounding
(`memory_format`, `fused_optimizer`: tests/test_speed_settings.py bounds the difference) or, for
`run.compile`, to the rounding of inductor's generated kernels. What each is worth per method is measured by
`mmbench bench step` and benchmarks/step_speedups.py (docs/results/step-profile.md), which is why they are
settings and not always on: channels-last pays for convolutional networks on CPU and costs attention-heavy
ones their reshapes.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mmbench.errors import ConfigError

MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
SPEED_RULES = {"memory_format": "in {contiguous, channels_last}", "fused_optimizer": "bool"}


def memory_format(settings: Mapping[str, Any]) -> torch.memory_format:
    """`method.train.memory_format` (optional: a recipe that predates it is `contiguous`)."""
    return MEMORY_FORMATS[settings.get("memory_format", "contiguous")]


def fused_optimizer(settings: Mapping[str, Any]) -> bool | None:
    """AdamW's `fused` argument: True for `method.train.fused_optimizer: true`; None (torch's own choice, the
    for-loop kernel on CPU and foreach on CUDA) otherwise, so that recipes without the key keep their bits."""
    return True if settings.get("fused_optimizer", False) else None


# oneDNN's channels-last convolution on CPU (torch 2.13) crashes or hangs on narrow strided convolutions: a 1x1
# stride-2 convolution with 2-4 input channels (a ResNet shortcut at width 4) segfaulted, corrupted the heap or
# never returned within 1-30 steps; the same widths at stride 1 ran clean. Strided convolutions narrower than
# this run contiguous (their weight and input); keeping every narrow one contiguous cost STARS its layout gain
# (its 4-channel translator and scSE layers then converted layouts back and forth: 0.83x).
NARROWEST_CHANNELS_LAST = 8


def lay_out_model(model: nn.Module, settings: Mapping[str, Any]) -> None:
    """Put the model's 4-D parameters and buffers in the recipe's memory format (in place; a no-op for
    contiguous).

    Only 4-D tensors: `Module.to(memory_format=channels_last)` refuses a model with 5-D weights (a Conv3d,
    as in the Perceiver's local attention), which keeps its own layout here. A strided convolution with fewer
    than `NARROWEST_CHANNELS_LAST` input channels keeps a contiguous weight and gets its input made contiguous
    (a forward pre-hook), so it never runs oneDNN's channels-last kernel. Checkpoints keep the keys and
    values; a state dict loaded later is copied into these tensors, which keep their layout."""
    fmt = memory_format(settings)
    if fmt is torch.contiguous_format:
        return
    for module in model.modules():
        if (
            isinstance(module, nn.Conv2d)
            and module.in_channels < NARROWEST_CHANNELS_LAST
            and tuple(module.stride) != (1, 1)
        ):
            module.register_forward_pre_hook(_contiguous_input)
            continue
        for tensor in (*module.parameters(recurse=False), *module.buffers(recurse=False)):
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=fmt)


def _contiguous_input(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0].contiguous(), *args[1:])


def lay_out_inputs(inputs: Mapping[str, torch.Tensor], fmt: torch.memory_format) -> dict[str, torch.Tensor]:
    """The batch's 4-D input maps in `fmt` (other tensors as they are)."""
    if fmt is torch.contiguous_format:
        return dict(inputs)
    return {name: t.contiguous(memory_format=fmt) if t.dim() == 4 else t for name, t in inputs.items()}


def check_compile(device: str) -> None:
    """`run.compile: true` needs inductor's toolchain: a C++ compiler on CPU (Triton on CUDA comes with
    torch). Without one the first step would fail deep inside torch; say so before anything trains."""
    if device.startswith("cpu") and not any(shutil.which(name) for name in ("c++", "g++", "clang++")):
        raise ConfigError(
            "run.compile=true needs a C++ compiler on CPU (torch.compile's inductor backend builds its kernels "
            "with one) and none is on PATH; install g++ or set run.compile=false"
        )


def compile_model(model: nn.Module) -> list[str]:
    """Compile, in place (`nn.Module.compile`: state-dict keys unchanged, so checkpoints stay
    interchangeable with uncompiled runs), every direct child of `model` that has a `forward`, looking through
    ModuleDict/ModuleList containers (at any depth) to their members; returns their names.

    Children, not the model: a method's `training_loss` calls its submodules directly and its own `forward`
    only at evaluation, so compiling the top-level module would leave the training step eager. Code a method
    runs between submodules (losses, sampling) stays eager, as does any submodule method other than
    `forward` called directly.
    """
    compiled: list[str] = []
    for name, child in model.named_children():
        _compile_members(child, name, compiled)
    return compiled


def _compile_members(module: nn.Module, name: str, compiled: list[str]) -> None:
    if isinstance(module, (nn.ModuleDict, nn.ModuleList)):
        for member_name, member in module.named_children():
            _compile_members(member, f"{name}.{member_name}", compiled)
    elif any(True for _ in module.parameters()):
        module.compile()
        compiled.append(name)
