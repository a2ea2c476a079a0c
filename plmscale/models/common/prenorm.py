"""Pre-LN transformer layer (GPT-2, T5 and later): the norm sits on the residual branch's input, so
the residual stream itself is never normalised and a final norm closes the stack."""

from __future__ import annotations

import torch
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.models.common.attention import SelfAttention
from plmscale.models.common.cross_attention import CrossAttention
from plmscale.models.common.mlp import MLP
from plmscale.models.common.norms import build_norm


class PreLNLayer(nn.Module):
    """x = x + drop(attn(N(x))) [; x = x + drop(cross_attn(N(x), memory))]; x = x + drop(mlp(N(x))).

    ``causal`` selects causal attention; ``mask`` (boolean, True = hidden) adds to it, e.g.
    [b, 1, s, s] document-boundary masks. Norm, activation and biases follow the model config."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32", causal: bool = False,
                 output_init_std: float | None = None, *, cross_attention: bool = False,
                 attention_scale: float | None = None, inner_dropout: bool = False,
                 relative_position_bias: nn.Module | None = None):
        """``output_init_std``: init std of the two projections that write into the residual
        stream (GPT-2: init_std / sqrt(2 * layers)); None = the model's init_std.
        ``cross_attention``: attends to an encoder output (a T5 decoder layer);
        ``attention_scale``: factor on q.k (None = 1/sqrt(head_dim); T5 folds it into its init: 1);
        ``inner_dropout``: dropout after the FFN activation too (T5);
        ``relative_position_bias``: a module this layer owns for its stack (T5's first layer),
        run by the caller, which passes its output to every layer as ``position_bias``."""
        super().__init__()
        bias = cfg.add_bias_linear
        self.input_layernorm = build_norm(cfg)
        self.self_attention = SelfAttention(cfg, precision, causal=causal, bias=bias,
                                            scale=attention_scale)
        self.relative_position_bias = relative_position_bias
        self.cross_attention_layernorm = build_norm(cfg) if cross_attention else None
        self.cross_attention = (CrossAttention(cfg, precision, bias=bias, scale=attention_scale)
                                if cross_attention else None)
        self.pre_mlp_layernorm = build_norm(cfg)
        self.mlp = MLP(cfg, precision, inner_dropout=inner_dropout)
        self.dropout = nn.Dropout(cfg.hidden_dropout)
        if output_init_std is not None:
            # Read by the layout-independent initialiser, which draws the full tensor with it.
            for weight in (self.self_attention.linear_proj.weight, self.mlp.linear_fc2.weight):
                weight.init_std = output_init_std

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None,
                position_bias: torch.Tensor | None = None, memory: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``position_bias``: added to the scaled scores ([1, heads/tp, s, s], T5);
        ``memory`` / ``memory_mask``: the encoder output and its padding mask (cross attention)."""
        attention = self.self_attention(self.input_layernorm(hidden), mask, position_bias)
        hidden = hidden + self.dropout(attention)
        if self.cross_attention is not None:
            attention = self.cross_attention(self.cross_attention_layernorm(hidden), memory,
                                             memory_mask)
            hidden = hidden + self.dropout(attention)
        return hidden + self.dropout(self.mlp(self.pre_mlp_layernorm(hidden)))
