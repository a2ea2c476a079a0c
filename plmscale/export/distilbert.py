"""plmscale DistilBERT student -> HF ``DistilBertForMaskedLM`` state dict."""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig
from plmscale.export.bert import _split_qkv


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


def to_hf_state_dict(full: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Full (gathered, unpadded) plmscale tensors -> ``DistilBertForMaskedLM`` names."""
    out = {}
    for name in ("word_embeddings.weight", "position_embeddings.weight", "LayerNorm.weight",
                 "LayerNorm.bias"):
        out["distilbert.embeddings." + name] = full["distilbert.embeddings." + name]
    for i in range(cfg.num_layers):
        src, dst = f"distilbert.layers.{i}.", f"distilbert.transformer.layer.{i}."
        for kind in ("weight", "bias"):
            q, k, v = _split_qkv(full[src + f"self_attention.linear_qkv.{kind}"],
                                 cfg.num_attention_heads)
            out[dst + f"attention.q_lin.{kind}"] = q
            out[dst + f"attention.k_lin.{kind}"] = k
            out[dst + f"attention.v_lin.{kind}"] = v
            out[dst + f"attention.out_lin.{kind}"] = full[src + f"self_attention.linear_proj.{kind}"]
            out[dst + f"sa_layer_norm.{kind}"] = full[src + f"attention_layernorm.{kind}"]
            out[dst + f"ffn.lin1.{kind}"] = full[src + f"mlp.linear_fc1.{kind}"]
            out[dst + f"ffn.lin2.{kind}"] = full[src + f"mlp.linear_fc2.{kind}"]
            out[dst + f"output_layer_norm.{kind}"] = full[src + f"output_layernorm.{kind}"]
    for kind in ("weight", "bias"):
        out[f"vocab_transform.{kind}"] = full[f"lm_head.dense.{kind}"]
        out[f"vocab_layer_norm.{kind}"] = full[f"lm_head.LayerNorm.{kind}"]
    out["vocab_projector.weight"] = full["distilbert.embeddings.word_embeddings.weight"]
    out["vocab_projector.bias"] = full["lm_head.logits.bias"]
    return out
