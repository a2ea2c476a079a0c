"""Post-LN transformer layer (BERT's encoder layer, BART's encoder and decoder layers)."""

from __future__ import annotations

import torch
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.models.common.attention import SelfAttention, take_rows
from plmscale.models.common.cross_attention import CrossAttention
from plmscale.models.common.mlp import build_feed_forward
from plmscale.models.common.norms import build_norm


class PostLNLayer(nn.Module):
    """x = N(x + drop(attn(x))) [; x = N(x + drop(cross_attn(x, memory)))]; x = N(x + drop(mlp(x))).

    ``causal``: causal self-attention (a decoder); ``cross_attention``: attends to an encoder output
    (BART's decoder layer). Norm, activation and biases follow the model config; ``layer_number``
    (0-based) decides whether the FFN is a mixture of experts (``model.moe_layer_frequency``)."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32", causal: bool = False,
                 cross_attention: bool = False, layer_number: int = 0):
        super().__init__()
        self.self_attention = SelfAttention(cfg, precision, causal=causal, bias=cfg.add_bias_linear)
        self.attention_layernorm = build_norm(cfg)
        if cross_attention:
            self.cross_attention = CrossAttention(cfg, precision, bias=cfg.add_bias_linear)
            self.cross_attention_layernorm = build_norm(cfg)
        self.mlp = build_feed_forward(cfg, precision, layer_number)
        self.output_layernorm = build_norm(cfg)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None, memory=None,
                memory_mask=None, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``mask``: self-attention mask (None in BART's decoder: its padding sits at the end, so
        causal masking alone keeps real tokens off it); ``memory_mask``: the encoder's padding.
        ``rows`` [b, m]: compute the output at these positions only (``SelfAttention``; every
        position still serves as a key): [b, m, hidden]."""
        attended = self.self_attention(hidden, mask, rows=rows)
        if rows is not None:  # the residual, norms and FFN run on the selected rows only
            hidden = take_rows(hidden, rows, 1)
        hidden = self.attention_layernorm(hidden + self.dropout(attended))
        if memory is not None:
            hidden = self.cross_attention_layernorm(
                hidden + self.dropout(self.cross_attention(hidden, memory, memory_mask)))
        return self.output_layernorm(hidden + self.dropout(self.mlp(hidden)))


def padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """[b, s] with 1 = real token -> boolean [b, 1, 1, s] with True = hidden (the kernels' form)."""
    if attention_mask is None:
        return None
    return (attention_mask == 0)[:, None, None, :]
