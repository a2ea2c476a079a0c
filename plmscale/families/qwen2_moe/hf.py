"""plmscale decoder with fine-grained routed experts plus a sigmoid-gated shared expert <-> HF
``Qwen2MoeForCausalLM``. The name map is Llama's (``plmscale.families.llama.hf``, which handles
expert layers and the shared expert); this module holds the config. Qwen2-MoE's router normalises
the top-k weights when ``norm_topk_prob``: DeepSpeed's gates do for k >= 2 and not for k = 1, so
the export sets it to ``moe_top_k > 1``. Released Qwen1.5/2-MoE checkpoints have q/k/v biases and
no other: plmscale's ``add_bias_linear`` puts biases everywhere, so the export has none
(``qkv_bias=False``). HF never drops tokens: the export equals plmscale's model run dropless."""

from __future__ import annotations

from plmscale.config.schema import ModelConfig
from plmscale.families.llama.hf import decoder_config_kwargs
from plmscale.models.moe.hf import check_export


def hf_config(cfg: ModelConfig):
    """The ``transformers.Qwen2MoeConfig`` with the same architecture."""
    from transformers import Qwen2MoeConfig
    check_export(cfg, "Qwen2MoeForCausalLM", moe_shared_experts=range(1, 1 << 16),
                 moe_shared_expert_gate=(True,), add_bias_linear=(False,),
                 moe_expert_bias_rate=(0.0,))
    expert = cfg.moe_ffn_hidden_size or cfg.ffn_hidden_size
    return Qwen2MoeConfig(**decoder_config_kwargs(cfg, "Qwen2Moe"), num_experts=cfg.num_experts,
                          num_experts_per_tok=cfg.moe_top_k, moe_intermediate_size=expert,
                          shared_expert_intermediate_size=cfg.moe_shared_experts * expert,
                          decoder_sparse_step=cfg.moe_layer_frequency, mlp_only_layers=[],
                          norm_topk_prob=cfg.moe_top_k > 1, qkv_bias=False,
                          router_aux_loss_coef=cfg.moe_aux_loss_coeff, use_sliding_window=False)
