"""CPU tests: the torch reference paths against independently written plain math."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from plmscale import kernels
from plmscale.kernels import bias_gelu, build, scaled_masked_softmax

# ---------------------------------------------------------------- bias + GELU


def gelu_erf_math(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * z * (1.0 + torch.erf(z / math.sqrt(2.0)))


def gelu_tanh_math(z: torch.Tensor) -> torch.Tensor:
    inner = math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3)
    return 0.5 * z * (1.0 + torch.tanh(inner))


GELU_MATH = {"none": gelu_erf_math, "tanh": gelu_tanh_math}


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 17), (4, 1, 64)])
def test_bias_gelu_matches_formula(approximate, shape, rng):
    x = torch.randn(shape, generator=rng, dtype=torch.float64) * 3
    b = torch.randn(shape[-1], generator=rng, dtype=torch.float64)
    got = bias_gelu(x, b, approximate=approximate)
    want = GELU_MATH[approximate](x + b[(None,) * (x.dim() - 1)])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_bias_gelu_gradcheck(approximate, rng):
    x = torch.randn(3, 4, 6, generator=rng, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=rng, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, b: bias_gelu(x, b, approximate), (x, b))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_bias_gelu_gradient_matches_analytic(approximate, rng):
    # The derivative the CUDA backward recomputes, written out by hand.
    z = torch.randn(50, generator=rng, dtype=torch.float64) * 3
    zero = torch.zeros(1, dtype=torch.float64)
    x = z.clone().unsqueeze(-1).requires_grad_(True)
    bias_gelu(x, zero, approximate).sum().backward()
    if approximate == "none":
        want = 0.5 * (1 + torch.erf(z / math.sqrt(2))) + z * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    else:
        k = math.sqrt(2 / math.pi)
        t = torch.tanh(k * (z + 0.044715 * z**3))
        want = 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * k * (1 + 3 * 0.044715 * z * z)
    torch.testing.assert_close(x.grad.squeeze(-1), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_bias_gelu_half_dtypes(dtype, rng):
    x = torch.randn(8, 32, generator=rng)
    b = torch.randn(32, generator=rng)
    got = bias_gelu(x.to(dtype), b)  # fp32 bias is cast to x's dtype
    assert got.dtype == dtype
    want = gelu_erf_math(x.to(dtype).double() + b.to(dtype).double())
    torch.testing.assert_close(got.double(), want, rtol=1e-2, atol=1e-2)


def test_bias_gelu_rejects_unknown_form():
    with pytest.raises(ValueError):
        bias_gelu(torch.zeros(2, 2), torch.zeros(2), approximate="sigmoid")


# ---------------------------------------------------------------- softmax


MASK_KINDS = ["none", "padding", "general", "causal", "causal+padding"]  # as in conftest
SHAPES = [(2, 3, 5, 5), (2, 2, 4, 9), (3, 1, 7, 3), (2, 2, 1, 16), (1, 2, 6, 1)]


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_matches_math(kind, shape, rng, mask_maker, softmax_ref):
    b, h, sq, sk = shape
    scores = torch.randn(shape, generator=rng, dtype=torch.float64) * 4
    mask, causal, full = mask_maker(kind, b, h, sq, sk, rng)
    got = scaled_masked_softmax(scores, mask, scale=0.37, causal=causal)
    want = softmax_ref(scores, full, 0.37)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert not torch.isnan(got).any()
    # Masked entries are exact zeros; other rows sum to one.
    assert (got[full] == 0).all()
    live = ~full.all(dim=-1)
    torch.testing.assert_close(got.sum(-1)[live], torch.ones(int(live.sum()), dtype=torch.float64))


@pytest.mark.parametrize("sq,sk", [(3, 3), (2, 6), (6, 2), (1, 1), (5, 8)])
def test_causal_mask_definition(sq, sk, causal_by_loop):
    torch.testing.assert_close(kernels.causal_mask(sq, sk), causal_by_loop(sq, sk))


def test_fully_masked_rows_are_zero_with_finite_grads(rng):
    scores = torch.randn(2, 2, 3, 4, generator=rng, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 1, 1, 4, dtype=torch.bool)
    mask[1] = False
    y = scaled_masked_softmax(scores, mask, scale=2.0)
    assert (y[0] == 0).all()
    y.backward(torch.randn(y.shape, generator=rng, dtype=torch.float64))
    assert torch.isfinite(scores.grad).all()
    assert (scores.grad[0] == 0).all()
    # Causal with more queries than keys: the first sq - sk queries see nothing.
    y = scaled_masked_softmax(torch.randn(1, 1, 5, 2, dtype=torch.float64), causal=True)
    assert (y[0, 0, :3] == 0).all() and not torch.isnan(y).any()


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_softmax_gradcheck(kind, rng, mask_maker):
    b, h, sq, sk = 2, 2, 4, 5
    mask, causal, _ = mask_maker(kind, b, h, sq, sk, rng)
    scores = torch.randn(b, h, sq, sk, generator=rng, dtype=torch.float64, requires_grad=True)
    fn = lambda s: scaled_masked_softmax(s, mask, scale=0.8, causal=causal)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (scores,))


def test_softmax_backward_matches_closed_form(rng, mask_maker):
    # dx = scale * y * (dy - sum(dy * y)): the formula the CUDA backward uses.
    scores = torch.randn(2, 3, 4, 6, generator=rng, dtype=torch.float64, requires_grad=True)
    mask, causal, _ = mask_maker("causal+padding", 2, 3, 4, 6, rng)
    y = scaled_masked_softmax(scores, mask, scale=0.5, causal=causal)
    dy = torch.randn(y.shape, generator=rng, dtype=torch.float64)
    (dx,) = torch.autograd.grad(y, scores, dy)
    yd = y.detach()
    want = 0.5 * yd * (dy - (dy * yd).sum(-1, keepdim=True))
    torch.testing.assert_close(dx, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_softmax_dtypes(dtype, rng, mask_maker, softmax_ref):
    scores = torch.randn(2, 4, 8, 33, generator=rng) * 5
    mask, causal, full = mask_maker("causal+padding", 2, 4, 8, 33, rng)
    got = scaled_masked_softmax(scores.to(dtype), mask, scale=0.125, causal=causal)
    assert got.dtype == dtype
    want = softmax_ref(scores.to(dtype), full, 0.125)
    tol = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)


def test_non_bool_mask_is_accepted(rng):
    scores = torch.randn(2, 2, 3, 5, generator=rng)
    mask = torch.rand(2, 1, 3, 5, generator=rng) < 0.5
    want = scaled_masked_softmax(scores, mask)
    torch.testing.assert_close(scaled_masked_softmax(scores, mask.to(torch.uint8)), want)
    torch.testing.assert_close(scaled_masked_softmax(scores, mask.long()), want)


# ---------------------------------------------------------------- dispatch


def test_cpu_uses_reference_and_reports_why():
    assert not kernels.fused_kernels_available() or torch.cuda.is_available()
    x = torch.randn(4, 8)
    torch.testing.assert_close(bias_gelu(x, torch.zeros(8), fused=None), gelu_erf_math(x))
    if not torch.cuda.is_available():
        assert build.unavailable_reason()
        with pytest.raises(RuntimeError, match="fused=True"):
            bias_gelu(x, torch.zeros(8), fused=True)
        with pytest.raises(RuntimeError, match="fused=True"):
            scaled_masked_softmax(torch.randn(1, 1, 2, 2), fused=True)


def test_unavailable_reason_logged_once(monkeypatch, caplog):
    monkeypatch.setattr(build, "_state", {"tried": False, "ext": None, "reason": None})
    monkeypatch.setenv(build.DISABLE_ENV, "1")
    with caplog.at_level(logging.INFO, logger="plmscale.kernels"):
        for _ in range(3):
            assert not kernels.fused_kernels_available()
    msgs = [r.getMessage() for r in caplog.records if r.name == "plmscale.kernels"]
    assert len(msgs) == 1 and build.DISABLE_ENV in msgs[0]
    if torch.cuda.is_available():
        with pytest.raises(RuntimeError, match=build.DISABLE_ENV):
            bias_gelu(torch.zeros(2, 2, device="cuda"), torch.zeros(2, device="cuda"), fused=True)


def test_cuda_extension_hook_is_none_on_cpu_torch():
    if torch.version.cuda is None:
        assert build.cuda_extension() is None
    assert all(s.startswith("csrc/") for s in build.sources())
