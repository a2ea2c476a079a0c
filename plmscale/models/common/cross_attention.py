"""Encoder-decoder (cross) attention split over TP ranks by heads.

Queries come from the decoder stream through a column-parallel ``linear_q``; keys and values come from
the encoder output through one column-parallel ``linear_kv`` whose output rows are laid out head by
head ([head][k,v][head_dim]), so a contiguous TP slice holds whole heads with both their k and v (the
same idea as ``SelfAttention``'s fused qkv). ``linear_proj`` is row-parallel and all-reduces. The
attention itself is ``attention_core.attend`` (backend from ``model.attention_backend``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.models.common.attention_core import attend, check_backend
from plmscale.models.common.megatron import column_parallel, row_parallel, tp_world


class CrossAttention(nn.Module):
    """Attention of ``hidden`` [b, sq, h] over ``memory`` [b, sk, h_mem].

    ``bias``: biases on the projections (BART yes, T5 no). ``scale``: the factor applied to q.k
    (None = 1/sqrt(head_dim); T5 uses 1.0). ``kv_input_size``: width of ``memory`` (None = hidden_size).
    The per-head width is ``cfg.kv_channels`` when set, else hidden_size / num_attention_heads.
    """

    def __init__(self, cfg: ModelConfig, precision: str = "fp32", bias: bool = True,
                 scale: float | None = None, kv_input_size: int | None = None):
        super().__init__()
        _, tp = tp_world()
        heads = cfg.num_attention_heads
        self.heads_per_rank = heads // tp
        self.head_dim = cfg.kv_channels or cfg.hidden_size // heads
        self.scale = 1.0 / math.sqrt(self.head_dim) if scale is None else scale
        self.fused = cfg.use_fused_kernels
        self.backend = check_backend(cfg.attention_backend)
        inner = heads * self.head_dim
        self.linear_q = column_parallel(cfg.hidden_size, inner, precision, bias)
        self.linear_kv = column_parallel(kv_input_size or cfg.hidden_size, 2 * inner, precision, bias)
        self.linear_proj = row_parallel(inner, cfg.hidden_size, precision, bias)
        self.attention_dropout = nn.Dropout(cfg.attention_dropout)

    def forward(self, hidden: torch.Tensor, memory: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask``: boolean, True = hidden key, broadcastable to [b, heads, sq, sk] (e.g. the
        encoder's padding mask [b, 1, 1, sk] from ``padding_mask``)."""
        b, sq, _ = hidden.shape
        sk = memory.shape[1]
        q, _ = self.linear_q(hidden)
        q = q.view(b, sq, self.heads_per_rank, self.head_dim).transpose(1, 2)
        kv, _ = self.linear_kv(memory)
        k, v = kv.view(b, sk, self.heads_per_rank, 2, self.head_dim).permute(3, 0, 2, 1, 4)
        context = attend(q, k, v, scale=self.scale, mask=mask,
                         dropout_p=self.attention_dropout.p if self.training else 0.0,
                         backend=self.backend, fused=self.fused)
        context = context.transpose(1, 2).reshape(b, sq, -1)
        out, _ = self.linear_proj(context)
        return out


def split_heads(weight: torch.Tensor, heads: int, parts: int) -> list[torch.Tensor]:
    """A full fused weight or bias whose rows are laid out [head][part][head_dim] (``SelfAttention``'s
    qkv: 3 parts, ``linear_kv``: 2) -> one [heads * head_dim, ...] tensor per part, as HF keeps them
    (for export; copies, so no two share storage)."""
    head_dim = weight.shape[0] // (parts * heads)
    per_head = weight.reshape(heads, parts, head_dim, *weight.shape[1:])
    return [per_head[:, i].reshape(heads * head_dim, *weight.shape[1:]).clone() for i in range(parts)]
