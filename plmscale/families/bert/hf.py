"""plmscale BERT <-> HF ``BertForPreTraining`` state dicts."""

from __future__ import annotations

from typing import NamedTuple

import torch

from plmscale.config.schema import ModelConfig
from plmscale.models.common.cross_attention import split_heads


# ModelConfig field -> the attribute of HF's BERT-style configs that holds it (both directions).
ENCODER_CONFIG_NAMES = dict(
    vocab_size="vocab_size", hidden_size="hidden_size", num_layers="num_hidden_layers",
    num_attention_heads="num_attention_heads", ffn_hidden_size="intermediate_size",
    hidden_dropout="hidden_dropout_prob", attention_dropout="attention_probs_dropout_prob",
    max_position_embeddings="max_position_embeddings", type_vocab_size="type_vocab_size",
    layernorm_epsilon="layer_norm_eps", init_std="initializer_range")


def encoder_config_kwargs(cfg: ModelConfig, tanh_gelu: str = "gelu_pytorch_tanh") -> dict:
    """The ``transformers`` config arguments every BERT-style encoder shares (BERT, RoBERTa,
    ALBERT, ELECTRA). ``tanh_gelu``: the model's name for the tanh-approximated GELU."""
    return {**{hf: getattr(cfg, ours) for ours, hf in ENCODER_CONFIG_NAMES.items()},
            "hidden_act": "gelu" if cfg.gelu_approximate == "none" else tanh_gelu}


def hf_config(cfg: ModelConfig):
    """The ``transformers.BertConfig`` with the same architecture."""
    from transformers import BertConfig
    return BertConfig(**encoder_config_kwargs(cfg), tie_word_embeddings=True)


# Our ``Embeddings`` tensors, named as in HF's BERT-style embeddings.
EMBEDDING_TENSORS = ("word_embeddings.weight", "position_embeddings.weight",
                     "token_type_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias")


class HFLayerNames(NamedTuple):
    """HF's names (after the layer prefix, before ``.weight``/``.bias``) of the tensors of one
    ``PostLNLayer``: the three pieces of our fused qkv, then one name per remaining tensor."""
    query: str
    key: str
    value: str
    attention_output: str  # self_attention.linear_proj
    attention_layernorm: str  # attention_layernorm
    intermediate: str  # mlp.linear_fc1
    output: str  # mlp.linear_fc2
    output_layernorm: str  # output_layernorm


# Our names of the tensors of ``HFLayerNames`` after query, key and value, in its order.
LAYER_TENSORS = ("self_attention.linear_proj", "attention_layernorm", "mlp.linear_fc1",
                 "mlp.linear_fc2", "output_layernorm")

# BERT's layer names; RoBERTa and ELECTRA use them too.
BERT_LAYER_NAMES = HFLayerNames(
    query="attention.self.query", key="attention.self.key", value="attention.self.value",
    attention_output="attention.output.dense", attention_layernorm="attention.output.LayerNorm",
    intermediate="intermediate.dense", output="output.dense", output_layernorm="output.LayerNorm")


def embeddings_to_hf(full: dict, ours: str, hf: str,
                     token_types: bool = True) -> dict[str, torch.Tensor]:
    """Our ``Embeddings`` tensors (prefix ``ours``) under HF's prefix ``hf``: the names after the
    prefix are the same on both sides. ``token_types=False``: a model without them (DistilBERT)."""
    return {hf + name: full[ours + name] for name in EMBEDDING_TENSORS
            if token_types or not name.startswith("token_type_embeddings.")}


def encoder_layer_to_hf(full: dict, ours: str, hf: str, heads: int,
                        names: HFLayerNames = BERT_LAYER_NAMES) -> dict[str, torch.Tensor]:
    """One ``PostLNLayer`` (prefix ``ours``) -> HF's layer tensors (prefix ``hf``, then ``names``),
    the fused qkv split into HF's separate query, key and value."""
    out = {}
    for kind in ("weight", "bias"):
        tensors = [*split_heads(full[ours + f"self_attention.linear_qkv.{kind}"], heads, 3),
                   *(full[f"{ours}{name}.{kind}"] for name in LAYER_TENSORS)]
        out.update({f"{hf}{name}.{kind}": tensor for name, tensor in zip(names, tensors)})
    return out


def mlm_head_to_hf(full: dict, dense: str, layernorm: str, decoder: str, biases: tuple[str, ...],
                   word_embeddings: str, ours: str = "lm_head.") -> dict[str, torch.Tensor]:
    """Our ``MaskedLMHead`` (prefix ``ours``) under HF's names: ``dense`` and ``layernorm`` (with
    ``.weight``/``.bias``), the tied ``decoder`` weight (our ``word_embeddings`` tensor) and the
    logits bias under each name of ``biases`` (HF keeps it twice in most classes)."""
    out = {f"{hf}.{kind}": full[f"{ours}{mine}.{kind}"] for kind in ("weight", "bias")
           for hf, mine in ((dense, "dense"), (layernorm, "LayerNorm"))}
    return {**out, decoder: full[word_embeddings], **{b: full[ours + "logits.bias"] for b in biases}}


def to_hf_state_dict(full: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Map full (gathered, unpadded) plmscale tensors to ``BertForPreTraining`` names."""
    emb = "bert.embeddings."
    out = embeddings_to_hf(full, emb, emb)
    for i in range(cfg.num_layers):
        out.update(encoder_layer_to_hf(full, f"bert.layers.{i}.", f"bert.encoder.layer.{i}.",
                                       cfg.num_attention_heads))
    for kind in ("weight", "bias"):
        out[f"bert.pooler.dense.{kind}"] = full[f"pooler.{kind}"]
        out[f"cls.seq_relationship.{kind}"] = full[f"nsp_head.{kind}"]
    return {**out, **mlm_head_to_hf(full, "cls.predictions.transform.dense",
                                    "cls.predictions.transform.LayerNorm",
                                    "cls.predictions.decoder.weight",
                                    ("cls.predictions.bias", "cls.predictions.decoder.bias"),
                                    emb + "word_embeddings.weight")}


def _gelu_form(act: str) -> str:
    """HF's activation name -> model.gelu_approximate (check_config refuses what this misreads)."""
    return "none" if act in ("gelu", "gelu_python") else "tanh"


def encoder_config_fields(hf) -> dict:
    """The reverse of ``encoder_config_kwargs``: ModelConfig fields from an HF BERT-style config."""
    return {**{ours: getattr(hf, theirs) for ours, theirs in ENCODER_CONFIG_NAMES.items()},
            "gelu_approximate": _gelu_form(hf.hidden_act)}


# ModelConfig fields of an HF ``BertConfig``: nothing beyond what every BERT-style config holds.
from_hf_config = encoder_config_fields
