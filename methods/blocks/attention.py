"""One attention entry point for every method: xformers' memory-efficient kernel on CUDA when it is
installed, PyTorch's `scaled_dot_product_attention` otherwise.

Methods call `attention(q, k, v)` with (B, heads, L, D) tensors and never import xformers themselves,
so a model runs unchanged on a CPU laptop, a CUDA box without xformers, and one with it; the choice
is made per call by `attention_backend` (tests check the decision and the CPU path). A per-sample key
mask (to leave a missing modality's tokens out) is supported and always runs through SDPA; dropout is
not offered, as no method in the benchmark uses it.
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
    """ "xformers" for CUDA tensors when xformers is installed (fp16/bf16/fp32), else "sdpa"."""
    if device.type == "cuda" and xformers_installed() and dtype in (torch.float16, torch.bfloat16, torch.float32):
        return "xformers"
    return "sdpa"


def attention(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None = None) -> Tensor:
    """softmax(q k^T / sqrt(D)) v for (B, heads, L, D) tensors; returns (B, heads, L_q, D).

    `key_mask` (B, L_k) bool, True = attend, excludes keys per sample (a missing modality's tokens).
    Masked calls always take the SDPA path; every row must keep at least one key.
    """
    if key_mask is not None:
        keep = key_mask[:, None, :, None]
        k, v = torch.where(keep, k, 0.0), torch.where(keep, v, 0.0)  # 0 * NaN would still be NaN
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
    if attention_backend(q.device, q.dtype) == "xformers":
        import xformers.ops as xops

        # xformers takes (B, L, heads, D)
        out = xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v)


class MultiHeadAttention(nn.Module):
    """Self-attention over token sequences (B, L, C) through `attention`."""

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


class CrossAttention(nn.Module):
    """Queries (B, Lq, Cq) attend to a context (B, Lk, Ck), optionally masking context tokens per sample."""

    def __init__(self, query_channels: int, context_channels: int, channels: int, heads: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.q = nn.Linear(query_channels, channels)
        self.kv = nn.Linear(context_channels, 2 * channels)
        self.out = nn.Linear(channels, query_channels)

    def forward(self, queries: Tensor, context: Tensor, key_mask: Tensor | None = None) -> Tensor:
        batch, length, _ = queries.shape
        heads, channels = self.heads, self.q.out_features
        q = self.q(queries).reshape(batch, length, heads, channels // heads).transpose(1, 2)
        k, v = self.kv(context).reshape(batch, context.shape[1], 2, heads, channels // heads).permute(2, 0, 3, 1, 4)
        return self.out(attention(q, k, v, key_mask).transpose(1, 2).reshape(batch, length, channels))


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
