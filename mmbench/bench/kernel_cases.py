"""What `mmbench bench kernels` and `benchmarks/test_kernels.py` time: problems, inputs and providers.

One module for both, so the CLI, pytest-benchmark and the tests import the same references. Each
problem builds its inputs once and returns one zero-argument callable per provider:

- naive:     the pixel-contrast style of `naive.py` / `naive_class_balanced_sample` (loops, masks)
- reference: the vectorised PyTorch references (what runs on CPU in training)
- compile:   `torch.compile` of the reference (Inductor C++ on CPU, Triton on GPU)
- triton:    the Triton kernels, CUDA only (interpreter timings mean nothing and are never taken)

Ops: "sample", "gather", "infonce" (PSA), and "confusion" (the evaluation engine's argmax +
confusion-matrix update, fused in Triton).

Gather and loss problems time forward + backward, as training runs them. Each problem also states
the bytes the operation must move at least (its memory-traffic floor) and, for the loss, the useful
FLOPs, so the harness can express a time as a fraction of the machine's copy bandwidth.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mmbench.kernels.infonce import cross_modal_infonce_torch
from mmbench.kernels.naive import naive_cross_modal_infonce, naive_gather_pixels
from mmbench.kernels.sampling import class_balanced_sample_torch, gather_pixels_torch, naive_class_balanced_sample

PROVIDERS = ("naive", "reference", "compile", "triton")
OPS = ("sample", "gather", "infonce", "confusion")
IGNORE = 255
CLASS_SHARES = (0.35, 0.25, 0.18, 0.12, 0.07, 0.03)  # skewed, like land cover: the reason to balance


@dataclass(frozen=True)
class Problem:
    op: str
    size: str  # "default" (the CPU training config of STARS) or "paper" (B=8, C=256, 128 x 128)
    name: str
    params: dict[str, Any] = field(default_factory=dict)


def _default(op: str, name: str, **params: Any) -> Problem:
    return Problem(op, "default", name, params)


def _paper(op: str, name: str, **params: Any) -> Problem:
    return Problem(op, "paper", name, params)


# Default sizes: STARS' CPU config (batch 8, 96 px crops, stride-4 embeddings = 24 x 24, d = 64,
# 6 classes, max_samples 1024, max_views 100 -> N = 600 per modality). "per-image" rows use
# ContrastiveSeg's rule (a quota per (image, class) pair), the setting its loops over images are for.
PROBLEMS: tuple[Problem, ...] = (
    _default("sample", "B8 24x24 K6 q100", batch=8, side=24, classes=6, max_samples=1024, max_views=100),
    _default(
        "sample", "B8 24x24 K6 per-image", batch=8, side=24, classes=6, max_samples=1024, max_views=100, per_image=True
    ),
    _default("gather", "B8 C64 24x24 N600", batch=8, side=24, channels=64, classes=6, max_samples=1024, max_views=100),
    _default("infonce", "N600 d64", n=600, dims=64, classes=6),
    _default("confusion", "B8 K6 192x192", batch=8, side=192, classes=6),  # synthetic test tiles
    _paper("sample", "B8 128x128 K6 q100", batch=8, side=128, classes=6, max_samples=8192, max_views=100),
    _paper("sample", "B8 128x128 K6 q1024", batch=8, side=128, classes=6, max_samples=8192, max_views=1024),
    _paper(
        "sample",
        "B8 128x128 K6 per-image",
        batch=8,
        side=128,
        classes=6,
        max_samples=1024,
        max_views=100,
        per_image=True,
    ),
    _paper(
        "gather", "B8 C256 128x128 N4096", batch=8, side=128, channels=256, classes=6, max_samples=4096, max_views=1024
    ),
    _paper("infonce", "N1024 d256", n=1024, dims=256, classes=6),
    _paper("infonce", "N4096 d256", n=4096, dims=256, classes=6),
    _paper("infonce", "N8192 d256", n=8192, dims=256, classes=6),
    _paper("confusion", "B8 K6 512x512", batch=8, side=512, classes=6),  # ISPRS-style 512 px windows
)


@dataclass
class Workload:
    """Inputs built once; `calls[provider]()` runs the operation (and its backward, where it has one)."""

    calls: dict[str, Callable[[], object]]
    bytes_moved: int  # the floor: what any implementation must read and write
    flops: int | None = None  # useful FLOPs (loss only)
    info: dict[str, Any] = field(default_factory=dict)


def benchmark_labels(batch: int, side: int, classes: int, device: torch.device | str, seed: int = 0) -> Tensor:
    """Blocky land-cover-like labels: 8 x 8 blobs of skewed class frequencies and 2 % ignored pixels."""
    generator = torch.Generator().manual_seed(seed)
    shares = torch.tensor(CLASS_SHARES[:classes] if classes <= len(CLASS_SHARES) else [1.0] * classes)
    coarse_side = max(1, side // 8)
    coarse = torch.multinomial(shares / shares.sum(), batch * coarse_side**2, replacement=True, generator=generator)
    coarse = coarse.reshape(batch, 1, coarse_side, coarse_side).float()
    labels = F.interpolate(coarse, size=(side, side), mode="nearest")[:, 0].long()
    labels[torch.rand(labels.shape, generator=generator) < 0.02] = IGNORE
    return labels.to(device)


def _sample_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "max_samples": params["max_samples"],
        "max_views": params["max_views"],
        "min_pixels": 2,
        "seed": 7,
        "ignore_index": IGNORE,
        "mode": "all",
        "per_image": params.get("per_image", False),
    }


def _triton(op: str) -> Callable[..., Any]:
    if op == "sample":
        from mmbench.kernels.sampling_triton import class_balanced_sample_triton

        return class_balanced_sample_triton
    if op == "gather":
        from mmbench.kernels.gather_triton import gather_pixels_triton

        return gather_pixels_triton
    if op == "confusion":
        from mmbench.kernels.confusion_triton import confusion_counts

        return confusion_counts
    from mmbench.kernels.infonce_triton import cross_modal_infonce_triton

    return cross_modal_infonce_triton


def _compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    return torch.compile(fn, dynamic=False)


def _sample_workload(params: dict[str, Any], device: torch.device, providers: tuple[str, ...]) -> Workload:
    labels = benchmark_labels(params["batch"], params["side"], params["classes"], device)
    kwargs = _sample_kwargs(params)
    num_classes = params["classes"]
    implementations: dict[str, Callable[..., Any]] = {
        "naive": naive_class_balanced_sample,
        "reference": class_balanced_sample_torch,
    }
    if "compile" in providers:
        implementations["compile"] = _compiled(class_balanced_sample_torch)
    if "triton" in providers:
        implementations["triton"] = _triton("sample")
    indices, _ = class_balanced_sample_torch(labels, num_classes, **kwargs)
    calls: dict[str, Callable[[], object]] = {
        name: functools.partial(fn, labels, num_classes, **kwargs) for name, fn in implementations.items()
    }
    moved = labels.numel() * labels.element_size() + 2 * indices.numel() * 8
    return Workload(calls, moved, info={"pixels": labels.numel(), "samples": indices.numel()})


def _backward(
    fn: Callable[[], Tensor], inputs: tuple[Tensor, ...], upstream: Tensor | None = None
) -> Callable[[], object]:
    def run() -> object:
        out = fn()
        return torch.autograd.grad(out, inputs, upstream)

    return run


def _gather_workload(params: dict[str, Any], device: torch.device, providers: tuple[str, ...]) -> Workload:
    batch, side, channels = params["batch"], params["side"], params["channels"]
    labels = benchmark_labels(batch, side, params["classes"], device)
    indices, sampled = class_balanced_sample_torch(labels, params["classes"], **_sample_kwargs(params))
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(batch, channels, side, side, generator=generator).to(device).requires_grad_()
    upstream = torch.randn(indices.numel(), channels, generator=generator).to(device)
    implementations: dict[str, Callable[..., Any]] = {"reference": gather_pixels_torch}
    if "compile" in providers:
        implementations["compile"] = _compiled(gather_pixels_torch)
    if "triton" in providers:
        implementations["triton"] = _triton("gather")
    calls = {
        name: _backward(functools.partial(fn, features.permute(0, 2, 3, 1), indices), (features,), upstream)
        for name, fn in implementations.items()
    }
    calls["naive"] = _backward(
        lambda: naive_gather_pixels(features.permute(0, 2, 3, 1), indices, sampled), (features,), upstream
    )
    row_bytes = indices.numel() * channels * features.element_size()
    dense = features.numel() * features.element_size()
    moved = 2 * row_bytes + indices.numel() * 8 + row_bytes + dense  # forward rows in/out; backward rows in, dense out
    return Workload(calls, moved, info={"samples": indices.numel(), "feature_bytes": dense})


def infonce_inputs(
    n: int, dims: int, classes: int, device: torch.device | str, dtype: torch.dtype = torch.float32, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(n, dims, generator=generator), dim=1).to(device=device, dtype=dtype)
    b = F.normalize(torch.randn(n, dims, generator=generator), dim=1).to(device=device, dtype=dtype)
    labels = torch.randint(0, classes, (n,), generator=generator).to(device)
    return a.requires_grad_(), b.requires_grad_(), labels


def _infonce_workload(params: dict[str, Any], device: torch.device, providers: tuple[str, ...]) -> Workload:
    n, dims = params["n"], params["dims"]
    a, b, labels = infonce_inputs(n, dims, params["classes"], device)
    implementations: dict[str, Callable[..., Any]] = {
        "naive": naive_cross_modal_infonce,
        "reference": cross_modal_infonce_torch,
    }
    if "compile" in providers:
        implementations["compile"] = _compiled(cross_modal_infonce_torch)
    if "triton" in providers:
        implementations["triton"] = _triton("infonce")
    calls = {name: _backward(functools.partial(fn, a, b, labels, 0.1), (a, b)) for name, fn in implementations.items()}
    moved = 4 * n * dims * a.element_size()  # read a and b, write their gradients
    flops = 6 * n * n * dims  # logits (2 N^2 d) forward, two N^2 d matmuls backward: the materialised minimum
    return Workload(calls, moved, flops, info={"n": n, "dims": dims})


def naive_confusion(logits: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """The `fast_hist` of FCN-era segmentation code: argmax, boolean-mask both maps, bincount."""
    prediction = logits.argmax(1)
    keep = (target >= 0) & (target < num_classes)
    return torch.bincount(num_classes * target[keep] + prediction[keep], minlength=num_classes**2)


def reference_confusion(logits: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """What the evaluation engine runs without CUDA: `ConfusionMatrix.update(logits.max(1).indices, target)`."""
    from mmbench.evaluation.metrics import ConfusionMatrix

    matrix = ConfusionMatrix(num_classes, ignore_index=IGNORE, device=logits.device)
    matrix.update_from_logits(logits, target, backend="torch")
    return matrix.matrix


def _confusion_workload(params: dict[str, Any], device: torch.device, providers: tuple[str, ...]) -> Workload:
    batch, side, classes = params["batch"], params["side"], params["classes"]
    target = benchmark_labels(batch, side, classes, device)
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(batch, classes, side, side, generator=generator).to(device)
    implementations: dict[str, Callable[..., Any]] = {"naive": naive_confusion, "reference": reference_confusion}
    if "compile" in providers:
        implementations["compile"] = _compiled(reference_confusion)
    calls: dict[str, Callable[[], object]] = {
        name: functools.partial(fn, logits, target, classes) for name, fn in implementations.items()
    }
    if "triton" in providers:
        counts = _triton("confusion")
        calls["triton"] = lambda: counts(logits, target, classes, IGNORE)
    moved = logits.numel() * logits.element_size() + target.numel() * target.element_size()
    return Workload(calls, moved, info={"pixels": target.numel()})


BUILDERS: dict[str, Callable[[dict[str, Any], torch.device, tuple[str, ...]], Workload]] = {
    "sample": _sample_workload,
    "gather": _gather_workload,
    "infonce": _infonce_workload,
    "confusion": _confusion_workload,
}


def available_providers(device: torch.device) -> tuple[str, ...]:
    """Triton is timed only compiled on CUDA; everything else runs anywhere."""
    return PROVIDERS if device.type == "cuda" else PROVIDERS[:3]


def build_workload(problem: Problem, device: torch.device, providers: tuple[str, ...]) -> Workload:
    workload = BUILDERS[problem.op](problem.params, device, providers)
    workload.calls = {name: call for name, call in workload.calls.items() if name in providers}
    return workload


def select_problems(sizes: tuple[str, ...], ops: tuple[str, ...]) -> list[Problem]:
    return [problem for problem in PROBLEMS if problem.size in sizes and problem.op in ops]
