"""The CPU InfoNCE (`kernels/infonce_cpu.py`) against the PyTorch reference, forward + backward, under pytest-benchmark.

Run: `pytest benchmarks/test_infonce_cpu.py --benchmark-only --benchmark-group-by=group`

One STARS CPU-recipe term: N = 600 unit vectors per modality, d = 64, 6 classes, T = 0.1, fp32, one
thread (`torch.set_num_threads(1)`, restored afterwards), as in the training workers. Three ways the
model calls it: keys trained (the full-branch pairs), `stop_grad_keys=True`, and a detached key side
(the missing-branch terms pass the real embedding detached). Each round is one forward and one
backward with fresh gradients; compare the `min` column on a shared machine, which other processes
disturb least.
"""

from __future__ import annotations

import pytest
import torch

from mmbench.kernels.infonce import cross_modal_infonce_torch
from mmbench.kernels.infonce_cpu import cross_modal_infonce_cpu

N, D, CLASSES, TEMPERATURE = 600, 64, 6, 0.1
PROVIDERS = {"reference": cross_modal_infonce_torch, "cpu": cross_modal_infonce_cpu}
KEYS = ("trained", "stop-grad-keys", "detached-input")


@pytest.mark.parametrize("keys", KEYS)
@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_infonce_forward_backward(benchmark, one_thread, provider, keys):
    generator = torch.Generator().manual_seed(0)
    z_a = torch.nn.functional.normalize(torch.randn(N, D, generator=generator), dim=1).requires_grad_(True)
    z_b = torch.nn.functional.normalize(torch.randn(N, D, generator=generator), dim=1)
    z_b.requires_grad_(keys != "detached-input")
    labels = torch.randint(0, CLASSES, (N,), generator=generator)
    loss_fn = PROVIDERS[provider]

    def forward_backward() -> None:
        z_a.grad = z_b.grad = None
        loss_fn(z_a, z_b, labels, TEMPERATURE, stop_grad_keys=keys == "stop-grad-keys").backward()

    forward_backward()
    benchmark.group = f"infonce N={N} d={D} keys {keys}"
    benchmark.extra_info.update({"provider": provider, "keys": keys, "n": N, "d": D, "threads": 1})
    benchmark.pedantic(forward_backward, rounds=40, iterations=1, warmup_rounds=3)
