"""plmscale decoder with top-k routed SwiGLU experts in every layer <-> HF ``MixtralForCausalLM``.
The name map is Llama's (``plmscale.families.llama.hf``, which handles expert layers); this module
holds the config. DeepSpeed's top-2 and top-k gates renormalise the chosen experts' softmax weights
to sum to 1, as Mixtral's router does (top-1 would not: refused). HF Mixtral never drops tokens:
the export equals plmscale's model run dropless (``model.moe_dropless``)."""

from __future__ import annotations

from plmscale.config.schema import ModelConfig
from plmscale.families.llama.hf import decoder_config_kwargs
from plmscale.models.moe.hf import check_export


def hf_config(cfg: ModelConfig):
    """The ``transformers.MixtralConfig`` with the same architecture."""
    from transformers import MixtralConfig
    check_export(cfg, "MixtralForCausalLM", moe_layer_frequency=(1,), moe_shared_experts=(0,),
                 add_bias_linear=(False,), moe_expert_bias_rate=(0.0,),
                 moe_top_k=range(2, max(cfg.num_experts, 2) + 1))
    kwargs = decoder_config_kwargs(cfg, "Mixtral")
    kwargs["intermediate_size"] = cfg.moe_ffn_hidden_size or cfg.ffn_hidden_size
    return MixtralConfig(**kwargs, num_local_experts=cfg.num_experts,
                         num_experts_per_tok=cfg.moe_top_k, router_jitter_noise=0.0,
                         router_aux_loss_coef=cfg.moe_aux_loss_coeff, sliding_window=None)
