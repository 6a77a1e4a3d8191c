"""One attention entry point for every method: xformers' memory-efficient kernel on CUDA when it is
installed, PyTorch's `scaled_dot_product_attention` otherwise.

Methods call `attention(q, k, v)` with (B, heads, L, D) tensors and never import xformers themselves,
so a model runs unchanged on a CPU laptop, a CUDA box without xformers, and one with it; the choice
is made per call by `attention_backend` (tests check the decision and the CPU path). Dropout and
masks are not offered: the transformers in the benchmark's methods use neither.
"""

from __future__ import annotations

import functools
import importlib.util

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@functools.lru_cache(maxsize=1)
def xformers_installed() -> bool:
    return importlib.util.find_spec("xformers") is not None


def attention_backend(device: torch.device, dtype: torch.dtype) -> str:
    """"xformers" for CUDA tensors when xformers is installed (fp16/bf16/fp32), else "sdpa"."""
    if device.type == "cuda" and xformers_installed() and dtype in (torch.float16, torch.bfloat16, torch.float32):
        return "xformers"
    return "sdpa"


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(D)) v for (B, heads, L, D) tensors; returns (B, heads, L_q, D)."""
    if attention_backend(q.device, q.dtype) == "xformers":
        import xformers.ops as xops

        # xformers takes (B, L, heads, D)
        out = xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v)


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention over token sequences (B, L, C) through `attention`."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, channels = x.shape
        q, k, v = self.qkv(x).reshape(batch, length, 3, self.heads, channels // self.heads).permute(2, 0, 3, 1, 4)
        return self.out(attention(q, k, v).transpose(1, 2).reshape(batch, length, channels))


class TransformerBlock(nn.Module):
    """Pre-norm transformer layer (LayerNorm -> attention -> residual, LayerNorm -> MLP -> residual)."""

    def __init__(self, channels: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(channels)
        self.attn = MultiHeadAttention(channels, heads)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, mlp), nn.GELU(), nn.Linear(mlp, channels))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
