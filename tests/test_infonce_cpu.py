"""The CPU InfoNCE (`kernels/infonce_cpu.py`) against the PyTorch reference (`kernels/infonce.py`):
loss and gradients on many shapes, seeds and label layouts, both `stop_grad_keys` settings, N == 0,
fp64 (gradcheck), half inputs, the hand-off to the reference outside the exp range, determinism."""

from __future__ import annotations

import pytest
import torch

from mmbench.kernels import infonce_cpu, psa
from mmbench.kernels.infonce import cross_modal_infonce_torch
from mmbench.kernels.infonce_cpu import cross_modal_infonce_cpu

TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def unit(n: int, d: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)


def make_labels(n: int, layout: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1000)
    if layout == "six-classes":
        return torch.randint(0, 6, (n,), generator=g)
    if layout == "singletons":  # about half the anchors are alone in their class
        labels = torch.arange(n)
        labels[: n // 2] = torch.randint(0, 3, (n // 2,), generator=g) + n
        return labels[torch.randperm(n, generator=g)]
    if layout == "one-class":
        return torch.full((n,), 4)
    if layout == "all-distinct":
        return torch.randperm(n, generator=g)
    raise ValueError(layout)


def loss_and_grads(fn, z_a, z_b, labels, temperature=0.1, stop_grad_keys=False, grad_b=True):
    a = z_a.detach().clone().requires_grad_(True)
    b = z_b.detach().clone().requires_grad_(grad_b)
    loss = fn(a, b, labels, temperature, stop_grad_keys=stop_grad_keys)
    loss.backward()
    return loss.detach(), a.grad, b.grad


@pytest.mark.parametrize("stop_grad_keys", [False, True], ids=["keys-trained", "stop-grad-keys"])
@pytest.mark.parametrize("layout", ["six-classes", "singletons", "one-class", "all-distinct"])
@pytest.mark.parametrize(("n", "d"), [(1, 3), (2, 5), (7, 3), (64, 16), (333, 64), (600, 64)])
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_and_gradients_match_the_reference(n, d, layout, stop_grad_keys, seed):
    z_a, z_b, labels = unit(n, d, seed), unit(n, d, seed + 50), make_labels(n, layout, seed)
    got = loss_and_grads(cross_modal_infonce_cpu, z_a, z_b, labels, 0.1, stop_grad_keys)
    want = loss_and_grads(cross_modal_infonce_torch, z_a, z_b, labels, 0.1, stop_grad_keys)
    assert got[0].dtype == torch.float32 and got[0].ndim == 0
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, **TOLERANCE)


@pytest.mark.parametrize("temperature", [0.05, 0.07, 0.5, 1.0, 1 / 59])
@pytest.mark.parametrize("stop_grad_keys", [False, True])
def test_other_temperatures_match_the_reference(temperature, stop_grad_keys):
    z_a, z_b, labels = unit(200, 32, 3), unit(200, 32, 4), make_labels(200, "six-classes", 3)
    got = loss_and_grads(cross_modal_infonce_cpu, z_a, z_b, labels, temperature, stop_grad_keys)
    want = loss_and_grads(cross_modal_infonce_torch, z_a, z_b, labels, temperature, stop_grad_keys)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, **TOLERANCE)


def test_logits_spanning_more_than_sixty_stay_exact_without_a_shift(monkeypatch):
    # T = 1/59: aligned pairs give logits 59, opposite ones -59 (span 118 > the reference's 60, so it
    # uses two stable log-sum-exps); the CPU version exponentiates unshifted. Same numbers.
    def not_handed_over(*args, **kwargs):
        raise AssertionError("|logits| <= 60 must stay on the CPU path")

    reference = cross_modal_infonce_torch
    monkeypatch.setattr(infonce_cpu, "cross_modal_infonce_torch", not_handed_over)
    base = unit(40, 8, 5)
    z_a = torch.cat((base, -base[:10]))
    z_b = torch.cat((base[:25], -base[25:], base[:10]))
    labels = make_labels(50, "six-classes", 5)
    for stop_grad_keys in (False, True):
        got = loss_and_grads(cross_modal_infonce_cpu, z_a, z_b, labels, 1 / 59, stop_grad_keys)
        want = loss_and_grads(reference, z_a, z_b, labels, 1 / 59, stop_grad_keys)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, **TOLERANCE)


