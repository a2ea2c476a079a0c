"""plmscale BERT <-> HF ``BertForPreTraining`` state dicts."""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig


def hf_config(cfg: ModelConfig):
    """The ``transformers.BertConfig`` with the same architecture."""
    from transformers import BertConfig
    return BertConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                      num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_attention_heads,
                      intermediate_size=cfg.ffn_hidden_size,
                      hidden_act="gelu" if cfg.gelu_approximate == "none" else "gelu_pytorch_tanh",
                      hidden_dropout_prob=cfg.hidden_dropout,
                      attention_probs_dropout_prob=cfg.attention_dropout,
                      max_position_embeddings=cfg.max_position_embeddings,
                      type_vocab_size=cfg.type_vocab_size, layer_norm_eps=cfg.layernorm_epsilon,
                      initializer_range=cfg.init_std, tie_word_embeddings=True)


def _split_qkv(weight: torch.Tensor, heads: int):
    """Our fused rows are [head][q,k,v][head_dim]; HF keeps separate q, k, v."""
    head_dim = weight.shape[0] // (3 * heads)
    per_head = weight.reshape(heads, 3, head_dim, *weight.shape[1:])
    return [per_head[:, i].reshape(heads * head_dim, *weight.shape[1:]) for i in range(3)]


def to_hf_state_dict(full: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Map full (gathered, unpadded) plmscale tensors to ``BertForPreTraining`` names."""
    out = {}
    emb = "bert.embeddings."
    for name in ("word_embeddings.weight", "position_embeddings.weight",
                 "token_type_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias"):
        out[emb + name] = full[emb + name]
    for i in range(cfg.num_layers):
        ours, hf = f"bert.layers.{i}.", f"bert.encoder.layer.{i}."
        for kind in ("weight", "bias"):
            q, k, v = _split_qkv(full[ours + f"self_attention.linear_qkv.{kind}"],
                                 cfg.num_attention_heads)
            out[hf + f"attention.self.query.{kind}"] = q
            out[hf + f"attention.self.key.{kind}"] = k
            out[hf + f"attention.self.value.{kind}"] = v
            out[hf + f"attention.output.dense.{kind}"] = full[ours + f"self_attention.linear_proj.{kind}"]
            out[hf + f"attention.output.LayerNorm.{kind}"] = full[ours + f"attention_layernorm.{kind}"]
            out[hf + f"intermediate.dense.{kind}"] = full[ours + f"mlp.linear_fc1.{kind}"]
            out[hf + f"output.dense.{kind}"] = full[ours + f"mlp.linear_fc2.{kind}"]
            out[hf + f"output.LayerNorm.{kind}"] = full[ours + f"output_layernorm.{kind}"]
    for kind in ("weight", "bias"):
        out[f"bert.pooler.dense.{kind}"] = full[f"pooler.{kind}"]
        out[f"cls.predictions.transform.dense.{kind}"] = full[f"lm_head.dense.{kind}"]
        out[f"cls.predictions.transform.LayerNorm.{kind}"] = full[f"lm_head.LayerNorm.{kind}"]
        out[f"cls.seq_relationship.{kind}"] = full[f"nsp_head.{kind}"]
    out["cls.predictions.bias"] = full["lm_head.logits.bias"]
    out["cls.predictions.decoder.weight"] = full[emb + "word_embeddings.weight"]
    out["cls.predictions.decoder.bias"] = full["lm_head.logits.bias"]
    return out
