"""Plain-torch reference implementations of the fused kernels.

These run on any device and are what CPU training uses, so they are written as a
handful of vectorised torch ops (no Python loops) and rely on autograd for the
backward pass. The CUDA kernels in ``csrc/`` are tested against them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

GELU_FORMS = ("none", "tanh")


def check_approximate(approximate: str) -> None:
    """Raise ``ValueError`` unless ``approximate`` names a supported GELU form."""
    if approximate not in GELU_FORMS:
        raise ValueError(f"approximate must be one of {GELU_FORMS}, got {approximate!r}")


def bias_gelu_reference(x: Tensor, bias: Tensor, approximate: str = "none") -> Tensor:
    """``gelu(x + bias)`` with ``bias`` broadcast over the last dimension of ``x``."""
    check_approximate(approximate)
    return F.gelu(x + bias, approximate=approximate)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype the softmax is computed in: fp32 for half types, else the input dtype."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def causal_mask(sq: int, sk: int, device: torch.device | str | None = None) -> Tensor:
    """Bool ``[sq, sk]`` mask, True where key ``j > i + (sk - sq)`` (masked out).

    Aligning the diagonal to the bottom-right means the last query sees every key,
    which is what incremental decoding with a KV cache (sq < sk) needs.
    """
    ones = torch.ones(sq, sk, dtype=torch.bool, device=device)
    return ones.triu_(diagonal=sk - sq + 1)


def combined_mask(shape: torch.Size, mask: Tensor | None, causal: bool, device) -> Tensor | None:
    """Merge an explicit mask (True = masked out) with the implicit causal mask."""
    sq, sk = shape[-2], shape[-1]
    out = None
    if mask is not None:
        out = mask if mask.dtype == torch.bool else mask != 0
        out = out.to(device)
    if causal:
        c = causal_mask(sq, sk, device)
        out = c if out is None else out | c
    return out


def scaled_masked_softmax_reference(
    scores: Tensor, mask: Tensor | None = None, scale: float = 1.0, causal: bool = False
) -> Tensor:
    """``softmax(scores * scale)`` over the last dim, masked positions set to zero.

    ``mask`` is boolean with True meaning *masked out*, broadcastable to ``scores``
    (typically ``[b, 1, 1, sk]`` or ``[b, 1, sq, sk]``). ``causal`` additionally
    masks key ``j > i + (sk - sq)``. Rows with every key masked give zeros.
    fp16/bf16 inputs are computed in fp32; the result has the input dtype.
    """
    cdt = compute_dtype(scores.dtype)
    x = scores.to(cdt)
    if scale != 1.0:
        x = x * scale
    m = combined_mask(scores.shape, mask, causal, scores.device)
    if m is None:
        return torch.softmax(x, dim=-1).to(scores.dtype)
    # Fill with the most negative finite value rather than -inf: a fully masked row
    # then becomes a finite uniform softmax (no NaN in forward or backward) which
    # the second masked_fill turns into zeros. In a partly masked row exp(min - max)
    # underflows to exactly 0, so the result equals the -inf formulation.
    x = x.masked_fill(m, torch.finfo(cdt).min)
    y = torch.softmax(x, dim=-1).masked_fill(m, 0.0)
    return y.to(scores.dtype)
