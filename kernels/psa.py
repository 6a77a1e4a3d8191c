"""PSA (Pixel-level Semantic sampling Alignment) operators: the calls the STARS method makes.

Each public function validates its arguments once and then runs the implementation that
`backend` selects: "torch" (the PyTorch references in `sampling.py` / `infonce.py`), "triton" (the
kernels in `*_triton.py`, imported on first use), "cpu" (the CPU loss of `infonce_cpu.py`, a fused
autograd function; the references for the other ops) or "auto" (Triton for CUDA tensors, `AUTO_ON_CPU`
otherwise). The Triton sampler returns exactly what the reference returns (same keys, same order);
the Triton gather is exact; the Triton and CPU losses match the reference to floating-point tolerance.
Third parties can swap an implementation with `register_implementation`.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable

import torch
from torch import Tensor

from .infonce import cross_modal_infonce_torch
from .infonce_cpu import cross_modal_infonce_cpu
from .sampling import (
    MODES,
    class_balanced_sample_torch,
    counter_keys,
    gather_pixels_torch,
    hard_easy_sample_torch,
    mix64,
    naive_class_balanced_sample,
    pixel_keys,
    quota,
    select_class_balanced,
    validate_sample_args,
)
from .triton_runtime import triton_available

__all__ = [
    "AUTO_ON_CPU",
    "BACKENDS",
    "MODES",
    "class_balanced_sample",
    "counter_keys",
    "cross_modal_infonce",
    "gather_pixels",
    "hard_easy_sample",
    "mix64",
    "naive_class_balanced_sample",
    "pixel_keys",
    "quota",
    "register_implementation",
    "resolve_backend",
    "select_class_balanced",
]

BACKENDS = ("auto", "torch", "triton", "cpu")
# What "auto" runs on CPU tensors: the fused CPU loss (same numbers as the reference to float rounding,
# tests/test_infonce_cpu.py), which keeps STARS' PSA within its cost budget (docs/kernels.md).
AUTO_ON_CPU = "cpu"

# The Triton modules import triton at module level, so they are imported only when first chosen.
_TRITON_MODULES = {
    "class_balanced_sample": "mmbench.kernels.sampling_triton:class_balanced_sample_triton",
    "cross_modal_infonce": "mmbench.kernels.infonce_triton:cross_modal_infonce_triton",
    "gather_pixels": "mmbench.kernels.gather_triton:gather_pixels_triton",
}
_IMPLEMENTATIONS: dict[str, dict[str, Callable[..., object]]] = {
    "class_balanced_sample": {"torch": class_balanced_sample_torch, "cpu": class_balanced_sample_torch},
    "cross_modal_infonce": {"torch": cross_modal_infonce_torch, "cpu": cross_modal_infonce_cpu},
    "gather_pixels": {"torch": gather_pixels_torch, "cpu": gather_pixels_torch},
}


def register_implementation(op: str, backend: str, fn: Callable[..., object]) -> None:
    """Install `fn` as `op`'s implementation for `backend` (replaces the built-in one)."""
    if op not in _IMPLEMENTATIONS or backend not in BACKENDS or backend == "auto":
        raise ValueError(f"unknown op/backend {op!r}/{backend!r}")
    _IMPLEMENTATIONS[op][backend] = fn


def _load_triton(op: str) -> Callable[..., object]:
    if "triton" not in _IMPLEMENTATIONS[op]:
        if not triton_available():
            raise RuntimeError(f"backend='triton' for {op} needs the triton package (Linux); use backend='torch'")
        module_name, _, attribute = _TRITON_MODULES[op].partition(":")
        _IMPLEMENTATIONS[op]["triton"] = getattr(importlib.import_module(module_name), attribute)
    return _IMPLEMENTATIONS[op]["triton"]


def resolve_backend(op: str, backend: str, device: torch.device) -> Callable[..., object]:
    """The implementation of `op` that `backend` names; "auto" is Triton for CUDA tensors, else `AUTO_ON_CPU`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if device.type == "cuda":
            backend = "triton" if triton_available() else "torch"
        else:
            backend = AUTO_ON_CPU
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(f"backend='cpu' runs on CPU tensors only, got {device.type}; use 'auto', 'torch' or 'triton'")
    if backend == "triton":
        return _load_triton(op)
    return _IMPLEMENTATIONS[op][backend]


def class_balanced_sample(
    labels: Tensor,
    num_classes: int,
    *,
    max_samples: int = 1024,
    max_views: int = 100,
    min_pixels: int = 2,
    seed: int = 0,
    ignore_index: int = 255,
    mode: str = "all",
    per_image: bool = False,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Class-balanced pixel sample: (flat indices into `labels.reshape(-1)`, their labels), both int64.

    Present classes have >= `min_pixels` non-ignored pixels; each gets the quota
    K = min(max_views, max_samples // number of present classes). A class with n_c >= K gives K
    pixels drawn uniformly without replacement. With n_c < K: mode "all" takes all n_c, "replace"
    draws K with replacement (fixed K per class), "drop" drops the class (ContrastiveSeg's rule is
    mode "drop" with `min_pixels = max_views + 1`). Ignored pixels are never selected; labels other
    than `ignore_index` must lie in [0, num_classes). With `per_image=True` ((B, H, W) labels) every
    (image, class) pair is a group with its own quota, K = min(max_views, max_samples // present
    pairs), which is ContrastiveSeg's rule; otherwise one quota per class over the whole batch.

    Deterministic and order-free: pixels are chosen by counter-based keys of (seed, flat pixel id),
    so the same seed gives the same indices on every device and block layout, different seeds give
    different draws, and the global RNG is untouched. Pass a seed derived from (run seed, step).
    Output is sorted by (class, index); empty int64 tensors when no class is present.
    """
    validate_sample_args(labels, num_classes, max_samples, max_views, min_pixels, seed, mode)
    implementation = resolve_backend("class_balanced_sample", backend, labels.device)
    return implementation(  # type: ignore[return-value]
        labels,
        num_classes,
        max_samples=max_samples,
        max_views=max_views,
        min_pixels=min_pixels,
        seed=seed,
        ignore_index=ignore_index,
        mode=mode,
        per_image=per_image,
    )


