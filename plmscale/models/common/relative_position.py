"""T5's bucketed relative position bias (Raffel et al. 2020, section 2.1), split over TP ranks by heads.

A scalar per (bucket, head) is added to the attention scores. Relative distances map to buckets: half of
them for exact small distances, the other half logarithmically up to ``max_distance`` (beyond it all
distances share the last bucket). Bidirectional attention uses separate buckets for keys before and
after the query; causal attention only looks back, so it uses all buckets for the past.
"""

from __future__ import annotations

import math

import torch
from megatron.core import tensor_parallel
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.models.common.megatron import tp_world


def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool,
                             num_buckets: int = 32, max_distance: int = 128) -> torch.Tensor:
    """Bucket index in [0, num_buckets) of each ``key_position - query_position``."""
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).long() * num_buckets  # keys after the query
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)  # future keys count as distance 0 (masked anyway)
    max_exact = num_buckets // 2
    # Logarithmic bins between max_exact and max_distance. The float expression is evaluated in the
    # same order as Mesh TensorFlow / HF so that boundary distances land in the same bucket.
    # (clamp(min=1) only avoids log(0) for distances that take the exact branch anyway.)
    log_ratio = torch.log(distance.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (num_buckets - max_exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return buckets + torch.where(distance < max_exact, distance, large)


class RelativePositionBias(nn.Module):
    """``weight`` [num_buckets, heads] with this TP rank's heads (a slice along dim 1).

    ``forward(query_length, key_length)`` -> bias [1, heads/tp, query_length, key_length] for the
    attention scores of this rank's heads.
    """

    def __init__(self, cfg: ModelConfig, bidirectional: bool):
        super().__init__()
        _, tp = tp_world()
        self.bidirectional = bidirectional
        self.num_buckets = cfg.relative_attention_num_buckets
        self.max_distance = cfg.relative_attention_max_distance
        self.weight = nn.Parameter(torch.empty(self.num_buckets, cfg.num_attention_heads // tp))
        tensor_parallel.set_tensor_model_parallel_attributes(self.weight, True, 1, 1)
        self._buckets: dict[tuple, torch.Tensor] = {}

    def buckets(self, query_length: int, key_length: int, device) -> torch.Tensor:
        """[query_length, key_length] bucket indices (cached: they depend on the shape only)."""
        key = (query_length, key_length, str(device))
        if key not in self._buckets:
            query = torch.arange(query_length, device=device)[:, None]
            memory = torch.arange(key_length, device=device)[None, :]
            self._buckets[key] = relative_position_bucket(memory - query, self.bidirectional,
                                                          self.num_buckets, self.max_distance)
        return self._buckets[key]

    def forward(self, query_length: int, key_length: int) -> torch.Tensor:
        values = self.weight[self.buckets(query_length, key_length, self.weight.device)]
        return values.permute(2, 0, 1).unsqueeze(0)
