"""Rotary position embeddings (RoPE; Su et al. 2021, "RoFormer"), applied to queries and keys.

The half-split form that HF Llama and megatron-core use: channel i of a head is paired with channel
i + head_dim/2 (not with its neighbour, as the original interleaved form), and pair i turns by
position * base^(-2i/head_dim). Weights in this form load into ``LlamaForCausalLM`` unpermuted.
Angles are computed in fp32 for positions 0..s-1 on every call (no cache to go stale across
lengths or devices); the rotation is cheap next to the attention matmuls.
"""

from __future__ import annotations

import torch


def rotary_cos_sin(seq_len: int, head_dim: int, base: float, device=None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [seq_len, head_dim] of positions 0..seq_len-1 (each angle written twice: once
    for each channel of its pair)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32)
                               / head_dim))
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: torch.Tensor, base: float) -> torch.Tensor:
    """``x`` [..., s, head_dim] (queries or keys, heads before the sequence) rotated by position."""
    cos, sin = rotary_cos_sin(x.shape[-2], x.shape[-1], base, x.device)
    rotated = x.float() * cos + _rotate_half(x.float()) * sin
    return rotated.to(x.dtype)
