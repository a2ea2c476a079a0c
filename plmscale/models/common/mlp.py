"""Feed-forward block: column-parallel fc1 -> activation -> row-parallel fc2, with the spec-style
switches every family shares: ``model.activation`` ("gelu", "relu", "gated-gelu", "swiglu") and
``model.add_bias_linear``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.kernels import bias_gelu
from plmscale.models.common.megatron import column_parallel, row_parallel
from plmscale.parallel.random import tensor_parallel_rng

ACTIVATIONS = ("gelu", "relu", "gated-gelu", "swiglu")
GATED = ("gated-gelu", "swiglu")


class MLP(nn.Module):
    """``linear_fc2(act(linear_fc1(x)))``, or gated: ``linear_fc2(act(linear_fc1(x)) * linear_fc1_up(x))``
    (T5 v1.1: ``linear_fc1_up`` is the linear half, HF ``wi_1``; "swiglu" gates with SiLU, Llama's
    ``down(silu(gate(x)) * up(x))`` with fc1 = gate, fc1_up = up). With a bias and GELU, fc1's bias
    is added inside the GELU kernel (``skip_bias_add``) so bias+GELU is one pass. ``inner_dropout``:
    dropout on the intermediate activations (T5), drawn per TP rank since they are split."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32", inner_dropout: bool = False):
        super().__init__()
        if cfg.activation not in ACTIVATIONS:
            raise ValueError(f"model.activation={cfg.activation!r}; valid: {ACTIVATIONS}")
        bias = cfg.add_bias_linear
        self.activation, self.approximate = cfg.activation, cfg.gelu_approximate
        self.fused = cfg.use_fused_kernels
        self.linear_fc1 = column_parallel(cfg.hidden_size, cfg.ffn_hidden_size, precision, bias,
                                          skip_bias_add=bias and cfg.activation == "gelu")
        self.linear_fc1_up = (column_parallel(cfg.hidden_size, cfg.ffn_hidden_size, precision, bias)
                              if cfg.activation in GATED else None)
        self.linear_fc2 = row_parallel(cfg.ffn_hidden_size, cfg.hidden_size, precision, bias)
        self.dropout = nn.Dropout(cfg.hidden_dropout) if inner_dropout else None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        intermediate, bias = self.linear_fc1(hidden)
        if bias is not None:
            intermediate = bias_gelu(intermediate, bias, self.approximate, fused=self.fused)
        else:
            intermediate = activate(intermediate, self.activation, self.approximate)
        if self.linear_fc1_up is not None:
            intermediate = intermediate * self.linear_fc1_up(hidden)[0]
        if self.dropout is not None:
            with tensor_parallel_rng():
                intermediate = self.dropout(intermediate)
        out, _ = self.linear_fc2(intermediate)
        return out

    def output_weights(self) -> list[torch.Tensor]:
        """Projections that write into the residual stream (GPT-2 scales their init)."""
        return [self.linear_fc2.weight]


def activate(intermediate: torch.Tensor, activation: str, approximate: str) -> torch.Tensor:
    """The FFN nonlinearity: ReLU, SiLU for the gated half of "swiglu", or GELU (in the
    ``approximate`` form) for "gelu" and the gated half of "gated-gelu"."""
    if activation == "relu":
        return F.relu(intermediate)
    if activation == "swiglu":
        return F.silu(intermediate)
    return F.gelu(intermediate, approximate=approximate)


def is_moe_layer(cfg: ModelConfig, layer_number: int) -> bool:
    """Layer ``layer_number`` (0-based, within its stack) holds experts: every
    ``moe_layer_frequency``-th layer, the last of each group (Switch: layers 1, 3, 5, ...)."""
    return cfg.num_experts > 0 and (layer_number + 1) % cfg.moe_layer_frequency == 0


def build_feed_forward(cfg: ModelConfig, precision: str = "fp32", layer_number: int = 0,
                       inner_dropout: bool = False) -> nn.Module:
    """The feed-forward block of layer ``layer_number``: the dense ``MLP``, or the mixture of experts
    (``plmscale.models.moe``) where ``is_moe_layer`` says so. The one place a transformer layer
    chooses between them."""
    if is_moe_layer(cfg, layer_number):
        from plmscale.models.moe.layer import MoEFeedForward  # it builds on this module
        return MoEFeedForward(cfg, inner_dropout)
    return MLP(cfg, precision, inner_dropout=inner_dropout)
