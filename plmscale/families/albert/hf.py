"""plmscale ALBERT -> HF ``AlbertForPreTraining`` state dicts."""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig
from plmscale.families.bert.hf import (HFLayerNames, embeddings_to_hf, encoder_config_kwargs,
                                       encoder_layer_to_hf, mlm_head_to_hf)


def hf_config(cfg: ModelConfig):
    """The ``transformers.AlbertConfig`` with the same architecture (GELU's tanh form is HF's
    ``gelu_new``, ALBERT's own activation)."""
    from transformers import AlbertConfig
    return AlbertConfig(**encoder_config_kwargs(cfg, tanh_gelu="gelu_new"),
                        embedding_size=cfg.embedding_size or cfg.hidden_size,
                        num_hidden_groups=1 if cfg.share_layer_parameters else cfg.num_layers,
                        inner_group_num=1, tie_word_embeddings=True)


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
        out[f"sop_classifier.classifier.{kind}"] = full[f"sop_head.{kind}"]
    return {**out, **mlm_head_to_hf(full, "predictions.dense", "predictions.LayerNorm",
                                    "predictions.decoder.weight",
                                    ("predictions.bias", "predictions.decoder.bias"),
                                    emb + "word_embeddings.weight")}
