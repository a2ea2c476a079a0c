"""Feed-forward block: column-parallel fc1 -> bias+GELU (fused kernel on GPU) -> row-parallel fc2."""

from __future__ import annotations

import torch
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.kernels import bias_gelu
from plmscale.models.common.megatron import column_parallel, row_parallel


class MLP(nn.Module):
    """fc1's bias is added inside the GELU kernel (``skip_bias_add``) so bias+GELU is one pass."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32"):
        super().__init__()
        self.approximate = cfg.gelu_approximate
        self.fused = cfg.use_fused_kernels
        self.linear_fc1 = column_parallel(cfg.hidden_size, cfg.ffn_hidden_size, precision,
                                          skip_bias_add=True)
        self.linear_fc2 = row_parallel(cfg.ffn_hidden_size, cfg.hidden_size, precision)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        intermediate, bias = self.linear_fc1(hidden)
        intermediate = bias_gelu(intermediate, bias, self.approximate, fused=self.fused)
        out, _ = self.linear_fc2(intermediate)
        return out
