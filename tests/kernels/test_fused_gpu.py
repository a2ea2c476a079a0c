"""GPU tests (``pytest -m gpu``): the fused CUDA kernels against the references.

Expected values are computed in float64 from the same (dtype-rounded) inputs, so
the allowed error is one rounding of the output plus fp32 arithmetic. Every kernel
call writes into a NaN-poisoned ``out`` buffer: an element a kernel fails to
write stays NaN and fails the test.
"""

from __future__ import annotations

import random
import zlib

import pytest
import torch
import torch.nn.functional as F

from plmscale import kernels
from plmscale.kernels import build

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DEVICE = "cuda"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# A few roundings of the output dtype (fp32: a few ulp of expf/erff on top).
TOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
KINDS = ["none", "padding", "general", "causal", "causal+padding"]


@pytest.fixture(scope="module")
def ext():
    e = build.load_extension()
    assert e is not None, f"fused kernels unavailable on a CUDA machine: {build.unavailable_reason()}"
    return e


def seeded(*key) -> torch.Generator:
    """A CPU generator seeded from the test's parameters (stable across runs)."""
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))


def poisoned(like: torch.Tensor) -> torch.Tensor:
    return torch.full(like.shape, float("nan"), dtype=like.dtype, device=like.device)


def check(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    """got (in dtype) against want (float64), tolerance scaled by want's magnitude."""
    assert got.dtype == dtype, f"{what}: dtype {got.dtype} != {dtype}"
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    got = got.double()
    assert not torch.isnan(got).any(), f"{what}: NaN in output (an element left unwritten?)"
    tol = TOL[dtype]
    mag = want.abs().max().item() if want.numel() else 1.0
    torch.testing.assert_close(got, want, rtol=tol, atol=tol * max(mag, 1e-6), msg=lambda m: f"{what}: {m}")


def randn(shape, dtype, gen, scale=1.0, misaligned=False):
    """Random CUDA tensor; misaligned=True gives a view whose data is not 16-byte aligned."""
    n = 1
    for s in shape:
        n *= s
    base = torch.randn(n + 1, generator=gen, dtype=torch.float32) * scale
    t = (base[1:] if misaligned else base[:n]).to(DEVICE, dtype)
    return t.view(shape)


# ---------------------------------------------------------------- bias + GELU

GELU_SHAPES = [
    (4, 1024), (3, 7, 1000), (17, 13), (1, 8), (5, 3), (2, 24), (3, 12), (1000, 77),
    (64, 8200), (2, 5, 4), (1, 1), (4096, 1536), (0, 16),
]


def gelu_want(x, b, dy, approximate):
    """float64 forward, d/dx and d/dbias through autograd of F.gelu."""
    z = (x.double() + b.double()).requires_grad_(True)
    y = F.gelu(z, approximate=approximate)
    (dz,) = torch.autograd.grad(y, z, dy.double())
    return y.detach(), dz, dz.reshape(-1, b.numel()).sum(0)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GELU_SHAPES, ids=str)
