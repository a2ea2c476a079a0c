"""Auxiliary-loss-free load balancing (DeepSeek-V3, Liu et al. 2024, section 2.1.2; megatron-core's
``moe_router_enable_expert_bias``): a per-expert bias added to the router's scores to choose the
top-k experts, never to weight their outputs, and moved after each optimizer step by
``rate * sign(mean load - load)``: an overloaded expert's bias falls, an idle one's rises.

``BiasedTopKGate`` is DeepSpeed's ``TopKGate`` (its top-1 / top-2 / top-k gating functions, capacity
and token dropping, and the sparse routes its ``MOELayer`` dispatches) shown the biased scores
``softmax(logits) + bias`` as its logits, whose order is the order of the scores the gate would
otherwise pick from; the weights of the chosen routes are then taken again from the unbiased
softmax (renormalised over the k routes for k >= 2, as DeepSpeed's gates do; dropped routes 0), and
the auxiliary loss is the top-k form E * sum_e mean(p_e) * load_e / (S * k) on unbiased
probabilities. Loads are the gate's expert counts before dropping, summed over the step's
micro-batches and all-reduced over the data-parallel group (every replica then moves its bias
the same way; TP peers see the same tokens).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from deepspeed.moe.sharded_moe import TopKGate, multiplicative_jitter, top1gating, top2gating, topkgating


class BiasedTopKGate(TopKGate):
    """``TopKGate`` choosing experts by ``softmax(logits) + routing_bias`` (see the module docstring).
    ``routing_bias`` is a persistent buffer (checkpointed with the dense weights: its name must not
    contain "expert", which DeepSpeed's ``_save_moe_checkpoint`` takes for an expert parameter and
    fails on); ``load`` counts routes since the last ``update_bias``."""

    def enable_bias(self, rate: float) -> None:
        """Turn a built ``TopKGate`` into this class (DeepSpeed's ``MoE`` builds its own gate)."""
        self.__class__ = BiasedTopKGate
        self.rate = rate
        experts = self.wg.weight.shape[0]
        self.register_buffer("routing_bias", torch.zeros(experts), persistent=True)
        self.register_buffer("load", torch.zeros(experts), persistent=False)

    def forward(self, input, used_token=None, sparse_routes=False, use_tutel=False):
        if not sparse_routes:
            raise NotImplementedError("the biased gate serves DeepSpeed's sparse-route dispatch only")
        hidden = input.float()
        if self.noisy_gate_policy == "Jitter" and self.training:
            hidden = multiplicative_jitter(hidden, device=input.device)
        probs = F.softmax(F.linear(hidden, self.wg.weight.float()), dim=1)
        scores = (probs + self.routing_bias).detach()  # chooses; carries no gradient
        capacity = self.capacity_factor if self.training else self.eval_capacity_factor
        if self.k == 1:
            routed = top1gating(scores, capacity, self.min_capacity, used_token, None,
                                self.drop_tokens, self.use_rts, self.ep_group, True, use_tutel)
        elif self.k == 2:
            routed = top2gating(scores, capacity, self.min_capacity, self.drop_tokens,
                                self.ep_group, self.top2_2nd_expert_sampling, True)
        else:
            routed = topkgating(scores, self.k, capacity, self.min_capacity, self.drop_tokens,
                                self.ep_group, sparse_routes=True)
        _, cap, experts, indices, locations, _, counts = routed
        weights = probs.t().gather(0, indices.clamp(min=0).long()) * (indices >= 0)
        if self.k > 1:
            weights = weights / weights.sum(0, keepdim=True).clamp(min=torch.finfo(weights.dtype).eps)
        tokens = probs.shape[0]
        aux = experts * (probs.mean(0) * counts.float() / (tokens * self.k)).sum()
        if self.training:
            self.load += counts.detach().float()
        return aux, cap, experts, indices, locations, weights, counts

    @torch.no_grad()
    def update_bias(self, group=None) -> None:
        """After an optimizer step: all-reduce the step's load over ``group`` and move the bias by
        ``rate * sign(mean - load)``; the load restarts."""
        load = self.load.clone()
        if group is not None and torch.distributed.get_world_size(group) > 1:
            torch.distributed.all_reduce(load, group=group)
        self.routing_bias += self.rate * torch.sign(load.mean() - load)
        self.load.zero_()


def update_expert_biases(model: torch.nn.Module) -> None:
    """After each optimizer step of ``model`` (the ordinary model or this rank's pipeline stage):
    move every biased gate's bias (no-op without them). Collective over the data-parallel group."""
    gates = [m for m in model.modules() if isinstance(m, BiasedTopKGate)]
    if not gates:
        return
    from megatron.core import parallel_state as ps
    group = ps.get_data_parallel_group() if ps.model_parallel_is_initialized() else None
    for gate in gates:
        gate.update_bias(group)
