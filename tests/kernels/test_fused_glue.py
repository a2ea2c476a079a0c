"""CPU tests of the fused path's Python glue (custom ops, autograd Functions,
torch.compile tracing) with a stand-in extension built from the references.

The real kernels are checked on a GPU by test_fused_gpu.py; this makes sure the
wiring around them is right on machines without one.
"""

from __future__ import annotations

import math
import types

import pytest
import torch
import torch.nn.functional as F

from plmscale import kernels
from plmscale.kernels import fused
from plmscale.kernels.reference import scaled_masked_softmax_reference


def _fake_extension():
    """Same entry points and outputs as the CUDA extension, computed in float64."""

    def bias_gelu_forward(x, bias, tanh_form, out=None):
        z = x.double() + bias.double()
        return F.gelu(z, approximate="tanh" if tanh_form else "none").to(x.dtype)

    def bias_gelu_backward(dy, x, bias, tanh_form, need_dbias, out=None):
        z = x.double() + bias.double()
        if tanh_form:
            k = math.sqrt(2 / math.pi)
            t = torch.tanh(k * (z + 0.044715 * z**3))
            dgelu = 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * k * (1 + 3 * 0.044715 * z * z)
        else:
            dgelu = 0.5 * (1 + torch.erf(z / math.sqrt(2))) + z * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        dz = dy.double() * dgelu
        db = dz.reshape(-1, bias.numel()).sum(0).to(bias.dtype) if need_dbias else None
        return dz.to(x.dtype), db

    def scaled_masked_softmax_forward(scores, mask, scale, causal, out=None):
        if mask is not None and mask.dtype != torch.bool:
            mask = mask != 0
        return scaled_masked_softmax_reference(scores.double(), mask, scale, causal).to(scores.dtype)

    def scaled_masked_softmax_backward(dy, y, scale, causal, out=None):
        y64, dy64 = y.double(), dy.double()
        return (scale * y64 * (dy64 - (dy64 * y64).sum(-1, keepdim=True))).to(y.dtype)

    return types.SimpleNamespace(**{k: v for k, v in locals().items() if callable(v)})


@pytest.fixture
def fake_ext(monkeypatch):
    ext = _fake_extension()
    monkeypatch.setattr(fused, "load_extension", lambda: ext)
    return ext


def test_custom_ops_pass_opcheck(fake_ext):
    x, b = torch.randn(3, 8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    dy = torch.randn(3, 8, dtype=torch.float64)
    s = torch.randn(2, 2, 3, 5, dtype=torch.float64)
    mask = torch.rand(2, 1, 1, 5) < 0.3
    cases = [
        (torch.ops.plmscale.bias_gelu_fwd, (x, b, True)),
        (torch.ops.plmscale.bias_gelu_bwd, (dy, x, b, False)),
        (torch.ops.plmscale.softmax_fwd, (s, mask, 0.5, True)),
        (torch.ops.plmscale.softmax_fwd, (s, None, 1.0, False)),
        (torch.ops.plmscale.softmax_bwd, (s, torch.softmax(s, -1), 0.5, False)),
    ]
    for op, args in cases:
        # The autograd of the ops themselves lives in the Functions, not the ops.
        torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_functions_match_reference_gradients(fake_ext, approximate):
    x = torch.randn(4, 3, 16, dtype=torch.float64, requires_grad=True)
    b = torch.randn(16, dtype=torch.float64, requires_grad=True)
    y = fused.fused_bias_gelu(x, b, approximate)
    dy = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, b), dy)
    want = torch.autograd.grad(kernels.bias_gelu(x, b, approximate, fused=False), (x, b), dy)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)

    s = torch.randn(2, 3, 4, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, 1, 4, 6) < 0.3
    y = fused.fused_scaled_masked_softmax(s, mask, 0.5, True)
    dy = torch.randn_like(y)
    (got,) = torch.autograd.grad(y, s, dy)
    (want,) = torch.autograd.grad(kernels.scaled_masked_softmax(s, mask, 0.5, True, fused=False), s, dy)
    torch.testing.assert_close(got, want)
    # 3-D scores go through the 4-D kernel.
    y3 = fused.fused_scaled_masked_softmax(s[0], None, 1.0, True)
    torch.testing.assert_close(y3, kernels.scaled_masked_softmax(s[0], None, 1.0, True, fused=False))


def test_torch_compile_traces_without_graph_breaks(fake_ext):
    torch._dynamo.reset()

    def block(x, b, s, mask):
        return fused.fused_bias_gelu(x, b, "tanh").sum() + fused.fused_scaled_masked_softmax(s, mask, 0.125, True).sum()

    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    x = torch.randn(4, 8, requires_grad=True)
    b = torch.randn(8, requires_grad=True)
    s = torch.randn(1, 2, 3, 5, requires_grad=True)
    mask = torch.rand(1, 1, 1, 5) < 0.3
    out = compiled(x, b, s, mask)
    out.backward()
    want = block(x, b, s, mask)
    torch.testing.assert_close(out, want)
    assert x.grad is not None and b.grad is not None and s.grad is not None


def test_public_api_compiles_without_graph_breaks_on_cpu():
    """The dispatch in plmscale.kernels must not break torch.compile graphs."""
    torch._dynamo.reset()
    mask = torch.rand(2, 1, 1, 6) < 0.3

    def block(x, b, s):
        return kernels.bias_gelu(x, b).sum() + kernels.scaled_masked_softmax(s, mask, 0.5, causal=True).sum()

    compiled = torch.compile(block, backend="eager", fullgraph=True)
    args = (torch.randn(3, 8), torch.randn(8), torch.randn(2, 2, 4, 6))
    torch.testing.assert_close(compiled(*args), block(*args))