def test_bias_gelu_kernels(ext, approximate, dtype, shape):
    gen = seeded(approximate, dtype, shape)
    tanh_form = approximate == "tanh"
    for misaligned in (False, True):
        x = randn(shape, dtype, gen, 3.0, misaligned)
        b = randn((shape[-1],), dtype, gen)
        dy = randn(shape, dtype, gen)
        want_y, want_dx, want_db = gelu_want(x, b, dy, approximate)
        what = f"{approximate} {dtype} {shape} misaligned={misaligned}"

        y = ext.bias_gelu_forward(x, b, tanh_form, out=poisoned(x))
        check(y, want_y, dtype, f"forward {what}")

        dx, db = ext.bias_gelu_backward(dy, x, b, tanh_form, True, out=poisoned(x))
        check(dx, want_dx, dtype, f"dx {what}")
        # dbias sums rows (of rounded dx on the generic path): a few roundings more.
        assert db.dtype == dtype
        mag = max(want_db.abs().max().item() if want_db.numel() else 1.0, 1e-6)
        tol = 4 * TOL[dtype]
        torch.testing.assert_close(db.double(), want_db, rtol=tol, atol=tol * mag)

        dx_only, none = ext.bias_gelu_backward(dy, x, b, tanh_form, False)
        assert none is None
        torch.testing.assert_close(dx_only, dx, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_gelu_autograd_matches_reference(dtype):
    gen = torch.Generator().manual_seed(0)
    x = randn((6, 5, 96), dtype, gen, 2.0).requires_grad_(True)
    b = randn((96,), torch.float32, gen).requires_grad_(True)  # fp32 bias is cast to x.dtype
    for approximate in ("none", "tanh"):
        y = kernels.bias_gelu(x, b, approximate, fused=True)
        dy = torch.randn_like(y)
        gx, gb = torch.autograd.grad(y, (x, b), dy)
        x64 = x.detach().double().requires_grad_(True)
        b64 = b.detach().to(dtype).double().requires_grad_(True)
        y64 = kernels.bias_gelu(x64, b64, approximate, fused=False)
        wx, wb = torch.autograd.grad(y64, (x64, b64), dy.double())
        check(y, y64.detach(), dtype, f"y {approximate}")
        check(gx, wx, dtype, f"dx {approximate}")
        assert gb.dtype == torch.float32
        torch.testing.assert_close(gb.double(), wb, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10 * wb.abs().max().item())


# ---------------------------------------------------------------- softmax

SOFTMAX_SHAPES = [
    (2, 3, 5, 7), (1, 2, 33, 1), (2, 2, 17, 31), (1, 4, 8, 64), (2, 1, 3, 100),
    (1, 2, 5, 255), (1, 1, 7, 257), (1, 2, 3, 1000), (1, 1, 4, 1023), (2, 2, 64, 64),
    (1, 1, 3, 2049), (1, 1, 2, 4097), (1, 1, 2, 8191), (1, 1, 2, 16384), (1, 1, 2, 16389),
    (1, 1, 2, 32768), (1, 1, 2, 40000), (1, 1, 9, 2), (3, 2, 129, 130),
]


def softmax_case(kind, shape, dtype, gen, mask_maker, misaligned=False):
    b, h, sq, sk = shape
    mask, causal, full = mask_maker(kind, b, h, sq, sk, gen)
    scores = randn(shape, dtype, gen, 4.0, misaligned)
    return scores, (mask.to(DEVICE) if mask is not None else None), causal, full.to(DEVICE)


def run_softmax(ext, scores, mask, scale, causal, softmax_ref, full, what):
    dtype = scores.dtype
    y = ext.scaled_masked_softmax_forward(scores, mask, scale, causal, out=poisoned(scores))
    check(y, softmax_ref(scores, full, scale), dtype, f"forward {what}")
    assert (y[full] == 0).all(), f"{what}: masked positions not zero"

    dy = torch.randn(scores.shape, dtype=torch.float32, device=DEVICE).to(dtype)
    dx = ext.scaled_masked_softmax_backward(dy, y, scale, causal, out=poisoned(scores))
    y64, dy64 = y.double(), dy.double()
    want = scale * y64 * (dy64 - (dy64 * y64).sum(-1, keepdim=True))
    check(dx, want, dtype, f"backward {what}")
    assert (dx[full] == 0).all(), f"{what}: gradient at masked positions not zero"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=str)
def test_softmax_kernels(ext, kind, dtype, shape, mask_maker, softmax_ref):
    gen = seeded(kind, dtype, shape)
    scores, mask, causal, full = softmax_case(kind, shape, dtype, gen, mask_maker)
    run_softmax(ext, scores, mask, 0.3, causal, softmax_ref, full, f"{kind} {dtype} {shape}")


