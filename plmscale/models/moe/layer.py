"""The mixture-of-experts feed-forward block, on DeepSpeed's native MoE engine
(``deepspeed.moe.layer.MoE``: its gate, capacity, token dispatch and expert-parallel all-to-all).

Switch (top-1), GShard / Mixtral (top-2) and DeepSeekMoE (fine-grained routed experts, top-k, plus
always-on shared experts) are settings of one block:

* ``moe_top_k`` picks DeepSpeed's gate: top-1 (Switch), top-2 (GShard), k > 2 (its top-k gate);
* ``moe_ffn_hidden_size`` narrows the experts (fine-grained), ``moe_shared_experts`` adds a dense
  MLP of ``n x moe_ffn_hidden_size`` that every token passes through, optionally scaled by a
  sigmoid gate (``moe_shared_expert_gate``, Qwen2-MoE);
* ``moe_capacity_factor`` with token dropping, or ``moe_dropless``.

Experts are plain per-expert MLPs (no tensor parallelism inside an expert): under TP DeepSpeed splits
the expert slots over the TP ranks and gathers them back. Each forward leaves a ``Routing`` record
(auxiliary and z losses with their graph, dropped fraction, load) that ``plmscale.models.moe.routing``
moves into the pieces' state, so the loss sees it on any pipeline stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.models.common.mlp import GATED, activate
from plmscale.models.moe.compat import install_gloo_gather_shim


class ExpertMLP(nn.Module):
    """One expert: ``linear_fc2(act(linear_fc1(x)) [* linear_fc1_up(x)])`` with plain linears of
    width ``ffn``; the activation and biases follow the model (as the dense ``MLP``)."""

    def __init__(self, cfg: ModelConfig, ffn: int, inner_dropout: bool = False):
        super().__init__()
        bias = cfg.add_bias_linear
        self.activation, self.approximate = cfg.activation, cfg.gelu_approximate
        self.linear_fc1 = nn.Linear(cfg.hidden_size, ffn, bias=bias)
        self.linear_fc1_up = (nn.Linear(cfg.hidden_size, ffn, bias=bias)
                              if cfg.activation in GATED else None)
        self.linear_fc2 = nn.Linear(ffn, cfg.hidden_size, bias=bias)
        self.dropout = nn.Dropout(cfg.hidden_dropout) if inner_dropout else None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        intermediate = activate(self.linear_fc1(hidden), self.activation, self.approximate)
        if self.linear_fc1_up is not None:
            intermediate = intermediate * self.linear_fc1_up(hidden)
        if self.dropout is not None:
            intermediate = self.dropout(intermediate)
        return self.linear_fc2(intermediate)

    def output_weights(self) -> list[torch.Tensor]:
        return [self.linear_fc2.weight]


@dataclass
class Routing:
    """What one MoE forward reports: ``aux_loss`` (load balancing, DeepSpeed's gate formula: Switch's
    E * sum_i f_i * P_i) and ``z_loss`` (ST-MoE: mean over tokens of logsumexp(router logits)^2),
    both with their graph; ``weighted`` = the part added to the training loss; ``dropped_fraction``
    of the (token, expert) routes over capacity; ``load_max_over_mean`` of the experts' token counts
    before dropping (1 = balanced)."""

    aux_loss: torch.Tensor
    z_loss: torch.Tensor
    weighted: torch.Tensor
    dropped_fraction: torch.Tensor
    load_max_over_mean: torch.Tensor


class MoEFeedForward(nn.Module):
    """Routed experts on ``deepspeed.moe.layer.MoE`` (+ shared experts). ``forward(x) -> y`` of the
    same shape; ``self.routing`` holds the last forward's ``Routing`` until it is collected."""

    def __init__(self, cfg: ModelConfig, inner_dropout: bool = False):
        super().__init__()
        from deepspeed.moe.layer import MoE
        install_gloo_gather_shim()
        ffn = cfg.moe_ffn_hidden_size or cfg.ffn_hidden_size
        self.num_experts, self.top_k = cfg.num_experts, cfg.moe_top_k
        self.aux_coeff, self.z_coeff = cfg.moe_aux_loss_coeff, cfg.moe_z_loss_coeff
        self.moe = MoE(cfg.hidden_size, ExpertMLP(cfg, ffn, inner_dropout), cfg.num_experts,
                       ep_size=cfg.expert_model_parallel_size, k=cfg.moe_top_k, capacity_factor=cfg.moe_capacity_factor,
                       eval_capacity_factor=cfg.moe_capacity_factor,
                       # No floor under the capacity: it is exactly ceil(k * cf * tokens / E).
                       min_capacity=0, drop_tokens=not cfg.moe_dropless,
                       noisy_gate_policy="Jitter" if cfg.moe_router_jitter else None,
                       # Deterministic routing: no random token selection, no sampled 2nd expert.
                       use_rts=False, top2_2nd_expert_sampling=False)
        if cfg.moe_expert_bias_rate:
            from plmscale.models.moe.balance import BiasedTopKGate
            BiasedTopKGate.enable_bias(self.moe.deepspeed_moe.gate, cfg.moe_expert_bias_rate)
        for param in self.moe.deepspeed_moe.experts.parameters():
            param.num_local_experts = self.moe.num_local_experts  # for global_expert_name
        shared = cfg.moe_shared_experts
        self.shared_expert = ExpertMLP(cfg, shared * ffn, inner_dropout) if shared else None
        self.shared_expert_gate = (nn.Linear(cfg.hidden_size, 1, bias=False)
                                   if shared and cfg.moe_shared_expert_gate else None)
        self._routes = None
        self.moe.deepspeed_moe.gate.register_forward_hook(self._keep_routes)
        self.routing: Routing | None = None

    def _keep_routes(self, _gate, _inputs, output):
        # DeepSpeed's sparse gate output: (l_aux, capacity, E, indices [k, S] (-1 = dropped), ...).
        self._routes = output[3]

    def output_weights(self) -> list[torch.Tensor]:
        """Projections that write into the residual stream (GPT-2 scales their init)."""
        experts = [w for e in self.moe.deepspeed_moe.experts.deepspeed_experts
                   for w in e.output_weights()]
        return experts + (self.shared_expert.output_weights() if self.shared_expert else [])

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out, aux_loss, counts = self.moe(hidden)
        gate = self.moe.deepspeed_moe.gate
        logits = F.linear(hidden.reshape(-1, hidden.shape[-1]).float(), gate.wg.weight.float())
        z_loss = torch.logsumexp(logits, dim=-1).square().mean()
        counts = counts.float()
        self.routing = Routing(
            aux_loss=aux_loss, z_loss=z_loss,
            weighted=self.aux_coeff * aux_loss + self.z_coeff * z_loss,
            dropped_fraction=(self._routes < 0).float().mean().detach(),
            load_max_over_mean=(counts.max() / counts.mean().clamp(min=1e-9)).detach())
        if self.shared_expert is not None:
            shared = self.shared_expert(hidden)
            if self.shared_expert_gate is not None:
                shared = torch.sigmoid(self.shared_expert_gate(hidden)) * shared
            out = out + shared
        return out

