"""Triton gather == indexing, exactly; its backward == autograd of indexing, and bit-reproducible."""

from __future__ import annotations

import pytest
import torch

from mmbench.kernels.psa import gather_pixels


def nchw(shape, dtype, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator).to(dtype).to(device).requires_grad_()


LAYOUTS = {
    "permuted NCHW view": lambda x: x.permute(0, 2, 3, 1),
    "channels-last copy": lambda x: x.permute(0, 2, 3, 1).contiguous(),
    "flat rows": lambda x: x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]),
    "3-d (B, HW, C)": lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1]),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("channels", [1, 5, 130])  # 130 > one channel block of 128
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("repeats", [False, True])
def test_forward_and_backward_match_indexing(device, layout, channels, dtype, repeats):
    x = nchw((2, channels, 7, 9), dtype, device)
    view = LAYOUTS[layout](x)
    generator = torch.Generator().manual_seed(channels)
    pixels = 2 * 7 * 9
    indices = (
        torch.randint(0, pixels, (45,), generator=generator)
        if repeats
        else torch.randperm(pixels, generator=generator)[:45]
    ).to(device)
    out = gather_pixels(view, indices, backend="triton")
    expected = gather_pixels(view, indices, backend="torch")
    assert out.shape == (45, channels) and out.dtype == dtype
    assert torch.equal(out, expected)
    upstream = torch.randn(45, channels, generator=generator).to(dtype).to(device)
    (grad,) = torch.autograd.grad(out, x, upstream)
    (grad_ref,) = torch.autograd.grad(expected, x, upstream)
    tolerance = {
        torch.float16: {"atol": 2e-3, "rtol": 2e-3},
        torch.float32: {"atol": 1e-6, "rtol": 1e-6},
        torch.float64: {"atol": 1e-12, "rtol": 1e-12},
    }[dtype]  # fp64 accumulates in fp64
    torch.testing.assert_close(grad, grad_ref, **tolerance)  # fp32 sums of repeats vs the reference's order


def test_backward_is_bit_reproducible_with_repeats(device):
    x = nchw((1, 16, 8, 8), torch.float32, device)
    indices = torch.tensor([5, 5, 5, 0, 63, 5, 0] * 9, device=device)
    upstream = torch.randn(indices.numel(), 16).to(device)
    grads = [
        torch.autograd.grad(gather_pixels(x.permute(0, 2, 3, 1), indices, backend="triton"), x, upstream)[0]
        for _ in range(3)
    ]
    assert all(torch.equal(grads[0], g) for g in grads[1:])
    expected = torch.zeros(64, 16, device=device).index_add_(0, indices, upstream)
    torch.testing.assert_close(grads[0].permute(0, 2, 3, 1).reshape(64, 16), expected)


def test_gradient_keeps_the_input_layout(device):
    x = nchw((2, 3, 4, 5), torch.float32, device)
    (grad,) = torch.autograd.grad(
        gather_pixels(x.permute(0, 2, 3, 1), torch.arange(7, device=device), backend="triton").sum(), x
    )
    assert grad.stride() == x.stride()


def test_empty_indices(device):
    x = nchw((1, 4, 3, 3), torch.float32, device)
    out = gather_pixels(x.permute(0, 2, 3, 1), torch.zeros(0, dtype=torch.int64, device=device), backend="triton")
    assert out.shape == (0, 4)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(grad, torch.zeros_like(x))


def test_no_read_outside_the_sampled_rows(device):
    """Poisoned neighbours: a kernel that read past a row or a channel block would return NaN."""
    padded = torch.full((10, 40), float("nan"), device=device)
    padded[:, :37] = torch.randn(10, 37).to(device)
    rows = padded[:, :37]  # stride 40: channels 37..39 are NaN, one step past the last real channel
    out = gather_pixels(rows, torch.tensor([9, 0, 4], device=device), backend="triton")
    assert not bool(out.isnan().any())
    assert torch.equal(out, rows[[9, 0, 4]])


@pytest.mark.gpu
def test_paper_scale_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    x = torch.randn(8, 256, 128, 128, device="cuda", requires_grad=True)
    indices = torch.randint(0, 8 * 128 * 128, (4096,), device="cuda")
    out = gather_pixels(x.permute(0, 2, 3, 1), indices, backend="triton")
    assert torch.equal(out, gather_pixels(x.permute(0, 2, 3, 1), indices, backend="torch"))
    (grad,) = torch.autograd.grad(out.sum(), x)
    (grad_ref,) = torch.autograd.grad(gather_pixels(x.permute(0, 2, 3, 1), indices, backend="torch").sum(), x)
    torch.testing.assert_close(grad, grad_ref)
