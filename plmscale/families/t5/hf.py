"""plmscale T5 -> HF ``T5ForConditionalGeneration``.

``to_hf_state_dict`` gives the distinct tensors of a HF checkpoint (what ``save_pretrained`` writes to
safetensors): ``shared.weight`` stands for the encoder/decoder ``embed_tokens`` (and for ``lm_head`` when
tied), and the relative attention bias lives in block 0 of each stack, which HF shares with the other
blocks. ``to_hf_model`` builds the HF model and loads it.

transformers 5.x always ties T5's ``lm_head`` to ``shared`` and reads ``tie_word_embeddings=False`` only
as "do not scale the decoder output" (huggingface/transformers#42815). T5 v1.1 checkpoints have a
separate ``lm_head.weight``, so ``to_hf_model`` unties the head again for them.
"""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig
from plmscale.export.hf import HFPart, loaded_model
from plmscale.models.common.cross_attention import split_heads


def _check(cfg: ModelConfig) -> None:
    if cfg.scale_tied_logits != cfg.tie_word_embeddings:
        raise ValueError("HF T5 scales the decoder output exactly when the embeddings are tied (v1.0) "
                         f"and not otherwise (v1.1); got tie_word_embeddings={cfg.tie_word_embeddings}, "
                         f"scale_tied_logits={cfg.scale_tied_logits}")


# HF feed_forward_proj -> (model.activation, model.gelu_approximate). HF's "gated-gelu" means the
# tanh form; the erf form is spelled with HF's activation name.
_ACTIVATIONS = {"relu": ("relu", "none"), "gated-gelu": ("gated-gelu", "tanh"),
                "gated-gelu_python": ("gated-gelu", "none"), "gelu_new": ("gelu", "tanh"),
                "gelu": ("gelu", "none")}


def _feed_forward_proj(cfg: ModelConfig) -> str:
    approximate = "none" if cfg.activation == "relu" else cfg.gelu_approximate  # ReLU has no form
    names = {ours: hf for hf, ours in _ACTIVATIONS.items()}
    if (cfg.activation, approximate) not in names:
        raise ValueError(f"HF T5 has no feed_forward_proj for model.activation={cfg.activation!r}; "
                         "use 'relu', 'gelu' or 'gated-gelu'")
    return names[(cfg.activation, approximate)]


# ModelConfig field -> T5Config attribute (both directions; d_kv and num_decoder_layers are
# written resolved, as HF has no "same as" default for them).
CONFIG_NAMES = dict(vocab_size="vocab_size", hidden_size="d_model", ffn_hidden_size="d_ff",
                    num_layers="num_layers", num_attention_heads="num_heads",
                    relative_attention_num_buckets="relative_attention_num_buckets",
                    relative_attention_max_distance="relative_attention_max_distance",
                    hidden_dropout="dropout_rate", layernorm_epsilon="layer_norm_epsilon",
                    tie_word_embeddings="tie_word_embeddings")


def hf_config(cfg: ModelConfig, pad_token_id: int = 0, eos_token_id: int = 1):
    """The ``transformers.T5Config`` with the same architecture (decoder start = PAD, as T5)."""
    from transformers import T5Config
    _check(cfg)
    return T5Config(**{hf: getattr(cfg, ours) for ours, hf in CONFIG_NAMES.items()},
                    d_kv=cfg.kv_channels or cfg.hidden_size // cfg.num_attention_heads,
                    num_decoder_layers=cfg.num_decoder_layers or cfg.num_layers,
                    feed_forward_proj=_feed_forward_proj(cfg), pad_token_id=pad_token_id,
                    eos_token_id=eos_token_id, decoder_start_token_id=pad_token_id)


def dense_feed_forward(full: dict[str, torch.Tensor], ours: str, hf: str, cfg: ModelConfig,
                       layer_number: int) -> dict[str, torch.Tensor]:
    """T5's ``DenseReluDense`` of the layer at ``ours`` (HF sub-layer prefix ``hf``)."""
    dense = hf + "DenseReluDense."
    out = {dense + "wo.weight": full[ours + "mlp.linear_fc2.weight"]}
    if cfg.activation == "gated-gelu":
        out[dense + "wi_0.weight"] = full[ours + "mlp.linear_fc1.weight"]
        out[dense + "wi_1.weight"] = full[ours + "mlp.linear_fc1_up.weight"]
    else:
        out[dense + "wi.weight"] = full[ours + "mlp.linear_fc1.weight"]
    return out


