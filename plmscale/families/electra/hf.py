"""plmscale ELECTRA -> HF ``ElectraForPreTraining`` (discriminator) and ``ElectraForMaskedLM``
(generator) state dicts. Each HF model gets its own copy of the shared embedding tables."""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig
from plmscale.families.bert.hf import (embeddings_to_hf, encoder_config_kwargs, encoder_layer_to_hf,
                                       mlm_head_to_hf)


def hf_config(cfg: ModelConfig):
    """``ElectraConfig`` of the discriminator (or of the generator, given its ``generator_config``)."""
    from transformers import ElectraConfig

    from plmscale.families.electra.model import embedding_width
    return ElectraConfig(**encoder_config_kwargs(cfg), embedding_size=embedding_width(cfg))


def generator_hf_config(cfg: ModelConfig):
    """``ElectraConfig`` of the generator (for ``ElectraForMaskedLM``): the shared embeddings'
    width is the generator config's ``embedding_size``."""
    from plmscale.families.electra.model import generator_config
    return hf_config(generator_config(cfg))


def _encoder(full: dict, ours: str, num_layers: int, heads: int) -> dict[str, torch.Tensor]:
    """Shared embeddings + one network's projection and layers, under HF's ``electra.`` names."""
    out = embeddings_to_hf(full, "embeddings.", "electra.embeddings.")
    for kind in ("weight", "bias"):
        if f"{ours}.embeddings_project.{kind}" in full:
            out[f"electra.embeddings_project.{kind}"] = full[f"{ours}.embeddings_project.{kind}"]
    for i in range(num_layers):
        out.update(encoder_layer_to_hf(full, f"{ours}.layers.{i}.", f"electra.encoder.layer.{i}.",
                                       heads))
    return out


def to_hf_state_dict(full: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Full (gathered, unpadded) plmscale tensors -> ``ElectraForPreTraining`` (the discriminator)."""
    out = _encoder(full, "discriminator", cfg.num_layers, cfg.num_attention_heads)
    for kind in ("weight", "bias"):
        for name in ("dense", "dense_prediction"):
            out[f"discriminator_predictions.{name}.{kind}"] = full[f"discriminator_head.{name}.{kind}"]
    return out


def generator_to_hf_state_dict(full: dict[str, torch.Tensor], cfg: ModelConfig
                               ) -> dict[str, torch.Tensor]:
    """Full plmscale tensors -> ``ElectraForMaskedLM`` (the generator; lm head tied to the shared
    word embeddings)."""
    from plmscale.families.electra.model import generator_config
    gen = generator_config(cfg)
    out = _encoder(full, "generator", gen.num_layers, gen.num_attention_heads)
    return {**out, **mlm_head_to_hf(full, "generator_predictions.dense",
                                    "generator_predictions.LayerNorm", "generator_lm_head.weight",
                                    ("generator_lm_head.bias",), "embeddings.word_embeddings.weight",
                                    ours="generator_head.")}