@pytest.mark.parametrize(
    ("temperature", "norm"), [(0.01, 1.0), (0.1, 3.0)], ids=["small-temperature", "unnormalised-inputs"]
)
def test_logits_beyond_the_exp_range_are_handed_to_the_reference(temperature, norm):
    z_a, z_b, labels = unit(80, 16, 6) * norm, unit(80, 16, 7) * norm, make_labels(80, "six-classes", 6)
    got = loss_and_grads(cross_modal_infonce_cpu, z_a, z_b, labels, temperature)
    want = loss_and_grads(cross_modal_infonce_torch, z_a, z_b, labels, temperature)
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)  # the reference itself ran


def test_non_finite_inputs_are_handed_to_the_reference():
    z_a, z_b, labels = unit(10, 4, 8), unit(10, 4, 9), make_labels(10, "six-classes", 8)
    z_a[3, 1] = float("nan")
    assert torch.isnan(cross_modal_infonce_cpu(z_a, z_b, labels))


@pytest.mark.parametrize("stop_grad_keys", [False, True])
def test_a_detached_key_side_gets_no_gradient_and_the_other_matches(stop_grad_keys):
    # STARS' missing terms pass the real side detached; only z_a's gradient is computed
    z_a, z_b, labels = unit(300, 64, 10), unit(300, 64, 11), make_labels(300, "six-classes", 10)
    got = loss_and_grads(cross_modal_infonce_cpu, z_a, z_b, labels, 0.1, stop_grad_keys, grad_b=False)
    want = loss_and_grads(cross_modal_infonce_torch, z_a, z_b, labels, 0.1, stop_grad_keys, grad_b=False)
    assert got[2] is None and want[2] is None
    torch.testing.assert_close(got[0], want[0], **TOLERANCE)
    torch.testing.assert_close(got[1], want[1], **TOLERANCE)


def test_stop_grad_keys_really_cuts_the_key_path():
    z_a, z_b, labels = unit(100, 16, 12), unit(100, 16, 13), make_labels(100, "six-classes", 12)
    trained = loss_and_grads(cross_modal_infonce_cpu, z_a, z_b, labels, 0.1, False)
    detached = loss_and_grads(cross_modal_infonce_cpu, z_a, z_b, labels, 0.1, True)
    torch.testing.assert_close(trained[0], detached[0], **TOLERANCE)  # same value
    assert not torch.allclose(trained[1], detached[1], atol=1e-4)
    assert not torch.allclose(trained[2], detached[2], atol=1e-4)


