"""Multi-head self-attention split over TP ranks by heads.

``linear_qkv`` is column-parallel; its output rows are laid out head by head ([head][q,k,v][head_dim]) so
that a contiguous TP slice holds whole heads with their q, k and v. With grouped-query attention
(``num_query_groups`` key/value heads, each shared by heads/groups query heads) the rows are laid out
group by group, [group][q_1..q_{heads/groups}, k, v][head_dim] (megatron-core's layout), so a TP
slice holds whole groups; with one query head per group this is the per-head layout above. ``linear_proj`` is row-parallel and
all-reduces the output. The attention itself is ``attention_core.attend``: the backend chosen by
``model.attention_backend`` (SDPA by default), every mask kind, dropout on the TP rank's own stream.

``rows`` (``take_rows``) computes the output at some query positions only (the last encoder layer of
an MLM model, whose losses read ~15% of the positions): q, k and v come from every position (one
fused projection), then only the selected queries attend and go through the output projection.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.models.common.attention_core import attend, check_backend
from plmscale.models.common.megatron import column_parallel, row_parallel, tp_world
from plmscale.models.common.rotary import apply_rotary


class SelfAttention(nn.Module):
    """Bidirectional (``causal=False``) or causal self-attention; ``mask`` is boolean, True = hidden."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32", causal: bool = False,
                 bias: bool = True, scale: float | None = None, num_query_groups: int | None = None,
                 rotary_base: float | None = None):
        """``scale``: factor applied to q.k (None = 1/sqrt(head_dim); T5 uses 1.0). The per-head
        width is ``cfg.kv_channels`` when set, else hidden_size / num_attention_heads.
        ``num_query_groups``: key/value heads (None = one per query head); ``rotary_base``: rotate
        q and k by position with this RoPE base (None = no rotary positions)."""
        super().__init__()
        _, tp = tp_world()
        self.heads_per_rank = cfg.num_attention_heads // tp
        groups = num_query_groups or cfg.num_attention_heads
        self.heads_per_group = cfg.num_attention_heads // groups
        self.groups_per_rank = groups // tp
        self.rotary_base = rotary_base
        self.head_dim = cfg.kv_channels or cfg.hidden_size // cfg.num_attention_heads
        self.scale = 1.0 / math.sqrt(self.head_dim) if scale is None else scale
        self.causal = causal
        self.fused = cfg.use_fused_kernels
        self.backend = check_backend(cfg.attention_backend)
        inner = cfg.num_attention_heads * self.head_dim
        self.linear_qkv = column_parallel(cfg.hidden_size, inner + 2 * groups * self.head_dim,
                                          precision, bias)
        self.linear_proj = row_parallel(inner, cfg.hidden_size, precision, bias)
        self.attention_dropout = nn.Dropout(cfg.attention_dropout)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None,
                position_bias: torch.Tensor | None = None,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """``position_bias``: added to the scaled scores before the softmax, broadcastable to
        [b, heads/tp, s, s] (T5's relative attention bias for this rank's heads). ``rows`` [b, m]:
        the query positions to compute (bidirectional attention only); the output is then
        [b, m, hidden], row j of sample i being position ``rows[i, j]``'s."""
        b, s, _ = hidden.shape
        qkv, _ = self.linear_qkv(hidden)
        q, k, v = self._split_qkv(qkv.view(b, s, self.groups_per_rank, self.heads_per_group + 2,
                                           self.head_dim))
        if rows is not None:  # keys and values keep every position; so do the masks' key columns
            if self.causal:
                raise ValueError("SelfAttention(rows=...) is for bidirectional attention only")
            q, mask, position_bias = (take_rows(t, rows, 2) for t in (q, mask, position_bias))
        dropout = self.attention_dropout.p if self.training else 0.0
        context = attend(q, k, v, scale=self.scale, mask=mask, bias=position_bias,
                         causal=self.causal, dropout_p=dropout, backend=self.backend,
                         fused=self.fused)
        context = context.transpose(1, 2).reshape(b, q.shape[2], -1)
        out, _ = self.linear_proj(context)
        return out

    def _split_qkv(self, grouped: torch.Tensor):
        """[b, s, groups, heads/groups + 2, d] -> q, k, v [b, heads, s, d] (this rank's), rotated
        when rotary; each key/value head is repeated for the query heads of its group."""
        b, s, per_group = grouped.shape[0], grouped.shape[1], self.heads_per_group
        # One split (backward: one cat) rather than three indexings, whose backward passes each
        # zero-fill a full-size gradient, copy into it and add the three up.
        q, k, v = grouped.split([per_group, 1, 1], dim=3)
        q = q.reshape(b, s, self.heads_per_rank, -1).transpose(1, 2)
        k, v = k.squeeze(3).transpose(1, 2), v.squeeze(3).transpose(1, 2)
        if self.rotary_base is not None:
            q, k = apply_rotary(q, self.rotary_base), apply_rotary(k, self.rotary_base)
        if per_group > 1:
            k, v = k.repeat_interleave(per_group, dim=1), v.repeat_interleave(per_group, dim=1)
        return q, k, v


def take_rows(tensor: torch.Tensor | None, rows: torch.Tensor, dim: int) -> torch.Tensor | None:
    """``tensor`` at positions ``rows`` [b, m] along ``dim``: [b, .., s, ..] -> [b, .., m, ..]. A
    batch dimension of 1 is broadcast; a ``dim`` of size 1 (a padding mask's query axis) and None
    are returned as they are."""
    if tensor is None or tensor.shape[dim] == 1:
        return tensor
    tensor = tensor.expand(rows.shape[0], *tensor.shape[1:])
    shape = [rows.shape[0]] + [1] * (tensor.dim() - 1)
    shape[dim] = rows.shape[1]
    index = rows.view(shape).expand(*tensor.shape[:dim], rows.shape[1], *tensor.shape[dim + 1:])
    return tensor.gather(dim, index)
