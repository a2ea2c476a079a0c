"""XLNet's two-stream relative attention (Yang et al. 2019, section 2.3; Transformer-XL relative
positions, Dai et al. 2019), split over TP ranks by heads.

Every score is ``(q + r_w_bias).k + (q + r_r_bias).R[i - j] + (q + r_s_bias).seg_embed[s_ij]``
times 1/sqrt(d_head): content, position and segment terms. ``R`` is the sinusoidal encoding of the
relative distance (``sinusoidal_relative_encoding``), projected by ``r``; ``s_ij`` says only whether
i and j lie in different segments. The content stream (every position, queries from ``h``) and the
query stream (the predicted positions only, queries from ``g``) share the keys and values, which
come from the content stream: a query row never reads its own token.
"""

from __future__ import annotations

import math

import torch
from megatron.core import tensor_parallel
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.kernels import scaled_masked_softmax
from plmscale.models.common.megatron import column_parallel, row_parallel, tp_world
from plmscale.parallel.random import tensor_parallel_rng


def sinusoidal_relative_encoding(query_length: int, key_length: int, size: int,
                                 device=None) -> torch.Tensor:
    """[key_length + query_length, size]: row p encodes the distance ``key_length - p`` (from
    key_length down to -query_length + 1), as [sin, cos] at frequencies 1/10000^(2i/size)."""
    distance = torch.arange(key_length, -query_length, -1, device=device, dtype=torch.float32)
    inv_freq = 1.0 / 10000 ** (torch.arange(0, size, 2, device=device, dtype=torch.float32) / size)
    angles = distance[:, None] * inv_freq[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def _head_parameter(tp: int, *shape: int, dim: int) -> nn.Parameter:
    """A parameter split over TP ranks along its heads dimension ``dim``."""
    shape = list(shape)
    shape[dim] //= tp
    param = nn.Parameter(torch.empty(shape))
    tensor_parallel.set_tensor_model_parallel_attributes(param, True, dim, 1)
    return param


class TwoStreamRelativeAttention(nn.Module):
    """q, k, v, r: column-parallel, no bias (HF [d_model, heads, d_head] tensors, transposed and
    flattened); o: row-parallel, no bias; per-layer ``r_w_bias``, ``r_r_bias``, ``r_s_bias`` [heads,
    d_head] and ``seg_embed`` [2, heads, d_head]; post-LN with the residual (``layer_norm``)."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32"):
        super().__init__()
        _, tp = tp_world()
        self.heads = cfg.num_attention_heads // tp
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        inner = cfg.num_attention_heads * self.head_dim
        for name in ("q", "k", "v", "r"):
            setattr(self, name, column_parallel(cfg.hidden_size, inner, precision, bias=False))
        self.o = row_parallel(inner, cfg.hidden_size, precision, bias=False)
        for name in ("r_w_bias", "r_r_bias", "r_s_bias"):
            setattr(self, name, _head_parameter(tp, cfg.num_attention_heads, self.head_dim, dim=0))
        self.seg_embed = _head_parameter(tp, 2, cfg.num_attention_heads, self.head_dim, dim=1)
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_epsilon)
        self.dropout = nn.Dropout(cfg.hidden_dropout)
        self.attention_dropout = nn.Dropout(cfg.attention_dropout)
        self.fused = cfg.use_fused_kernels

    def _heads(self, linear, x: torch.Tensor) -> torch.Tensor:
        out, _ = linear(x)
        return out.view(*x.shape[:-1], self.heads, self.head_dim)

    def _attend(self, q, query_positions, k, v, kr, query_segments, key_segments, mask):
        """Context [b, m, heads * d_head] of queries ``q`` [b, m, heads, d] sitting at
        ``query_positions`` [b, m] (indices into the keys) over the keys ``k``/``v`` [b, K, heads,
        d]; ``kr`` [K + L, heads, d] the projected relative encodings; segments [b, m] / [b, K] or
        None; ``mask`` [b, m, K] (True = hidden) or None."""
        length = k.shape[1]
        content = torch.einsum("bmnd,bjnd->bnmj", q + self.r_w_bias, k)
        position = torch.einsum("bmnd,pnd->bnmp", q + self.r_r_bias, kr)
        # Row p of kr is the distance key_length - p: query i and key j are i - j apart.
        index = torch.arange(length, device=q.device)[None, None, :] + length \
            - query_positions[:, :, None]
        position = position.gather(-1, index[:, None].expand(-1, self.heads, -1, -1))
        scores = content + position
        if query_segments is not None:
            segment = torch.einsum("bmnd,snd->bnms", q + self.r_s_bias, self.seg_embed)
            different = (query_segments[:, :, None] != key_segments[:, None, :])[:, None]
            scores = scores + torch.where(different, segment[..., 1:], segment[..., :1])
        probs = scaled_masked_softmax(scores, None if mask is None else mask[:, None],
                                      scale=1.0 / math.sqrt(self.head_dim), fused=self.fused)
        with tensor_parallel_rng():  # each TP rank holds different heads: independent masks
            probs = self.attention_dropout(probs)
        return torch.einsum("bnmj,bjnd->bmnd", probs, v).flatten(2)

    def _post(self, residual, context):
        out, _ = self.o(context)
        return self.layer_norm(residual + self.dropout(out))

    def forward(self, h, g, relative, segments, content_mask, query_mask, target_positions,
                memory=None, memory_hidden=None):
        """``h`` [b, L, H] content stream; ``g`` [b, m, H] query stream at ``target_positions``
        [b, m] (or None); ``relative`` [K + L, H] (``sinusoidal_relative_encoding`` over K = M + L
        keys); ``segments`` [b, L] or None; masks [b, L, L] (True = hidden) or None; ``memory``
        [b, M, H] (Transformer-XL: earlier hidden states, read as keys and values only, segment 0,
        visible to every row unless ``memory_hidden`` [b, M] says so) or None. Returns (h, g)."""
        b, length, _ = h.shape
        mlen = 0 if memory is None else memory.shape[1]
        keys = h if memory is None else torch.cat([memory, h], dim=1)
        k, v = self._heads(self.k, keys), self._heads(self.v, keys)
        kr = self._heads(self.r, relative)
        key_segments = segments
        if segments is not None and mlen:  # memory counts as segment 0, as HF and the original
            key_segments = torch.cat([segments.new_zeros(b, mlen), segments], dim=1)
        positions = torch.arange(length, device=h.device).expand(b, -1)
        h_out = self._post(h, self._attend(
            self._heads(self.q, h), positions + mlen, k, v, kr, segments, key_segments,
            _with_memory(content_mask, memory_hidden, b, length, length, mlen)))
        if g is None:
            return h_out, None
        rows = None
        if query_mask is not None:
            rows = query_mask.gather(1, target_positions[:, :, None].expand(-1, -1, length))
        g_out = self._post(g, self._attend(
            self._heads(self.q, g), target_positions + mlen, k, v, kr,
            None if segments is None else segments.gather(1, target_positions), key_segments,
            _with_memory(rows, memory_hidden, b, target_positions.shape[1], length, mlen)))
        return h_out, g_out


def _with_memory(mask, memory_hidden, b: int, rows: int, length: int, mlen: int):
    """``mask`` [b, rows, length] (None: nothing hidden) extended over ``mlen`` memory columns in
    front, hidden where ``memory_hidden`` [b, mlen] is True (None: all visible)."""
    if not mlen or (mask is None and memory_hidden is None):
        return mask
    device = (mask if mask is not None else memory_hidden).device
    if mask is None:
        mask = torch.zeros(b, rows, length, dtype=torch.bool, device=device)
    front = (torch.zeros(b, rows, mlen, dtype=torch.bool, device=device) if memory_hidden is None
             else memory_hidden[:, None, :].expand(-1, rows, -1))
    return torch.cat([front, mask], dim=-1)
