"""``torch.autograd.Function`` wrappers around the CUDA extension.

Only imported when the fused path is taken (the extension is loaded by then);
:mod:`plmscale.kernels` decides when that is.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .build import load_extension


def _ext():
    ext = load_extension()
    if ext is None:  # callers check availability first; this is a guard
        raise RuntimeError("plmscale fused CUDA kernels are not available")
    return ext


class FusedBiasGelu(torch.autograd.Function):
    """gelu(x + bias); saves only x and bias, backward recomputes the activation."""

    @staticmethod
    def forward(ctx, x: Tensor, bias: Tensor, tanh_form: bool) -> Tensor:
        ctx.save_for_backward(x, bias)
        ctx.tanh_form = tanh_form
        return _ext().bias_gelu_forward(x, bias, tanh_form)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor):
        x, bias = ctx.saved_tensors
        need_dx, need_dbias = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        # dx is computed even when only dbias is wanted: dbias is its column sum.
        dx, dbias = _ext().bias_gelu_backward(dy, x, bias, ctx.tanh_form, need_dbias)
        return (dx if need_dx else None), (dbias if need_dbias else None), None


class FusedScaledMaskedSoftmax(torch.autograd.Function):
    """softmax(scores * scale) with padding/general/causal masks; saves only the output."""

    @staticmethod
    def forward(ctx, scores: Tensor, mask: Tensor | None, scale: float, causal: bool) -> Tensor:
        y = _ext().scaled_masked_softmax_forward(scores, mask, float(scale), bool(causal))
        ctx.save_for_backward(y)
        ctx.scale, ctx.causal = float(scale), bool(causal)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor):
        (y,) = ctx.saved_tensors
        dx = _ext().scaled_masked_softmax_backward(dy, y, ctx.scale, ctx.causal)
        return dx, None, None, None


def fused_bias_gelu(x: Tensor, bias: Tensor, approximate: str) -> Tensor:
    """Fused ``gelu(x + bias)``; ``x``, ``bias`` CUDA tensors of one dtype."""
    return FusedBiasGelu.apply(x, bias, approximate == "tanh")


def fused_scaled_masked_softmax(
    scores: Tensor, mask: Tensor | None, scale: float, causal: bool
) -> Tensor:
    """Fused scaled masked softmax over the last dim of 2-D to 4-D ``scores``."""
    if mask is not None and mask.device != scores.device:
        mask = mask.to(scores.device)
    if scores.dim() == 4:
        return FusedScaledMaskedSoftmax.apply(scores, mask, scale, causal)
    # Broadcasting aligns trailing dims, so leading size-1 dims change nothing.
    lead = 4 - scores.dim()
    y = FusedScaledMaskedSoftmax.apply(scores[(None,) * lead], mask, scale, causal)
    return y[(0,) * lead]
