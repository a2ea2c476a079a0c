"""Multi-head self-attention split over TP ranks by heads.

``linear_qkv`` is column-parallel; its output rows are laid out head by head ([head][q,k,v][head_dim]) so
that a contiguous TP slice holds whole heads with their q, k and v. ``linear_proj`` is row-parallel and
all-reduces the output. The attention itself is ``attention_core.attend``: the backend chosen by
``model.attention_backend`` (SDPA by default), every mask kind, dropout on the TP rank's own stream.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.models.common.attention_core import attend, check_backend
from plmscale.models.common.megatron import column_parallel, row_parallel, tp_world


class SelfAttention(nn.Module):
    """Bidirectional (``causal=False``) or causal self-attention; ``mask`` is boolean, True = hidden."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32", causal: bool = False,
                 bias: bool = True, scale: float | None = None):
        """``scale``: factor applied to q.k (None = 1/sqrt(head_dim); T5 uses 1.0). The per-head
        width is ``cfg.kv_channels`` when set, else hidden_size / num_attention_heads."""
        super().__init__()
        _, tp = tp_world()
        self.heads_per_rank = cfg.num_attention_heads // tp
        self.head_dim = cfg.kv_channels or cfg.hidden_size // cfg.num_attention_heads
        self.scale = 1.0 / math.sqrt(self.head_dim) if scale is None else scale
        self.causal = causal
        self.fused = cfg.use_fused_kernels
        self.backend = check_backend(cfg.attention_backend)
        inner = cfg.num_attention_heads * self.head_dim
        self.linear_qkv = column_parallel(cfg.hidden_size, 3 * inner, precision, bias)
        self.linear_proj = row_parallel(inner, cfg.hidden_size, precision, bias)
        self.attention_dropout = nn.Dropout(cfg.attention_dropout)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None,
                position_bias: torch.Tensor | None = None) -> torch.Tensor:
        """``position_bias``: added to the scaled scores before the softmax, broadcastable to
        [b, heads/tp, s, s] (T5's relative attention bias for this rank's heads)."""
        b, s, _ = hidden.shape
        qkv, _ = self.linear_qkv(hidden)
        q, k, v = qkv.view(b, s, self.heads_per_rank, 3, self.head_dim).permute(3, 0, 2, 1, 4)
        dropout = self.attention_dropout.p if self.training else 0.0
        context = attend(q, k, v, scale=self.scale, mask=mask, bias=position_bias,
                         causal=self.causal, dropout_p=dropout, backend=self.backend,
                         fused=self.fused)
        context = context.transpose(1, 2).reshape(b, s, -1)
        out, _ = self.linear_proj(context)
        return out
