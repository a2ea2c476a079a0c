"""plmscale RoBERTa -> HF ``RobertaForMaskedLM`` state dicts."""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig
from plmscale.families.bert.hf import (embeddings_to_hf, encoder_config_fields,
                                       encoder_config_kwargs, encoder_layer_to_hf, mlm_head_to_hf)


def hf_config(cfg: ModelConfig):
    """The ``transformers.RobertaConfig`` with the same architecture.

    HF offsets positions by ``pad_token_id + 1``, so ``pad_token_id = position_offset - 1`` (1, as
    the released checkpoints); HF also counts positions from ``input_ids != pad_token_id``, so feed
    the exported model inputs padded with that id (or pass ``position_ids``)."""
    from transformers import RobertaConfig
    if cfg.position_offset < 1:
        raise ValueError(f"HF RoBERTa needs model.position_offset >= 1 (padding_idx + 1); "
                         f"got {cfg.position_offset}")
    kwargs = encoder_config_kwargs(cfg)
    # HF RoBERTa counts the padding offset inside its position table.
    kwargs["max_position_embeddings"] += cfg.position_offset
    return RobertaConfig(**kwargs, pad_token_id=cfg.position_offset - 1, tie_word_embeddings=True)


def to_hf_state_dict(full: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Map full (gathered, unpadded) plmscale tensors to ``RobertaForMaskedLM`` names."""
    emb = "roberta.embeddings."
    out = embeddings_to_hf(full, emb, emb)
    for i in range(cfg.num_layers):
        out.update(encoder_layer_to_hf(full, f"roberta.layers.{i}.", f"roberta.encoder.layer.{i}.",
                                       cfg.num_attention_heads))
    return {**out, **mlm_head_to_hf(full, "lm_head.dense", "lm_head.layer_norm",
                                    "lm_head.decoder.weight", ("lm_head.bias", "lm_head.decoder.bias"),
                                    emb + "word_embeddings.weight")}


def from_hf_config(hf) -> dict:
    """ModelConfig fields of an HF ``RobertaConfig`` (the reverse of ``hf_config``)."""
    fields = encoder_config_fields(hf)
    fields["position_offset"] = hf.pad_token_id + 1
    fields["max_position_embeddings"] -= fields["position_offset"]
    return fields
