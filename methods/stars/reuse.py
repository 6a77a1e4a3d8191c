"""What one STARS training step computes once and uses twice (`reuse_across_branches`, version 3).

Version 2's step decodes the same encoder features twice (all modalities, then a sampled missing pattern) and
then computes the translation loss: each present modality's composition S_m + Conv([S_m, P_m]) was computed
in both decodes, and each translation T_{a->b}(S_a) in the missing decode and again in the loss, from the same
input tensors. Reusing them gives the same forward values bit for bit; the gradients of the two uses are
summed before the module's backward instead of after it (float rounding, tests/test_speed_settings.py).

One thing a second call did that a read-back does not: a translator's BatchNorm layers updated their running
averages once per call. `translation` replays that update on every read-back (the BatchNorm layer called
again, without gradients, on the same input), so the running statistics — what evaluation uses — follow
version 2's arithmetic exactly, and the saving is the convolutions and the backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class StepReuse:
    """The tensors of one training step that both branches (and the translation loss) share."""

    compositions: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)
    translations: dict[tuple[str, str, int], torch.Tensor] = field(default_factory=dict)
    norm_inputs: dict[tuple[str, str, int], list[tuple[nn.Module, torch.Tensor]]] = field(default_factory=dict)

    def translation(self, translator: nn.Module, key: tuple[str, str, int], shared: torch.Tensor) -> torch.Tensor:
        """`translator(shared)`, computed on the first request of `key` this step and read back afterwards."""
        if key in self.translations:
            replay_norm_updates(self.norm_inputs[key])
            return self.translations[key]
        inputs: list[tuple[nn.Module, torch.Tensor]] = []
        hooks = [
            module.register_forward_pre_hook(lambda m, args: inputs.append((m, args[0].detach())))
            for module in translator.modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training
        ]
        try:
            output = translator(shared)
        finally:
            for hook in hooks:
                hook.remove()
        self.translations[key], self.norm_inputs[key] = output, inputs
        return output


def replay_norm_updates(calls: list[tuple[nn.Module, torch.Tensor]]) -> None:
    """Each BatchNorm layer's running-average update of one more call on the same input (its output unused)."""
    with torch.no_grad():
        for module, tensor in calls:
            module(tensor)
