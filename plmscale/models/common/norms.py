"""Normalisation layers beyond ``torch.nn.LayerNorm``, and the factory the families choose with.

Class names contain "Norm" on purpose: ``plmscale.parallel.initialization`` recognises norms by name and
sets their scales to 1.
"""

from __future__ import annotations

import torch
from torch import nn

from plmscale.config.schema import ModelConfig


class RMSNorm(nn.Module):
    """Scale-only normalisation (T5's "layer norm"): ``weight * x / sqrt(mean(x^2) + eps)``.

    No mean subtraction and no bias. The mean square is accumulated in fp32 whatever the input dtype,
    and the result is cast back to the weight's dtype when that is half precision (as T5 does).
    """

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        variance = hidden.float().pow(2).mean(-1, keepdim=True)
        hidden = hidden * torch.rsqrt(variance + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            hidden = hidden.to(self.weight.dtype)
        return self.weight * hidden


def build_norm(cfg: ModelConfig, hidden_size: int | None = None) -> nn.Module:
    """The norm ``cfg.normalization`` names ("layernorm" or "rmsnorm") over ``hidden_size``."""
    size = hidden_size or cfg.hidden_size
    if cfg.normalization == "layernorm":
        return nn.LayerNorm(size, eps=cfg.layernorm_epsilon)
    if cfg.normalization == "rmsnorm":
        return RMSNorm(size, eps=cfg.layernorm_epsilon)
    raise ValueError(f"model.normalization={cfg.normalization!r}; valid: 'layernorm', 'rmsnorm'")