def to_hf_state_dict(full: dict[str, torch.Tensor], cfg: ModelConfig,
                     feed_forward=dense_feed_forward) -> dict[str, torch.Tensor]:
    """Map full (TP-gathered, unpadded) plmscale tensors to ``T5ForConditionalGeneration`` names;
    ``feed_forward`` maps each layer's FFN (``dense_feed_forward``'s arguments; Switch: experts)."""
    _check(cfg)
    if cfg.add_bias_linear or cfg.normalization != "rmsnorm":
        raise ValueError("HF T5 has no linear biases and uses RMSNorm")
    heads = cfg.num_attention_heads
    out = {"shared.weight": full["shared.weight"]}
    if not cfg.tie_word_embeddings:
        out["lm_head.weight"] = full["lm_head.weight"]
    stacks = (("encoder", cfg.num_layers), ("decoder", cfg.num_decoder_layers or cfg.num_layers))
    for stack, num_layers in stacks:
        for i in range(num_layers):
            ours, hf = f"{stack}.layers.{i}.", f"{stack}.block.{i}.layer."
            attention = hf + "0.SelfAttention."
            q, k, v = split_heads(full[ours + "self_attention.linear_qkv.weight"], heads, 3)
            out.update({attention + "q.weight": q, attention + "k.weight": k,
                        attention + "v.weight": v,
                        attention + "o.weight": full[ours + "self_attention.linear_proj.weight"],
                        hf + "0.layer_norm.weight": full[ours + "input_layernorm.weight"]})
            if i == 0:
                out[attention + "relative_attention_bias.weight"] = full[
                    ours + "relative_position_bias.weight"]
            ffn = "1"
            if stack == "decoder":
                cross = hf + "1.EncDecAttention."
                k, v = split_heads(full[ours + "cross_attention.linear_kv.weight"], heads, 2)
                out.update({cross + "q.weight": full[ours + "cross_attention.linear_q.weight"],
                            cross + "k.weight": k, cross + "v.weight": v,
                            cross + "o.weight": full[ours + "cross_attention.linear_proj.weight"],
                            hf + "1.layer_norm.weight": full[ours + "cross_attention_layernorm.weight"]})
                ffn = "2"
            out.update(feed_forward(full, ours, hf + ffn + ".", cfg, i))
            out[hf + ffn + ".layer_norm.weight"] = full[ours + "pre_mlp_layernorm.weight"]
        out[f"{stack}.final_layer_norm.weight"] = full[f"{stack}.final_layernorm.weight"]
    return out


TIED_ALIASES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")


def load_state(model, state: dict) -> tuple[list, list]:
    """``HFPart.load``: the tied aliases are HF's own copies of ``shared``; v1.1's ``lm_head.weight``
    becomes a head of its own again (see the module docstring)."""
    state = dict(state)
    head = state.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if head is not None:
        model.lm_head.weight = torch.nn.Parameter(head.clone())
    return [m for m in missing if m not in TIED_ALIASES], unexpected


HF_PART = HFPart("T5ForConditionalGeneration", task="text2text-generation", load=load_state)


def to_hf_model(full: dict[str, torch.Tensor], cfg: ModelConfig, **config_kwargs):
    """A ``T5ForConditionalGeneration`` (eval mode) holding the exported weights."""
    return loaded_model(HF_PART, hf_config(cfg, **config_kwargs), to_hf_state_dict(full, cfg))


def from_hf_config(hf) -> dict:
    """ModelConfig fields of an HF ``T5Config`` (the reverse of ``hf_config``)."""
    if hf.feed_forward_proj not in _ACTIVATIONS:
        raise ValueError(f"HF T5 feed_forward_proj={hf.feed_forward_proj!r} has no plmscale "
                         f"equivalent (known: {', '.join(_ACTIVATIONS)})")
    activation, gelu = _ACTIVATIONS[hf.feed_forward_proj]
    return {**{ours: getattr(hf, theirs) for ours, theirs in CONFIG_NAMES.items()},
            "kv_channels": hf.d_kv, "num_decoder_layers": hf.num_decoder_layers,
            "activation": activation, "gelu_approximate": gelu,
            "scale_tied_logits": hf.tie_word_embeddings, "normalization": "rmsnorm",
            "add_bias_linear": False, "position_embedding_type": "relative"}
