"""plmscale ALBERT -> HF ``AlbertForPreTraining`` state dicts."""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig
from plmscale.export.bert import _split_qkv


def hf_config(cfg: ModelConfig):
    """The ``transformers.AlbertConfig`` with the same architecture (GELU's tanh form is HF's
    ``gelu_new``, ALBERT's own activation)."""
    from transformers import AlbertConfig
    return AlbertConfig(vocab_size=cfg.vocab_size, embedding_size=cfg.embedding_size or cfg.hidden_size,
                        hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                        num_hidden_groups=1 if cfg.share_layer_parameters else cfg.num_layers,
                        inner_group_num=1, num_attention_heads=cfg.num_attention_heads,
                        intermediate_size=cfg.ffn_hidden_size,
                        hidden_act="gelu" if cfg.gelu_approximate == "none" else "gelu_new",
                        hidden_dropout_prob=cfg.hidden_dropout,
                        attention_probs_dropout_prob=cfg.attention_dropout,
                        max_position_embeddings=cfg.max_position_embeddings,
                        type_vocab_size=cfg.type_vocab_size, layer_norm_eps=cfg.layernorm_epsilon,
                        initializer_range=cfg.init_std, tie_word_embeddings=True)


def to_hf_state_dict(full: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Map full (gathered, unpadded) plmscale tensors to ``AlbertForPreTraining`` names."""
    out = {}
    emb = "albert.embeddings."
    for name in ("word_embeddings.weight", "position_embeddings.weight",
                 "token_type_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias"):
        out[emb + name] = full[emb + name]
    groups = 1 if cfg.share_layer_parameters else cfg.num_layers
    for kind in ("weight", "bias"):
        out[f"albert.encoder.embedding_hidden_mapping_in.{kind}"] = \
            full[f"albert.embedding_hidden_mapping_in.{kind}"]
        for g in range(groups):
            ours, hf = f"albert.layer_groups.{g}.", f"albert.encoder.albert_layer_groups.{g}.albert_layers.0."
            q, k, v = _split_qkv(full[ours + f"self_attention.linear_qkv.{kind}"],
                                 cfg.num_attention_heads)
            out[hf + f"attention.query.{kind}"] = q
            out[hf + f"attention.key.{kind}"] = k
            out[hf + f"attention.value.{kind}"] = v
            out[hf + f"attention.dense.{kind}"] = full[ours + f"self_attention.linear_proj.{kind}"]
            out[hf + f"attention.LayerNorm.{kind}"] = full[ours + f"attention_layernorm.{kind}"]
            out[hf + f"ffn.{kind}"] = full[ours + f"mlp.linear_fc1.{kind}"]
            out[hf + f"ffn_output.{kind}"] = full[ours + f"mlp.linear_fc2.{kind}"]
            out[hf + f"full_layer_layer_norm.{kind}"] = full[ours + f"output_layernorm.{kind}"]
        out[f"albert.pooler.{kind}"] = full[f"pooler.{kind}"]
        out[f"predictions.dense.{kind}"] = full[f"lm_head.dense.{kind}"]
        out[f"predictions.LayerNorm.{kind}"] = full[f"lm_head.LayerNorm.{kind}"]
        out[f"sop_classifier.classifier.{kind}"] = full[f"sop_head.{kind}"]
    out["predictions.bias"] = full["lm_head.logits.bias"]
    out["predictions.decoder.weight"] = full[emb + "word_embeddings.weight"]
    out["predictions.decoder.bias"] = full["lm_head.logits.bias"]
    return out
