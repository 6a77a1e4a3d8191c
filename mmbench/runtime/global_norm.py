"""BatchNorm over the global batch of a multi-process run, on any device (docs/distributed.md).

Under DDP each rank normalises its share of the step's batch with the statistics of that share alone, so a
BatchNorm network trained by N processes is a different computation from the same network trained by one
process on the same global batch. `torch.nn.SyncBatchNorm` computes the statistics over the global batch but
only on GPUs; `GlobalBatchNorm` does the same on any backend (gloo on CPU included), with two all-reduces per
training call (a layer check, then the differentiable sums), so that the two kinds of run agree.

Every rank must call the same normalisation layers in the same order: a layer skipped on one rank only (a
branch taken or not depending on the rank's samples) would pair different layers' statistics. Each call
therefore also reduces the layer's position in the model, and a mismatch stops the run naming the layer.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed
from torch.nn.modules.batchnorm import _BatchNorm

from mmbench.errors import UserError


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced gradient: every rank's loss depends on every rank's
    input through the global statistics (torch.distributed.nn.functional.all_reduce, which is deprecated)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone(memory_format=torch.contiguous_format)
        torch.distributed.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone(memory_format=torch.contiguous_format)
        torch.distributed.all_reduce(total)
        return total


class UnevenNormalisation(UserError):
    """Ranks called different normalisation layers at the same point: the model's training computation depends
    on the rank's samples, so global statistics cannot be formed."""


class GlobalBatchNorm(_BatchNorm):
    """A BatchNorm layer (any of 1d/2d/3d) whose training statistics are those of the batch over all ranks.

    Outside training, or without an initialised process group, it is the plain BatchNorm it replaced.
    Running statistics are updated with the global mean and the unbiased global variance, as one process
    would with the whole batch.
    """

    layer_index: int = 0

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def _check_same_layer_everywhere(self, device: torch.device) -> None:
        """A fixed-size first reduction of (index, index^2): the sums are (N i, N i^2) only if every rank is at
        layer i (Cauchy-Schwarz), so a rank at another layer is found before statistics of different sizes
        or of different layers are summed. Every rank sees the same sums and stops together."""
        header = torch.tensor([self.layer_index, self.layer_index**2], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(header)
        index_sum, square_sum = (float(value) for value in header.cpu())
        if index_sum * index_sum != torch.distributed.get_world_size() * square_sum:
            raise UnevenNormalisation(
                f"method.train.sync_batch_norm=true: the ranks ran different BatchNorm layers at once (layer "
                f"{self.layer_index} here): this method's training computation depends on each rank's samples "
                "(a branch some ranks take and others skip), so global statistics cannot be formed; set "
                "method.train.sync_batch_norm=false (docs/distributed.md)"
            )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.distributed.is_available() and torch.distributed.is_initialized()):
            return super().forward(input)
        self._check_input_dim(input)
        channels = input.shape[1]
        self._check_same_layer_everywhere(input.device)
        dims = [0, *range(2, input.dim())]
        # float64 sums: the global variance is E[x^2] - E[x]^2, exact enough only in double precision.
        wide = input.double()
        count = torch.tensor([input.numel() // channels], dtype=torch.float64, device=input.device)
        total = _SumOverRanks.apply(torch.cat([wide.sum(dims), (wide * wide).sum(dims), count]))
        total_count = float(total[-1].detach())
        mean = total[:channels] / total_count
        variance = (total[channels : 2 * channels] / total_count - mean * mean).clamp_min(0.0)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else float(self.momentum)
                unbiased = variance * (total_count / max(total_count - 1.0, 1.0))
                self.running_mean.mul_(1 - momentum).add_(mean.to(self.running_mean.dtype), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased.to(self.running_var.dtype), alpha=momentum)
        shape = [1, channels, *([1] * (input.dim() - 2))]
        scale = torch.rsqrt(variance + self.eps).to(input.dtype).view(shape)
        output = (input - mean.to(input.dtype).view(shape)) * scale
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        return output


def use_global_batch_norm(model: torch.nn.Module) -> int:
    """Replace every BatchNorm of `model` in place by a `GlobalBatchNorm` sharing its parameters and buffers
    (the optimiser's parameters and the checkpoint's keys stay the same); returns how many were replaced."""
    made: dict[int, GlobalBatchNorm] = {}  # a layer registered under two parents stays one layer
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, _BatchNorm) or isinstance(child, GlobalBatchNorm | torch.nn.SyncBatchNorm):
                continue
            if id(child) in made:
                setattr(parent, name, made[id(child)])
                continue
            norm = GlobalBatchNorm(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            if child.affine:
                norm.weight, norm.bias = child.weight, child.bias
            norm.running_mean, norm.running_var = child.running_mean, child.running_var
            norm.num_batches_tracked = child.num_batches_tracked
            norm.training = child.training
            norm.layer_index = len(made) + 1
            made[id(child)] = norm
            setattr(parent, name, norm)
    return len(made)
