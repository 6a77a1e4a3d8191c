"""The attention helper: SDPA on CPU (checked against the formula), xformers chosen only on CUDA."""

from __future__ import annotations

import math

import pytest
import torch

from mmbench.methods.blocks import attention as attention_module
from mmbench.methods.blocks.attention import (
    CrossAttention,
    MultiHeadAttention,
    TransformerBlock,
    attention,
    attention_backend,
)


def test_cpu_path_is_softmax_attention():
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=generator) for _ in range(3))
    expected = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1) @ v
    torch.testing.assert_close(attention(q, k, v), expected, atol=1e-5, rtol=1e-5)


def test_key_mask_drops_keys_per_sample():
    generator = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, 3, 4, generator=generator) for _ in range(3))
    keep = torch.tensor([[True, True, False, False, True], [True, False, False, False, False]])
    k5, v5 = torch.randn(2, 2, 5, 4, generator=generator), torch.randn(2, 2, 5, 4, generator=generator)
    masked = attention(q, k5, v5, key_mask=keep)
    for row in range(2):
        kept = keep[row]
        expected = attention(q[row : row + 1], k5[row : row + 1, :, kept], v5[row : row + 1, :, kept])
        torch.testing.assert_close(masked[row : row + 1], expected, atol=1e-5, rtol=1e-5)
    poisoned = v5.clone()
    poisoned[~keep[:, None, :, None].expand_as(poisoned)] = float("nan")
    assert bool(torch.isfinite(attention(q, k5, poisoned, key_mask=keep)).all())  # masked values never read


def test_dispatch_decision(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(attention_module, "xformers_installed", lambda: True)
    assert attention_backend(cpu, torch.float32) == "sdpa"
    assert attention_backend(cuda, torch.float16) == "xformers"
    assert attention_backend(cuda, torch.float64) == "sdpa"  # xformers has no fp64 kernels
    monkeypatch.setattr(attention_module, "xformers_installed", lambda: False)
    assert attention_backend(cuda, torch.float16) == "sdpa"


def test_blocks_keep_shape_and_learn():
    block = TransformerBlock(16, heads=4, mlp=32)
    x = torch.randn(2, 7, 16, requires_grad=True)
    out = block(x)
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, heads=4)
    cross = CrossAttention(16, 8, 12, heads=3)
    assert cross(torch.randn(2, 5, 16), torch.randn(2, 9, 8), torch.ones(2, 9, dtype=torch.bool)).shape == (2, 5, 16)


@pytest.mark.gpu
def test_cuda_path_matches_sdpa():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    q, k, v = (torch.randn(2, 4, 64, 32, device="cuda", dtype=torch.float16) for _ in range(3))
    torch.testing.assert_close(
        attention(q, k, v), torch.nn.functional.scaled_dot_product_attention(q, k, v), atol=2e-3, rtol=2e-3
    )
