"""The fused path: ``torch.autograd.Function``s over the CUDA extension.

The extension's entry points are registered as torch custom ops
(``torch.ops.plmscale.*``) with shape-only fake implementations, so
``torch.compile`` traces through the autograd Functions below instead of breaking
the graph at every attention and MLP block.

Only imported when the fused path is taken; :mod:`plmscale.kernels` decides when.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .build import load_extension


def _ext():
    ext = load_extension()
    if ext is None:  # callers check availability first; this is a guard
        raise RuntimeError("plmscale fused CUDA kernels are not available")
    return ext


# ---- custom ops (outputs are always fresh tensors, never aliases of inputs) ----


@torch.library.custom_op(
    "plmscale::bias_gelu_fwd", mutates_args=(), schema="(Tensor x, Tensor bias, bool tanh_form) -> Tensor"
)
def bias_gelu_fwd(x, bias, tanh_form):
    return _ext().bias_gelu_forward(x, bias, tanh_form)


@bias_gelu_fwd.register_fake
def _(x, bias, tanh_form):
    return x.new_empty(x.shape)


@torch.library.custom_op(
    "plmscale::bias_gelu_bwd",
    mutates_args=(),
    schema="(Tensor dy, Tensor x, Tensor bias, bool tanh_form) -> (Tensor, Tensor)",
)
def bias_gelu_bwd(dy, x, bias, tanh_form):
    # dbias comes out of the same pass as dx, so it is always produced.
    dx, dbias = _ext().bias_gelu_backward(dy, x, bias, tanh_form, True)
    return dx, dbias


@bias_gelu_bwd.register_fake
def _(dy, x, bias, tanh_form):
    return x.new_empty(x.shape), bias.new_empty(bias.shape)


@torch.library.custom_op(
    "plmscale::softmax_fwd",
    mutates_args=(),
    schema="(Tensor scores, Tensor? mask, float scale, bool causal) -> Tensor",
)
def softmax_fwd(scores, mask, scale, causal):
    return _ext().scaled_masked_softmax_forward(scores, mask, scale, causal)


@softmax_fwd.register_fake
def _(scores, mask, scale, causal):
    return scores.new_empty(scores.shape)


@torch.library.custom_op(
    "plmscale::softmax_bwd", mutates_args=(), schema="(Tensor dy, Tensor y, float scale, bool causal) -> Tensor"
)
def softmax_bwd(dy, y, scale, causal):
    return _ext().scaled_masked_softmax_backward(dy, y, scale, causal)


@softmax_bwd.register_fake
def _(dy, y, scale, causal):
    return y.new_empty(y.shape)


# ---- autograd ------------------------------------------------------------------


class FusedBiasGelu(torch.autograd.Function):
    """gelu(x + bias); saves only x and bias, backward recomputes the activation."""

    @staticmethod
    def forward(ctx, x: Tensor, bias: Tensor, tanh_form: bool) -> Tensor:
        ctx.save_for_backward(x, bias)
        ctx.tanh_form = tanh_form
        return bias_gelu_fwd(x, bias, tanh_form)

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, bias = ctx.saved_tensors
        dx, dbias = bias_gelu_bwd(dy, x, bias, ctx.tanh_form)
        need_dx, need_dbias = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        return (dx if need_dx else None), (dbias if need_dbias else None), None


class FusedScaledMaskedSoftmax(torch.autograd.Function):
    """softmax(scores * scale) with padding/general/causal masks; saves only the output."""

    @staticmethod
    def forward(ctx, scores: Tensor, mask: Tensor | None, scale: float, causal: bool) -> Tensor:
        y = softmax_fwd(scores, mask, float(scale), bool(causal))
        ctx.save_for_backward(y)
        ctx.scale, ctx.causal = float(scale), bool(causal)
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        (y,) = ctx.saved_tensors
        return softmax_bwd(dy, y, ctx.scale, ctx.causal), None, None, None


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
