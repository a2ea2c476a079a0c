"""plmscale BART -> HF ``BartForConditionalGeneration`` state dicts.

Input is the full (TP-gathered, unpadded) tensors of ``plmscale.export.full_tensors``, so any
tensor-parallel layout exports the same way.
"""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig
from plmscale.families.bert.hf import HFLayerNames, encoder_layer_to_hf
from plmscale.models.common.cross_attention import split_heads


# (ModelConfig field, BartConfig attribute), both directions: one head count and FFN width serve
# both stacks.
CONFIG_NAMES = (("vocab_size", "vocab_size"), ("hidden_size", "d_model"),
                ("num_layers", "encoder_layers"), ("num_attention_heads", "encoder_attention_heads"),
                ("num_attention_heads", "decoder_attention_heads"),
                ("ffn_hidden_size", "encoder_ffn_dim"), ("ffn_hidden_size", "decoder_ffn_dim"),
                ("hidden_dropout", "dropout"), ("attention_dropout", "attention_dropout"),
                ("max_position_embeddings", "max_position_embeddings"), ("init_std", "init_std"))


def token_ids(tokens, cfg: ModelConfig) -> dict:
    """The config's special-token ids for our tokenizer's ``tokens`` (``HFExport.token_ids``):
    the decoder starts from, and is forced to end with, eos (as BART)."""
    return dict(pad_token_id=tokens.pad, bos_token_id=tokens.bos, eos_token_id=tokens.eos,
                decoder_start_token_id=tokens.eos, forced_eos_token_id=tokens.eos)


def hf_config(cfg: ModelConfig, tokens=None):
    """The ``transformers.BartConfig`` with the same architecture. ``tokens`` (a
    ``plmscale.data.SpecialTokens``) sets pad / bos / eos and decoder_start (= eos, as BART) to our
    tokenizer's ids; without it HF's defaults stay (they do not affect the logits).

    HF BART's LayerNorms use eps 1e-5 (not configurable): keep ``model.layernorm_epsilon=1e-5``.
    """
    from transformers import BartConfig
    decoder_layers = cfg.num_decoder_layers if cfg.num_decoder_layers is not None else cfg.num_layers
    ids = token_ids(tokens, cfg) if tokens is not None else {}
    return BartConfig(
        **{hf: getattr(cfg, ours) for ours, hf in CONFIG_NAMES}, decoder_layers=decoder_layers,
        activation_function="gelu" if cfg.gelu_approximate == "none" else "gelu_pytorch_tanh",
        activation_dropout=0.0, scale_embedding=False, tie_word_embeddings=True, **ids)


def _embeddings(full: dict, ours: str, hf: str, out: dict) -> None:
    out[hf + "embed_positions.weight"] = full[ours + "embeddings.embed_positions.weight"]
    for kind in ("weight", "bias"):
        out[hf + f"layernorm_embedding.{kind}"] = full[ours + f"embeddings.layernorm_embedding.{kind}"]


# The encoder layers are ``PostLNLayer``s, and a decoder layer names its self-attention and MLP
# tensors the same way: both map through ``encoder_layer_to_hf`` with these names.
BART_LAYER_NAMES = HFLayerNames(
    query="self_attn.q_proj", key="self_attn.k_proj", value="self_attn.v_proj",
    attention_output="self_attn.out_proj", attention_layernorm="self_attn_layer_norm",
    intermediate="fc1", output="fc2", output_layernorm="final_layer_norm")


def _cross_attention(full: dict, ours: str, hf: str, heads: int, out: dict) -> None:
    """A decoder layer's cross attention and its LayerNorm, under HF's ``encoder_attn`` names."""
    for kind in ("weight", "bias"):
        out[hf + f"encoder_attn.q_proj.{kind}"] = full[ours + f"cross_attention.linear_q.{kind}"]
        k, v = split_heads(full[ours + f"cross_attention.linear_kv.{kind}"], heads, 2)
        out[hf + f"encoder_attn.k_proj.{kind}"] = k
        out[hf + f"encoder_attn.v_proj.{kind}"] = v
        out[hf + f"encoder_attn.out_proj.{kind}"] = full[ours + f"cross_attention.linear_proj.{kind}"]
        out[hf + f"encoder_attn_layer_norm.{kind}"] = full[ours + f"cross_attention_layernorm.{kind}"]


def to_hf_state_dict(full: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Map full (gathered, unpadded) plmscale tensors to ``BartForConditionalGeneration`` names
    (every key of HF's state dict, the tied copies and the zero ``final_logits_bias`` included)."""
    heads = cfg.num_attention_heads
    shared = full["shared.weight"]
    out = {"model.shared.weight": shared, "model.encoder.embed_tokens.weight": shared,
           "model.decoder.embed_tokens.weight": shared, "lm_head.weight": shared,
           "final_logits_bias": torch.zeros(1, cfg.vocab_size, dtype=shared.dtype)}
    decoder_layers = cfg.num_decoder_layers if cfg.num_decoder_layers is not None else cfg.num_layers
    for stack, count in (("encoder", cfg.num_layers), ("decoder", decoder_layers)):
        _embeddings(full, f"{stack}.", f"model.{stack}.", out)
        for i in range(count):
            ours, hf = f"{stack}.layers.{i}.", f"model.{stack}.layers.{i}."
            out.update(encoder_layer_to_hf(full, ours, hf, heads, BART_LAYER_NAMES))
            if stack == "decoder":
                _cross_attention(full, ours, hf, heads, out)
    return out


def from_hf_config(hf) -> dict:
    """ModelConfig fields of an HF ``BartConfig`` (the reverse of ``hf_config``)."""
    if hf.encoder_ffn_dim != hf.decoder_ffn_dim or \
            hf.encoder_attention_heads != hf.decoder_attention_heads:
        raise ValueError("plmscale BART has one ffn_hidden_size and one head count for both "
                         "stacks; this HF BART differs between encoder and decoder")
    return {**{ours: getattr(hf, theirs) for ours, theirs in CONFIG_NAMES},
            "num_decoder_layers": hf.decoder_layers, "layernorm_epsilon": 1e-5,
            "gelu_approximate": "none" if hf.activation_function == "gelu" else "tanh"}
