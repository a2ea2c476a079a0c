"""Mixture-of-experts feed-forward blocks on DeepSpeed's native MoE engine (see ``layer``), the
routing losses' path to the loss (``routing``), expert-parallel groups and names (``parallel``)."""

from plmscale.models.common.mlp import build_feed_forward, is_moe_layer
from plmscale.models.moe.layer import MoEFeedForward
from plmscale.models.moe.routing import carry_routing

__all__ = ["MoEFeedForward", "build_feed_forward", "carry_routing", "is_moe_layer"]
