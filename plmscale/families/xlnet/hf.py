"""plmscale XLNet -> HF ``XLNetLMHeadModel`` state dicts.

HF keeps q, k, v, r and o as [d_model, heads, d_head] tensors; ours are Linear weights: q, k, v, r
[heads * d_head, d_model] (transposed), o [d_model, heads * d_head] (as is)."""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig


def hf_config(cfg: ModelConfig):
    """The ``transformers.XLNetConfig`` with the same architecture (bidirectional attention, one set
    of relative biases per layer, the same ``mem_len``; None when 0)."""
    from transformers import XLNetConfig
    if cfg.hidden_size % cfg.num_attention_heads:
        raise ValueError(f"XLNet needs model.hidden_size ({cfg.hidden_size}) divisible by "
                         f"model.num_attention_heads ({cfg.num_attention_heads})")
    if cfg.hidden_dropout != cfg.attention_dropout:
        raise ValueError("HF XLNet has one dropout: set model.attention_dropout equal to "
                         "model.hidden_dropout")
    return XLNetConfig(vocab_size=cfg.vocab_size, d_model=cfg.hidden_size, n_layer=cfg.num_layers,
                       n_head=cfg.num_attention_heads, d_inner=cfg.ffn_hidden_size,
                       ff_activation="gelu" if cfg.gelu_approximate == "none" else "gelu_new",
                       untie_r=True, attn_type="bi", layer_norm_eps=cfg.layernorm_epsilon,
                       dropout=cfg.hidden_dropout, initializer_range=cfg.init_std,
                       mem_len=cfg.mem_len or None, tie_word_embeddings=True)


def to_hf_state_dict(full: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Map full (gathered, unpadded) plmscale tensors to ``XLNetLMHeadModel`` names."""
    heads, size = cfg.num_attention_heads, cfg.hidden_size
    head_dim = size // heads
    words = full["xlnet.embeddings.word_embeddings.weight"]
    out = {"transformer.word_embedding.weight": words,
           "transformer.mask_emb": full["xlnet.embeddings.mask_emb"],
           "lm_loss.weight": words, "lm_loss.bias": full["lm_loss.bias"]}
    for i in range(cfg.num_layers):
        ours, hf = f"xlnet.layers.{i}.", f"transformer.layer.{i}."
        for name in ("q", "k", "v", "r"):
            out[f"{hf}rel_attn.{name}"] = full[f"{ours}rel_attn.{name}.weight"].t().reshape(
                size, heads, head_dim)
        out[f"{hf}rel_attn.o"] = full[f"{ours}rel_attn.o.weight"].reshape(size, heads, head_dim)
        for name in ("r_w_bias", "r_r_bias", "r_s_bias", "seg_embed"):
            out[f"{hf}rel_attn.{name}"] = full[f"{ours}rel_attn.{name}"]
        for kind in ("weight", "bias"):
            out[f"{hf}rel_attn.layer_norm.{kind}"] = full[f"{ours}rel_attn.layer_norm.{kind}"]
            out[f"{hf}ff.layer_1.{kind}"] = full[f"{ours}ff.linear_fc1.{kind}"]
            out[f"{hf}ff.layer_2.{kind}"] = full[f"{ours}ff.linear_fc2.{kind}"]
            out[f"{hf}ff.layer_norm.{kind}"] = full[f"{ours}ff_layer_norm.{kind}"]
    return out