def test_no_samples_give_a_graph_connected_zero_like_the_reference():
    z_a, z_b = torch.zeros(0, 4, requires_grad=True), torch.zeros(0, 4, requires_grad=True)
    loss = cross_modal_infonce_cpu(z_a, z_b, torch.zeros(0, dtype=torch.int64))
    assert loss.item() == 0.0 and loss.requires_grad and loss.dtype == torch.float32 and loss.ndim == 0
    (loss + 1.0).backward()
    assert z_a.grad.shape == (0, 4) and z_b.grad.shape == (0, 4)
    plain = cross_modal_infonce_cpu(torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert plain.item() == 0.0 and not plain.requires_grad
    empty64 = cross_modal_infonce_cpu(torch.zeros(0, 4, dtype=torch.float64), torch.zeros(0, 4), torch.zeros(0))
    assert empty64.dtype == torch.float64


def test_float64_passes_gradcheck():
    # stop_grad_keys=True is not the function's true gradient by design (nor the reference's): checked below
    labels = torch.tensor([0, 0, 1, 2, 1, 0, 7])
    z_a = unit(7, 3, 14, torch.float64).requires_grad_()
    z_b = unit(7, 3, 15, torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: cross_modal_infonce_cpu(a, b, labels, 0.2), (z_a, z_b))


@pytest.mark.parametrize("stop_grad_keys", [False, True])
def test_float64_is_computed_in_float64(stop_grad_keys):
    z_a, z_b, labels = (
        unit(150, 32, 16, torch.float64),
        unit(150, 32, 17, torch.float64),
        make_labels(150, "six-classes", 1),
    )
    got = loss_and_grads(cross_modal_infonce_cpu, z_a, z_b, labels, 0.1, stop_grad_keys)
    want = loss_and_grads(cross_modal_infonce_torch, z_a, z_b, labels, 0.1, stop_grad_keys)
    assert got[0].dtype == torch.float64 and got[1].dtype == torch.float64
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_are_computed_in_float32_like_the_reference(dtype):
    z_a, z_b, labels = unit(128, 32, 18).to(dtype), unit(128, 32, 19).to(dtype), make_labels(128, "six-classes", 2)
    got = loss_and_grads(cross_modal_infonce_cpu, z_a, z_b, labels)
    want = loss_and_grads(cross_modal_infonce_torch, z_a, z_b, labels)
    assert got[0].dtype == torch.float32 and got[1].dtype == dtype and got[2].dtype == dtype
    torch.testing.assert_close(got[0], want[0], **TOLERANCE)
    eps = torch.finfo(dtype).eps
    for g, w in zip(got[1:], want[1:], strict=True):  # fp32 gradients rounded to the half dtype: at most one ulp apart
        torch.testing.assert_close(g.float(), w.float(), rtol=eps, atol=eps * float(w.float().abs().max()))


@pytest.mark.parametrize("stop_grad_keys", [False, True])
def test_same_inputs_give_bitwise_the_same_loss_and_gradients(stop_grad_keys):
    z_a, z_b, labels = unit(600, 64, 20), unit(600, 64, 21), make_labels(600, "six-classes", 20)
    first = loss_and_grads(cross_modal_infonce_cpu, z_a, z_b, labels, 0.1, stop_grad_keys)
    for _ in range(3):
        again = loss_and_grads(cross_modal_infonce_cpu, z_a.clone(), z_b.clone(), labels.clone(), 0.1, stop_grad_keys)
        assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))


def test_label_values_and_dtypes_do_not_change_the_numbers():
    # small non-negative integers index the classes directly; negative, large or float labels use
    # torch.unique: an order-preserving relabelling gives bitwise the same result either way
    z_a, z_b, labels = unit(200, 16, 22), unit(200, 16, 23), make_labels(200, "six-classes", 22)
    want = loss_and_grads(cross_modal_infonce_cpu, z_a, z_b, labels)
    for relabelled in (
        labels.to(torch.uint8),
        labels.to(torch.int32),
        labels * 100_000 - 7,
        labels - 3,
        labels.double() / 2,
    ):
        got = loss_and_grads(cross_modal_infonce_cpu, z_a, z_b, relabelled)
        assert all(torch.equal(x, y) for x, y in zip(got, want, strict=True))


def test_non_contiguous_inputs():
    # (300, 64) column-major views, as a transposed channels-first embedding would give
    z_a = torch.nn.functional.normalize(unit(64, 300, 24), dim=0).T
    z_b = torch.nn.functional.normalize(unit(64, 300, 25), dim=0).T
    labels = make_labels(300, "singletons", 24)
    assert not z_a.is_contiguous()
    got = loss_and_grads(cross_modal_infonce_cpu, z_a, z_b, labels)
    want = loss_and_grads(cross_modal_infonce_torch, z_a.contiguous(), z_b.contiguous(), labels)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, **TOLERANCE)


def test_it_can_be_installed_in_the_dispatcher(monkeypatch):
    monkeypatch.setitem(psa._IMPLEMENTATIONS["cross_modal_infonce"], "torch", cross_modal_infonce_cpu)
    z_a, z_b, labels = unit(50, 8, 26), unit(50, 8, 27), make_labels(50, "six-classes", 26)
    got = psa.cross_modal_infonce(z_a, z_b, labels, 0.1, backend="torch")
    torch.testing.assert_close(got, cross_modal_infonce_torch(z_a, z_b, labels, 0.1), **TOLERANCE)