def test_softmax_random_shapes(ext, mask_maker, softmax_ref):
    rnd = random.Random(6)
    gen = torch.Generator().manual_seed(6)
    for _ in range(40):
        shape = (rnd.randint(1, 3), rnd.randint(1, 4), rnd.randint(1, 70),
                 rnd.choice([rnd.randint(1, 300), rnd.randint(300, 5000), rnd.randint(5000, 20000)]))
        kind, dtype = rnd.choice(KINDS), rnd.choice(DTYPES)
        misaligned = rnd.random() < 0.3
        scale = rnd.choice([1.0, 0.125, 2.5])
        scores, mask, causal, full = softmax_case(kind, shape, dtype, gen, mask_maker, misaligned)
        run_softmax(ext, scores, mask, scale, causal, softmax_ref, full,
                    f"{kind} {dtype} {shape} misaligned={misaligned} scale={scale}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_softmax_autograd_matches_reference(dtype, kind, mask_maker):
    gen = torch.Generator().manual_seed(3)
    scores, mask, causal, _ = softmax_case(kind, (2, 3, 11, 45), dtype, gen, mask_maker)
    scores.requires_grad_(True)
    y = kernels.scaled_masked_softmax(scores, mask, scale=0.7, causal=causal, fused=True)
    dy = torch.randn_like(y)
    (g,) = torch.autograd.grad(y, scores, dy)
    s64 = scores.detach().double().requires_grad_(True)
    y64 = kernels.scaled_masked_softmax(s64, mask, scale=0.7, causal=causal, fused=False)
    (g64,) = torch.autograd.grad(y64, s64, dy.double())
    check(y, y64.detach(), dtype, "y")
    # The fused backward uses the rounded y, so allow a couple of roundings more.
    torch.testing.assert_close(g.double(), g64, rtol=3 * TOL[dtype], atol=3 * TOL[dtype] * g64.abs().max().item())


def test_softmax_layouts_and_mask_forms():
    gen = torch.Generator().manual_seed(4)
    b, h, sq, sk = 2, 3, 6, 37
    scores = torch.randn(b, sq, h, sk, generator=gen).to(DEVICE).transpose(1, 2)  # non-contiguous
    assert not scores.is_contiguous()
    pad = torch.rand(b, 1, 1, sk, generator=gen) < 0.3
    same = pad.to(DEVICE)
    # A CPU mask, integer masks, a 1-D key mask broadcast over everything.
    forms = [(pad, same), (same.to(torch.uint8), same), (same.long(), same), (same[0, 0, 0], same[0, 0, 0])]
    for mask, want_mask in forms:
        got = kernels.scaled_masked_softmax(scores, mask, 0.5, True, fused=True)
        want = kernels.scaled_masked_softmax(scores.double(), want_mask, 0.5, True, fused=False)
        check(got, want, torch.float32, f"mask {mask.dtype} {tuple(mask.shape)} {mask.device}")
    # Per-head general mask [b, h, sq, sk] and a 2-D [sq, sk] mask.
    for mask in (torch.rand(b, h, sq, sk, generator=gen) < 0.5, torch.rand(sq, sk, generator=gen) < 0.5):
        mask = mask.to(DEVICE)
        got = kernels.scaled_masked_softmax(scores, mask, fused=True)
        check(got, kernels.scaled_masked_softmax(scores.double(), mask, fused=False), torch.float32, "mask")
    # 3-D and 2-D scores go through the same kernel.
    for s in (scores[0], scores[0, 0]):
        got = kernels.scaled_masked_softmax(s, None, 1.0, True, fused=True)
        check(got, kernels.scaled_masked_softmax(s.double(), None, 1.0, True, fused=False), torch.float32, "3-D/2-D")


@pytest.mark.parametrize("dtype", DTYPES)
def test_fully_masked_rows_give_zeros(dtype):
    scores = torch.randn(2, 2, 4, 300, device=DEVICE, dtype=dtype, requires_grad=True)
    mask = torch.zeros(2, 1, 1, 300, dtype=torch.bool, device=DEVICE)
    mask[0] = True
    y = kernels.scaled_masked_softmax(scores, mask, fused=True)
    assert (y[0] == 0).all() and not torch.isnan(y).any()
    y.backward(torch.randn_like(y))
    assert (scores.grad[0] == 0).all() and torch.isfinite(scores.grad).all()
    y = kernels.scaled_masked_softmax(torch.randn(1, 1, 5, 3, device=DEVICE, dtype=dtype), causal=True, fused=True)
    assert (y[0, 0, :2] == 0).all() and not torch.isnan(y).any()


def test_default_dispatch_uses_kernels_on_cuda():
    assert kernels.fused_kernels_available()
    x = torch.randn(4, 64, device=DEVICE, requires_grad=True)
    y = kernels.bias_gelu(x, torch.zeros(64, device=DEVICE))
    assert type(y.grad_fn).__name__.startswith("FusedBiasGelu")
    s = kernels.scaled_masked_softmax(torch.randn(1, 1, 2, 8, device=DEVICE, requires_grad=True))
    assert type(s.grad_fn).__name__.startswith("FusedScaledMaskedSoftmax")
    # float64 has no kernel: the default falls back, fused=True refuses.
    kernels.scaled_masked_softmax(torch.randn(1, 1, 2, 8, device=DEVICE, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="supports"):
        kernels.scaled_masked_softmax(torch.randn(1, 1, 2, 8, device=DEVICE, dtype=torch.float64), fused=True)
