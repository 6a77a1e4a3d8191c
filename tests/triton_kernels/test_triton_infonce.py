"""Fused Triton InfoNCE == the PyTorch reference: loss and gradients, odd sizes, both precisions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmbench.kernels import infonce_triton
from mmbench.kernels.psa import cross_modal_infonce
from mmbench.kernels.triton_runtime import interpreter_requested

INTERPRETED = interpreter_requested()


def inputs(n, d, classes, dtype, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(n, d, generator=generator), dim=1).to(dtype).to(device).requires_grad_()
    b = F.normalize(torch.randn(n, d, generator=generator), dim=1).to(dtype).to(device).requires_grad_()
    labels = torch.randint(0, classes, (n,), generator=generator).to(device)
    return a, b, labels


def loss_and_grads(backend, a, b, labels, temperature, stop_grad_keys, scale=1.0, **kwargs):
    if backend == "triton" and kwargs:
        loss = infonce_triton.cross_modal_infonce_triton(
            a, b, labels, temperature, stop_grad_keys=stop_grad_keys, **kwargs
        )
    else:
        loss = cross_modal_infonce(a, b, labels, temperature, stop_grad_keys=stop_grad_keys, backend=backend)
    grads = torch.autograd.grad(loss * scale, (a, b))
    return loss.detach(), grads


TOLERANCE = {torch.float32: {"atol": 2e-5, "rtol": 2e-5}, torch.float16: {"atol": 2e-3, "rtol": 2e-3}}


@pytest.mark.parametrize("n,d,classes", [(1, 3, 1), (17, 20, 3), (45, 64, 45), (100, 33, 1), (129, 16, 6)])
@pytest.mark.parametrize("stop_grad_keys", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_matches_the_reference(device, n, d, classes, stop_grad_keys, dtype):
    a, b, labels = inputs(n, d, classes, dtype, device, seed=n)
    loss, grads = loss_and_grads("triton", a, b, labels, 0.1, stop_grad_keys)
    loss_ref, grads_ref = loss_and_grads("torch", a, b, labels, 0.1, stop_grad_keys)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, loss_ref, atol=1e-5, rtol=1e-5)
    for grad, grad_ref in zip(grads, grads_ref, strict=True):
        assert grad.dtype == dtype
        torch.testing.assert_close(grad, grad_ref, **TOLERANCE[dtype])


@pytest.mark.parametrize("temperature", [0.03, 0.5, 2.0])
def test_temperatures_and_a_non_unit_upstream_gradient(device, temperature):
    a, b, labels = inputs(50, 24, 4, torch.float32, device)
    loss, grads = loss_and_grads("triton", a, b, labels, temperature, False, scale=-3.5)
    loss_ref, grads_ref = loss_and_grads("torch", a, b, labels, temperature, False, scale=-3.5)
    torch.testing.assert_close(loss, loss_ref, atol=1e-5, rtol=1e-5)
    for grad, grad_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(grad, grad_ref, atol=5e-5, rtol=5e-5)


@pytest.mark.parametrize("blocks", [(16, 16), (16, 64), (64, 16), (32, 32)])
def test_block_sizes_change_only_rounding(device, blocks):
    a, b, labels = inputs(77, 40, 5, torch.float32, device, seed=1)
    loss, grads = loss_and_grads("triton", a, b, labels, 0.1, False, blocks=blocks)
    loss_ref, grads_ref = loss_and_grads("torch", a, b, labels, 0.1, False)
    torch.testing.assert_close(loss, loss_ref, atol=1e-5, rtol=1e-5)
    for grad, grad_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(grad, grad_ref, atol=2e-5, rtol=2e-5)


def test_deterministic_gradients(device):
    a, b, labels = inputs(60, 32, 4, torch.float32, device, seed=2)
    runs = [loss_and_grads("triton", a, b, labels, 0.1, False) for _ in range(2)]
    assert torch.equal(runs[0][0], runs[1][0])
    assert all(torch.equal(x, y) for x, y in zip(runs[0][1], runs[1][1], strict=True))


def test_only_the_inputs_that_need_gradients_get_them(device):
    a, b, labels = inputs(20, 16, 3, torch.float32, device)
    b = b.detach()
    loss = cross_modal_infonce(a, b, labels, 0.1, backend="triton")
    (grad_a,) = torch.autograd.grad(loss, a)
    loss_ref = cross_modal_infonce(a, b, labels, 0.1, backend="torch")
    (grad_ref,) = torch.autograd.grad(loss_ref, a)
    torch.testing.assert_close(grad_a, grad_ref, atol=2e-5, rtol=2e-5)


def test_empty_input_is_a_connected_zero(device):
    a, b, labels = inputs(0, 8, 1, torch.float32, device)
    loss = cross_modal_infonce(a, b, labels, 0.1, backend="triton")
    assert float(loss.detach()) == 0.0 and loss.requires_grad


def test_fp64_is_refused_with_the_alternative(device):
    a, b, labels = inputs(4, 8, 2, torch.float64, device)
    with pytest.raises(TypeError, match="backend='torch'"):
        cross_modal_infonce(a, b, labels, 0.1, backend="triton")


def test_bf16(device):
    if INTERPRETED:
        pytest.skip("Triton's interpreter has no bfloat16 (triton docs; bf16 tl.dot multiplies raw bits)")
    a, b, labels = inputs(64, 32, 4, torch.bfloat16, device)
    loss, grads = loss_and_grads("triton", a, b, labels, 0.1, False)
    loss_ref, grads_ref = loss_and_grads("torch", a, b, labels, 0.1, False)
    torch.testing.assert_close(loss, loss_ref, atol=1e-2, rtol=1e-2)
    for grad, grad_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(grad.float(), grad_ref.float(), atol=2e-2, rtol=2e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("tf32", [False, True])
def test_large_n_on_cuda(tf32):
    """N = 8192, d = 256: the paper-scale size, compiled, with TF32 tolerances when torch allows TF32."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        a, b, labels = inputs(8192, 256, 6, torch.float32, torch.device("cuda"))
        loss, grads = loss_and_grads("triton", a, b, labels, 0.1, False)
        loss_ref, grads_ref = loss_and_grads("torch", a, b, labels, 0.1, False)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    tolerance = {"atol": 5e-3, "rtol": 5e-3} if tf32 else {"atol": 1e-4, "rtol": 1e-4}
    torch.testing.assert_close(loss, loss_ref, **tolerance)
    for grad, grad_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(grad, grad_ref, **tolerance)
