"""PSA (Pixel-level Semantic sampling Alignment) operators: the calls the STARS method makes.

Each public function validates its arguments once and then runs the implementation that
`backend` selects. Implementations live in a small table, so the later Triton kernels plug in with
`register_implementation("class_balanced_sample", "triton", fn)` and "auto" starts using them for
CUDA tensors, with no change to callers. A Triton sampler must return exactly what the reference
returns (same keys, same order); a Triton loss must match it to floating-point tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .infonce import cross_modal_infonce_torch
from .sampling import (
    MODES,
    class_balanced_sample_torch,
    counter_keys,
    gather_pixels,
    mix64,
    naive_class_balanced_sample,
    pixel_keys,
    quota,
    select_class_balanced,
    validate_sample_args,
)

__all__ = [
    "BACKENDS",
    "MODES",
    "TRITON_NOT_BUILT",
    "class_balanced_sample",
    "counter_keys",
    "cross_modal_infonce",
    "gather_pixels",
    "mix64",
    "naive_class_balanced_sample",
    "pixel_keys",
    "quota",
    "register_implementation",
    "resolve_backend",
    "select_class_balanced",
]

BACKENDS = ("auto", "torch", "triton")
TRITON_NOT_BUILT = "the Triton kernels are not built yet; use backend='torch'"

_IMPLEMENTATIONS: dict[str, dict[str, Callable[..., object]]] = {
    "class_balanced_sample": {"torch": class_balanced_sample_torch},
    "cross_modal_infonce": {"torch": cross_modal_infonce_torch},
}


def register_implementation(op: str, backend: str, fn: Callable[..., object]) -> None:
    """Install `fn` as `op`'s implementation for `backend` (how the Triton module will plug in)."""
    if op not in _IMPLEMENTATIONS or backend not in BACKENDS or backend == "auto":
        raise ValueError(f"unknown op/backend {op!r}/{backend!r}")
    _IMPLEMENTATIONS[op][backend] = fn


def resolve_backend(op: str, backend: str, device: torch.device) -> Callable[..., object]:
    """The implementation of `op` that `backend` names; "auto" prefers Triton on CUDA once it exists."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    implementations = _IMPLEMENTATIONS[op]
    if backend == "auto":
        backend = "triton" if device.type == "cuda" and "triton" in implementations else "torch"
    if backend not in implementations:
        raise NotImplementedError(TRITON_NOT_BUILT)
    return implementations[backend]


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
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Class-balanced pixel sample: (flat indices into `labels.reshape(-1)`, their labels), both int64.

    Present classes have >= `min_pixels` non-ignored pixels; each gets the quota
    K = min(max_views, max_samples // number of present classes). A class with n_c >= K gives K
    pixels drawn uniformly without replacement. With n_c < K: mode "all" takes all n_c, "replace"
    draws K with replacement (fixed K per class), "drop" drops the class (ContrastiveSeg's rule is
    mode "drop" with `min_pixels = max_views + 1`). Ignored pixels are never selected; labels other
    than `ignore_index` must lie in [0, num_classes).

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
    Computed in fp32 whatever the input precision (fp64 inputs stay fp64); returns a scalar. With
    N == 0 it returns a zero that is still connected to the inputs' graph.
    """
    _validate_infonce_args(z_a, z_b, labels, temperature)
    implementation = resolve_backend("cross_modal_infonce", backend, z_a.device)
    return implementation(z_a, z_b, labels, float(temperature), stop_grad_keys=stop_grad_keys)  # type: ignore[return-value]
