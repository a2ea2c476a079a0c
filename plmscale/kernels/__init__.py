"""Fused CUDA kernels (bias-GELU, scaled masked softmax) with torch reference paths.

Public API::

    bias_gelu(x, bias, approximate="none", fused=None)
    scaled_masked_softmax(scores, mask=None, scale=1.0, causal=False, fused=None)
    fused_kernels_available()

``fused=None`` uses the CUDA kernel when the input is on a CUDA device, has a
supported dtype (fp32/fp16/bf16) and the extension built; otherwise the plain
torch reference runs. ``fused=False`` always runs the reference; ``fused=True``
requires the kernel and raises ``RuntimeError`` saying why when it can't be used.
Set ``PLMSCALE_DISABLE_FUSED_KERNELS=1`` to switch the kernels off process-wide.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import build
from .reference import (
    bias_gelu_reference,
    causal_mask,
    check_approximate,
    scaled_masked_softmax_reference,
)

__all__ = [
    "bias_gelu",
    "scaled_masked_softmax",
    "fused_kernels_available",
    "bias_gelu_reference",
    "scaled_masked_softmax_reference",
    "causal_mask",
]

FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def fused_kernels_available() -> bool:
    """True when the CUDA extension is loaded (built on first call if needed)."""
    # Lock-free once decided, so torch.compile traces this as a constant.
    if build._state["tried"]:
        return build._state["ext"] is not None
    return build.load_extension() is not None


def _use_fused(fused: bool | None, t: Tensor, op: str, max_dim: int | None = None) -> bool:
    if fused is False:
        return False
    shape_ok = max_dim is None or 2 <= t.dim() <= max_dim
    if fused is None:
        return t.is_cuda and t.dtype in FUSED_DTYPES and shape_ok and fused_kernels_available()
    if not shape_ok:
        raise RuntimeError(f"{op}(fused=True) takes 2-D to {max_dim}-D input, got shape {tuple(t.shape)}")
    if not t.is_cuda:
        raise RuntimeError(f"{op}(fused=True) needs a CUDA tensor, got one on {t.device}")
    if t.dtype not in FUSED_DTYPES:
        raise RuntimeError(f"{op}(fused=True) supports {FUSED_DTYPES}, got {t.dtype}")
    if not fused_kernels_available():
        raise RuntimeError(f"{op}(fused=True) but the fused kernels are unavailable: {build.unavailable_reason()}")
    return True


def bias_gelu(x: Tensor, bias: Tensor, approximate: str = "none", fused: bool | None = None) -> Tensor:
    """``gelu(x + bias)``, ``bias`` of shape ``[x.shape[-1]]`` broadcast over rows.

    ``approximate`` is ``"none"`` (exact, erf) or ``"tanh"``. The result has
    ``x.dtype`` (``bias`` is cast to it). Differentiable in ``x`` and ``bias``.
    """
    check_approximate(approximate)
    if bias.dtype != x.dtype:
        bias = bias.to(x.dtype)
    if _use_fused(fused, x, "bias_gelu"):
        from .fused import fused_bias_gelu

        return fused_bias_gelu(x, bias, approximate)
    return bias_gelu_reference(x, bias, approximate)


def scaled_masked_softmax(
    scores: Tensor,
    mask: Tensor | None = None,
    scale: float = 1.0,
    causal: bool = False,
    fused: bool | None = None,
) -> Tensor:
    """``softmax(scores * scale)`` over the last dim of ``scores [b, h, sq, sk]``.

    ``mask``: boolean, True = masked out, broadcastable to ``scores`` — padding
    ``[b, 1, 1, sk]`` or general ``[b, 1, sq, sk]``. ``causal=True`` also masks
    key ``j > i + (sk - sq)`` (diagonal aligned bottom-right, so with a KV cache
    the last query sees every key), with no mask tensor. Masked positions and
    fully masked rows give exact zeros (never NaN). fp16/bf16 are computed in
    fp32; the output has the input dtype. Differentiable in ``scores``.
    """
    if _use_fused(fused, scores, "scaled_masked_softmax", max_dim=4):
        from .fused import fused_scaled_masked_softmax

        return fused_scaled_masked_softmax(scores, mask, scale, causal)
    return scaled_masked_softmax_reference(scores, mask, scale, causal)
