"""Pre-LN transformer layer (GPT-2 and later): the norm sits on the residual branch's input, so the
residual stream itself is never normalised and a final norm closes the stack."""

from __future__ import annotations

import torch
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.models.common.attention import SelfAttention
from plmscale.models.common.mlp import build_feed_forward
from plmscale.models.common.norms import build_norm


class PreLNLayer(nn.Module):
    """x = x + drop(attn(N(x))); x = x + drop(mlp(N(x))). ``causal`` selects causal attention;
    ``mask`` (boolean, True = hidden) adds to it, e.g. [b, 1, s, s] document-boundary masks."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32", causal: bool = False,
                 output_init_std: float | None = None, layer_number: int = 0):
        """``output_init_std``: init std of the projections that write into the residual stream
        (GPT-2: init_std / sqrt(2 * layers)); None = the model's init_std. ``layer_number``
        (0-based) decides whether the FFN is a mixture of experts (``model.moe_layer_frequency``)."""
        super().__init__()
        self.input_layernorm = build_norm(cfg)
        self.self_attention = SelfAttention(cfg, precision, causal=causal, bias=cfg.add_bias_linear)
        self.pre_mlp_layernorm = build_norm(cfg)
        self.mlp = build_feed_forward(cfg, precision, layer_number)
        self.dropout = nn.Dropout(cfg.hidden_dropout)
        if output_init_std is not None:
            # Read by the layout-independent initialiser, which draws the full tensor with it.
            for weight in (self.self_attention.linear_proj.weight, *self.mlp.output_weights()):
                weight.init_std = output_init_std

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = hidden + self.dropout(self.self_attention(self.input_layernorm(hidden), mask))
        return hidden + self.dropout(self.mlp(self.pre_mlp_layernorm(hidden)))
