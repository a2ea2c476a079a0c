"""The one attention core every family runs through: ``attend(q, k, v, ...)`` -> context, with the
backend chosen by ``model.attention_backend``:

- ``sdpa`` (default): ``torch.nn.functional.scaled_dot_product_attention``. With no mask and no bias
  (or causal only) it gets ``is_causal`` / nothing, so PyTorch can pick its flash kernel and never
  materialise the [b, heads, s, s] scores; any other mask kind (padding, general per-sample
  [b, 1, s, s] masks, document resets, T5's relative position bias) goes in as one additive float
  mask, which the memory-efficient kernel takes.
- ``fused-softmax``: q.k^T, ``plmscale.kernels.scaled_masked_softmax`` (the csrc fused kernel on a
  GPU when ``model.use_fused_kernels`` allows it, its torch reference elsewhere), dropout, @ v.
- ``reference``: the same in plain torch, always (the tests' ground truth).

All three compute the same function: masked keys get exactly zero weight, and a query whose keys
are all masked gets a zero context (SDPA alone would give NaN or a uniform average there, so its
output is zeroed for such rows). Attention dropout is drawn on the TP rank's own random stream
(``tensor_parallel_rng``): ranks hold different heads and must not share masks, and since the
training loop reseeds both streams from the step number, a resumed run draws the same masks.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from plmscale.config.schema import ATTENTION_BACKENDS
from plmscale.kernels import causal_mask, scaled_masked_softmax
from plmscale.parallel.random import tensor_parallel_rng


def check_backend(backend: str) -> str:
    """Return ``backend`` or raise ``ValueError`` naming the valid ones."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"model.attention_backend={backend!r}; valid: {', '.join(ATTENTION_BACKENDS)}")
    return backend


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float,
           mask: torch.Tensor | None = None, bias: torch.Tensor | None = None,
           causal: bool = False, dropout_p: float = 0.0, backend: str = "sdpa",
           fused: bool | None = None) -> torch.Tensor:
    """softmax(scale * q.k^T + bias, masked) @ v for q [b, h, sq, d], k and v [b, h, sk, d].

    ``mask``: boolean, True = hidden key, broadcastable to [b, h, sq, sk] (padding [b, 1, 1, sk],
    general [b, 1, sq, sk]). ``bias``: float added to the already scaled scores, broadcastable to
    [b, h, sq, sk] (T5's relative position bias; differentiable). ``causal``: also hide key
    j > i + (sk - sq). ``dropout_p``: attention dropout (pass 0.0 in eval). ``fused``: the
    ``fused-softmax`` backend's kernel choice (``model.use_fused_kernels``). Returns [b, h, sq, d].
    """
    if backend == "sdpa":
        return _sdpa(q, k, v, scale, mask, bias, causal, dropout_p)
    check_backend(backend)
    scores = torch.matmul(q, k.transpose(-1, -2))
    if bias is not None:  # the bias is added to the already scaled scores
        scores = (scores * scale if scale != 1.0 else scores) + bias
        scale = 1.0
    probs = scaled_masked_softmax(scores, mask, scale=scale, causal=causal,
                                  fused=False if backend == "reference" else fused)
    if dropout_p > 0.0:
        with tensor_parallel_rng():  # each TP rank holds different heads: independent masks
            probs = F.dropout(probs, dropout_p)
    return torch.matmul(probs, v)


def _sdpa(q, k, v, scale, mask, bias, causal, dropout_p):
    sq, sk = q.shape[-2], k.shape[-2]
    is_causal = causal and mask is None and bias is None and sq == sk  # flash-eligible
    if causal and not is_causal:  # SDPA's own causal mask is top-left aligned: build ours
        causal_hidden = causal_mask(sq, sk, q.device)
        mask = causal_hidden if mask is None else mask | causal_hidden
    additive = None
    if bias is not None or mask is not None:
        # A finite fill (not -inf) keeps fully hidden rows NaN-free in forward and backward; half the
        # dtype's minimum so that adding a score cannot overflow to -inf. exp() of it is exactly 0.
        fill = torch.finfo(q.dtype).min / 2
        additive = bias.to(q.dtype) if bias is not None else torch.zeros((), dtype=q.dtype,
                                                                         device=q.device)
        if mask is not None:
            additive = additive.masked_fill(mask, fill)
    with tensor_parallel_rng() if dropout_p > 0.0 else contextlib.nullcontext():
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=additive, dropout_p=dropout_p,
                                                 is_causal=is_causal, scale=scale)
    if mask is not None:  # rows with every key hidden: zero, as the softmax backends give
        context = _zero_hidden_rows(context, mask)
    return context


def _zero_hidden_rows(context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``context`` [b, h, sq, d] with the rows whose keys ``mask`` hides all set to 0."""
    hidden_rows = mask.all(dim=-1, keepdim=True)
    hidden_rows = hidden_rows.reshape((1,) * (4 - hidden_rows.dim()) + hidden_rows.shape)
    # On the CPU a host check costs nothing (no queue to stall) and padding hides a whole row only
    # for an all-padding sample: skip the two passes (forward, backward) when none is hidden. On a
    # GPU the check would synchronise, so there the rows are always filled; so they are in a compiled
    # layer (train.compile), where the data-dependent branch would break the graph.
    if (context.device.type == "cpu" and not torch.compiler.is_compiling()
            and not bool(hidden_rows.any())):
        return context
    # Filled in SDPA's output layout ([b, sq, h, d] in memory) so the caller's
    # transpose(1, 2).reshape(b, sq, h * d) stays a view instead of a copy (and its backward too).
    return context.transpose(1, 2).masked_fill(hidden_rows.transpose(1, 2), 0.0).transpose(1, 2)