def _validate_infonce_args(z_a: Tensor, z_b: Tensor, labels: Tensor, temperature: float) -> None:
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise ValueError(f"z_a and z_b must both be (N, d), got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    if not (z_a.is_floating_point() and z_b.is_floating_point()):
        raise TypeError(f"z_a and z_b must be floating point, got {z_a.dtype} and {z_b.dtype}")
    if labels.shape != z_a.shape[:1]:
        raise ValueError(f"labels must be ({z_a.shape[0]},), got {tuple(labels.shape)}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")


def cross_modal_infonce(
    z_a: Tensor,
    z_b: Tensor,
    labels: Tensor,
    temperature: float = 0.1,
    *,
    stop_grad_keys: bool = False,
    backend: str = "auto",
) -> Tensor:
    """Supervised InfoNCE between paired modality embeddings, averaged over both directions.

    L_{A->B} = -(1/N) sum_i (1/|P(i)|) sum_{p in P(i)} log softmax_k(z_a[i].z_b[k] / T)[p], with
    P(i) = {p : labels[p] == labels[i]} (i included); L = (L_{A->B} + L_{B->A}) / 2. Inputs are
    taken as already L2-normalised. `stop_grad_keys` detaches the keys (z_b in A->B, z_a in B->A).
    Computed in fp32 whatever the input precision (fp64 inputs stay fp64 and always use the
    reference; backend="triton" refuses them); returns a scalar. With
    N == 0 it returns a zero that is still connected to the inputs' graph.
    """
    _validate_infonce_args(z_a, z_b, labels, temperature)
    if backend == "auto" and torch.float64 in (z_a.dtype, z_b.dtype):
        backend = "torch"  # the fused kernel computes in fp32; fp64 (gradcheck) stays on the reference
    implementation = resolve_backend("cross_modal_infonce", backend, z_a.device)
    return implementation(z_a, z_b, labels, float(temperature), stop_grad_keys=stop_grad_keys)  # type: ignore[return-value]


def gather_pixels(features: Tensor, indices: Tensor, *, backend: str = "auto") -> Tensor:
    """Rows of channels-last `features` (..., C) at flat pixel `indices`: (N, C), differentiable.

    Repeated indices (mode "replace") add their gradients. NCHW features are passed as
    `x.permute(0, 2, 3, 1)`: the reference copies that view once; the Triton kernel reads it in
    place through its strides. The Triton backward is deterministic (no float atomics); the
    reference's is on CPU, and on CUDA under `torch.use_deterministic_algorithms(True)`.
    """
    if features.ndim < 1:
        raise ValueError("features must have a trailing channel dimension")
    if indices.ndim != 1 or indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise ValueError(f"indices must be a 1-D integer tensor, got {tuple(indices.shape)} {indices.dtype}")
    implementation = resolve_backend("gather_pixels", backend, features.device)
    return implementation(features, indices)  # type: ignore[return-value]


def hard_easy_sample(
    labels: Tensor,
    hard: Tensor,
    num_classes: int,
    *,
    max_samples: int = 1024,
    max_views: int = 100,
    min_pixels: int = 2,
    seed: int = 0,
    ignore_index: int = 255,
) -> tuple[Tensor, Tensor]:
    """Class-balanced sample with ContrastiveSeg's half-hard / half-easy anchors per class.

    `hard` (bool, shaped like `labels`) marks the pixels the network misclassifies. Same quota,
    seeding and output order as `class_balanced_sample` (mode "all"); see
    `sampling.hard_easy_sample_torch` for the split rule. PyTorch only (no Triton kernel): it runs
    only when `method.psa.anchors: hard-easy` asks for it.
    """
    validate_sample_args(labels, num_classes, max_samples, max_views, min_pixels, seed, "all")
    return hard_easy_sample_torch(
        labels,
        hard,
        num_classes,
        max_samples=max_samples,
        max_views=max_views,
        min_pixels=min_pixels,
        seed=seed,
        ignore_index=ignore_index,
    )
