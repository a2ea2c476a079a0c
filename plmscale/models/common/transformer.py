"""Transformer layers and stacks shared by the families."""

from __future__ import annotations

import torch
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.models.common.attention import SelfAttention
from plmscale.models.common.mlp import MLP


class PostLNLayer(nn.Module):
    """BERT's layer: x = LN(x + drop(attn(x))); x = LN(x + drop(mlp(x)))."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32"):
        super().__init__()
        self.self_attention = SelfAttention(cfg, precision)
        self.attention_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_epsilon)
        self.mlp = MLP(cfg, precision)
        self.output_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_epsilon)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        hidden = self.attention_layernorm(hidden + self.dropout(self.self_attention(hidden, mask)))
        return self.output_layernorm(hidden + self.dropout(self.mlp(hidden)))


def padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """[b, s] with 1 = real token -> boolean [b, 1, 1, s] with True = hidden (the kernels' form)."""
    if attention_mask is None:
        return None
    return (attention_mask == 0)[:, None, None, :]
