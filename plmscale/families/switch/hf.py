"""plmscale T5 with top-1 expert layers <-> HF ``SwitchTransformersForConditionalGeneration``.

T5's name map (``plmscale.families.t5.hf``) with Switch's feed-forward names: a dense layer's FFN is
``mlp.wi`` / ``mlp.wo``, a sparse one's router ``mlp.router.classifier`` and experts
``mlp.experts.expert_<e>.wi`` / ``.wo``. HF makes layer i sparse when ``i % step == 1`` (or step 1),
plmscale when ``(i + 1) % moe_layer_frequency == 0``: the same layers for frequencies 1 and 2. Both
scale the chosen expert's output by its softmax probability (DeepSpeed's top-1 gate, HF's router).
HF's expert capacity counts the tokens of one sequence: the export sets it to
``max_position_embeddings``, so HF drops nothing and equals plmscale's dropless model.
"""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig
from plmscale.families.t5 import hf as t5
from plmscale.models.common.mlp import is_moe_layer
from plmscale.models.moe import hf as moe


def _check(cfg: ModelConfig) -> None:
    moe.check_export(cfg, "SwitchTransformersForConditionalGeneration", moe_top_k=(1,),
                     moe_layer_frequency=(1, 2), moe_shared_experts=(0,), activation=("relu", "gelu"),
                     moe_ffn_hidden_size=(None, cfg.ffn_hidden_size), tie_word_embeddings=(True,),
                     moe_expert_bias_rate=(0.0,))


def hf_config(cfg: ModelConfig, pad_token_id: int = 0, eos_token_id: int = 1):
    """The ``transformers.SwitchTransformersConfig`` with the same architecture."""
    from transformers import SwitchTransformersConfig
    _check(cfg)
    base = t5.hf_config(cfg, pad_token_id, eos_token_id).to_dict()
    keep = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers",
            "num_heads", "relative_attention_num_buckets", "relative_attention_max_distance",
            "dropout_rate", "layer_norm_epsilon", "tie_word_embeddings", "pad_token_id",
            "eos_token_id", "decoder_start_token_id")
    return SwitchTransformersConfig(
        **{k: base[k] for k in keep}, dense_act_fn=t5._feed_forward_proj(cfg),
        num_experts=cfg.num_experts, expert_capacity=cfg.max_position_embeddings,
        encoder_sparse_step=cfg.moe_layer_frequency, decoder_sparse_step=cfg.moe_layer_frequency,
        router_bias=False, router_jitter_noise=0.0, router_dtype="float32",
        router_ignore_padding_tokens=False, router_aux_loss_coef=cfg.moe_aux_loss_coeff,
        router_z_loss_coef=cfg.moe_z_loss_coeff)


def _feed_forward(full: dict[str, torch.Tensor], ours: str, hf: str, cfg: ModelConfig,
                  layer_number: int) -> dict[str, torch.Tensor]:
    if not is_moe_layer(cfg, layer_number):
        return {hf + "mlp.wi.weight": full[ours + "mlp.linear_fc1.weight"],
                hf + "mlp.wo.weight": full[ours + "mlp.linear_fc2.weight"]}
    out = {hf + "mlp.router.classifier.weight": full[ours + moe.ROUTER]}
    for e in range(cfg.num_experts):
        out[hf + f"mlp.experts.expert_{e}.wi.weight"] = full[moe.expert(ours, e, "linear_fc1")]
        out[hf + f"mlp.experts.expert_{e}.wo.weight"] = full[moe.expert(ours, e, "linear_fc2")]
    return out


def to_hf_state_dict(full: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Full (gathered, unpadded) plmscale tensors -> ``SwitchTransformersForConditionalGeneration``."""
    _check(cfg)
    return t5.to_hf_state_dict(full, cfg, feed_forward=_feed_forward)
