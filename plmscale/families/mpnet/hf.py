"""plmscale MPNet -> HF ``MPNetForMaskedLM`` state dicts."""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig
from plmscale.families.bert.hf import (HFLayerNames, embeddings_to_hf, encoder_config_kwargs,
                                       encoder_layer_to_hf)

MPNET_LAYER_NAMES = HFLayerNames(
    query="attention.attn.q", key="attention.attn.k", value="attention.attn.v",
    attention_output="attention.attn.o", attention_layernorm="attention.LayerNorm",
    intermediate="intermediate.dense", output="output.dense", output_layernorm="output.LayerNorm")


def hf_config(cfg: ModelConfig):
    """The ``transformers.MPNetConfig`` with the same architecture. HF counts positions from
    padding_idx + 1 = 2 inside its table (514 rows for 512 tokens) and fixes the relative bias's
    max distance at 128."""
    from transformers import MPNetConfig
    if cfg.position_offset != 2:
        raise ValueError(f"HF MPNet offsets positions by 2 (padding_idx 1); set "
                         f"model.position_offset=2 (got {cfg.position_offset})")
    if cfg.relative_attention_max_distance != 128:
        raise ValueError("HF MPNet's relative bias has max distance 128; set "
                         "model.relative_attention_max_distance=128")
    kwargs = encoder_config_kwargs(cfg)
    kwargs.pop("type_vocab_size")
    kwargs["max_position_embeddings"] += cfg.position_offset
    return MPNetConfig(**kwargs, relative_attention_num_buckets=cfg.relative_attention_num_buckets,
                       pad_token_id=cfg.position_offset - 1, tie_word_embeddings=True)


def to_hf_state_dict(full: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Map full (gathered, unpadded) plmscale tensors to ``MPNetForMaskedLM`` names."""
    emb = "mpnet.embeddings."
    out = embeddings_to_hf(full, emb, emb, token_types=False)
    for i in range(cfg.num_layers):
        out.update(encoder_layer_to_hf(full, f"mpnet.layers.{i}.", f"mpnet.encoder.layer.{i}.",
                                       cfg.num_attention_heads, MPNET_LAYER_NAMES))
    name = "mpnet.encoder.relative_attention_bias.weight"
    out[name] = full[name]
    for kind in ("weight", "bias"):
        out[f"lm_head.dense.{kind}"] = full[f"lm_head.dense.{kind}"]
        out[f"lm_head.layer_norm.{kind}"] = full[f"lm_head.LayerNorm.{kind}"]
    out["lm_head.bias"] = full["lm_head.logits.bias"]
    out["lm_head.decoder.weight"] = full[emb + "word_embeddings.weight"]
    out["lm_head.decoder.bias"] = full["lm_head.logits.bias"]
    return out
