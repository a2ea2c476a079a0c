"""plmscale ALBERT -> HF ``AlbertForPreTraining`` state dicts."""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig
from plmscale.export.bert import HFLayerNames, embeddings_to_hf, encoder_layer_to_hf


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


ALBERT_LAYER_NAMES = HFLayerNames(
    query="attention.query", key="attention.key", value="attention.value",
    attention_output="attention.dense", attention_layernorm="attention.LayerNorm",
    intermediate="ffn", output="ffn_output", output_layernorm="full_layer_layer_norm")


def to_hf_state_dict(full: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Map full (gathered, unpadded) plmscale tensors to ``AlbertForPreTraining`` names."""
    emb = "albert.embeddings."
    out = embeddings_to_hf(full, emb, emb)
    groups = 1 if cfg.share_layer_parameters else cfg.num_layers
    for g in range(groups):
        out.update(encoder_layer_to_hf(full, f"albert.layer_groups.{g}.",
                                       f"albert.encoder.albert_layer_groups.{g}.albert_layers.0.",
                                       cfg.num_attention_heads, ALBERT_LAYER_NAMES))
    for kind in ("weight", "bias"):
        out[f"albert.encoder.embedding_hidden_mapping_in.{kind}"] = \
            full[f"albert.embedding_hidden_mapping_in.{kind}"]
        out[f"albert.pooler.{kind}"] = full[f"pooler.{kind}"]
        out[f"predictions.dense.{kind}"] = full[f"lm_head.dense.{kind}"]
        out[f"predictions.LayerNorm.{kind}"] = full[f"lm_head.LayerNorm.{kind}"]
        out[f"sop_classifier.classifier.{kind}"] = full[f"sop_head.{kind}"]
    out["predictions.bias"] = full["lm_head.logits.bias"]
    out["predictions.decoder.weight"] = full[emb + "word_embeddings.weight"]
    out["predictions.decoder.bias"] = full["lm_head.logits.bias"]
    return out
