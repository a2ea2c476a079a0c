"""plmscale DistilBERT student -> HF ``DistilBertForMaskedLM`` state dict."""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig
from plmscale.families.bert.hf import (HFLayerNames, embeddings_to_hf, encoder_layer_to_hf,
                                       mlm_head_to_hf)


def hf_config(cfg: ModelConfig):
    """The ``transformers.DistilBertConfig`` with the same architecture (learned positions)."""
    from transformers import DistilBertConfig
    if cfg.layernorm_epsilon != 1e-12:
        raise ValueError("HF DistilBERT fixes LayerNorm eps at 1e-12; model.layernorm_epsilon="
                         f"{cfg.layernorm_epsilon} has no HF equivalent")
    return DistilBertConfig(vocab_size=cfg.vocab_size, dim=cfg.hidden_size, n_layers=cfg.num_layers,
                            n_heads=cfg.num_attention_heads, hidden_dim=cfg.ffn_hidden_size,
                            dropout=cfg.hidden_dropout, attention_dropout=cfg.attention_dropout,
                            max_position_embeddings=cfg.max_position_embeddings,
                            activation="gelu" if cfg.gelu_approximate == "none" else "gelu_pytorch_tanh",
                            sinusoidal_pos_embds=False, initializer_range=cfg.init_std,
                            tie_word_embeddings=True)


DISTILBERT_LAYER_NAMES = HFLayerNames(
    query="attention.q_lin", key="attention.k_lin", value="attention.v_lin",
    attention_output="attention.out_lin", attention_layernorm="sa_layer_norm",
    intermediate="ffn.lin1", output="ffn.lin2", output_layernorm="output_layer_norm")


def to_hf_state_dict(full: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Full (gathered, unpadded) plmscale tensors -> ``DistilBertForMaskedLM`` names."""
    emb = "distilbert.embeddings."
    out = embeddings_to_hf(full, emb, emb, token_types=False)
    for i in range(cfg.num_layers):
        out.update(encoder_layer_to_hf(full, f"distilbert.layers.{i}.",
                                       f"distilbert.transformer.layer.{i}.",
                                       cfg.num_attention_heads, DISTILBERT_LAYER_NAMES))
    return {**out, **mlm_head_to_hf(full, "vocab_transform", "vocab_layer_norm",
                                    "vocab_projector.weight", ("vocab_projector.bias",),
                                    emb + "word_embeddings.weight")}
