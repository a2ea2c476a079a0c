"""GPT-2 (Radford et al. 2019): pre-LN causal decoder, learned positions, final LayerNorm, LM head
tied to the word embeddings without a bias; the same architecture as HF ``GPT2LMHeadModel``.

Trained with causal LM on packed documents (``plmscale.data.gpt_samples``); optionally tokens do not
attend across the document separators of a packed window (``reset_attention_at_document_boundary``).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.models.common import Embeddings, TiedVocabParallelLogits, gather_vocab_logits
from plmscale.models.common.generation import extend_until_eos
from plmscale.models.common.prenorm import PreLNLayer
from plmscale.models.family import Family, imported_on_call
from plmscale.objectives.causal_lm import (causal_lm_loss_and_accuracy, document_attention_mask,
                                           vocab_parallel_argmax)


def output_init_std(cfg: ModelConfig) -> float:
    """GPT-2's init std for the projections that write into the residual stream (attention output,
    second MLP layer): init_std / sqrt(2 * layers). Drawn on the full tensor: any TP/PP layout."""
    return cfg.init_std / math.sqrt(2 * cfg.num_layers)


class GPTModel(nn.Module):
    """Backbone: word + position embeddings -> pre-LN causal layers -> final LayerNorm."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32"):
        super().__init__()
        # GPT has no token types and no embedding LayerNorm (the first layer's norm does that job).
        self.embeddings = Embeddings(dataclasses.replace(cfg, type_vocab_size=0), precision,
                                     layernorm=False)
        self.layers = nn.ModuleList(
            PreLNLayer(cfg, precision, causal=True, output_init_std=output_init_std(cfg))
            for _ in range(cfg.num_layers))
        self.final_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_epsilon)

    def forward(self, input_ids: torch.Tensor, document_ids: torch.Tensor | None = None):
        """Hidden states [b, s, h]. ``document_ids`` [b, s] (optional): a token attends only to
        earlier tokens of the same document."""
        mask = document_attention_mask(document_ids) if document_ids is not None else None
        hidden = self.embeddings(input_ids)
        for layer in self.layers:
            hidden = layer(hidden, mask)
        return self.final_layernorm(hidden)


class GPTForCausalLM(nn.Module):
    """GPT with the tied LM head. ``forward(batch)`` -> {"loss", "lm_loss", "lm_accuracy"}."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32"):
        super().__init__()
        self.cfg = cfg
        self.gpt = GPTModel(cfg, precision)
        self.lm_head = TiedVocabParallelLogits(self.gpt.embeddings.padded_vocab_size,
                                               cfg.vocab_size, bias=False)

    def _vocab_logits(self, input_ids, document_ids=None):
        hidden = self.gpt(input_ids, document_ids)
        return self.lm_head(hidden, self.gpt.embeddings.word_embeddings.weight)

    def forward(self, batch: dict) -> dict:
        logits = self._vocab_logits(batch["input_ids"], batch.get("document_ids"))
        loss, accuracy = causal_lm_loss_and_accuracy(logits, batch["labels"])
        return {"loss": loss, "lm_loss": loss, "lm_accuracy": accuracy}

    @torch.no_grad()
    def logits(self, input_ids, document_ids=None):
        """Full-vocabulary next-token logits [b, s, V], as HF's ``GPT2LMHeadModel`` returns them."""
        return gather_vocab_logits(self._vocab_logits(input_ids, document_ids), self.cfg.vocab_size)

    @torch.no_grad()
    def greedy_generate(self, input_ids: torch.Tensor, max_new_tokens: int,
                        eos_id: int | None = None) -> torch.Tensor:
        """Up to ``max_new_tokens`` argmax continuation tokens [b, n] of the prompts ``input_ids``
        [b, s] (full recompute each step; the context is cut to the last ``max_position_embeddings``
        tokens). Stops early once every row has produced ``eos_id`` (rows that finished are filled
        with it). Collective over the TP group (same result on all its ranks). This is the method
        ``launch/generate.py`` calls; every family that decodes provides it."""
        def next_token(ids):
            context = ids[:, -self.cfg.max_position_embeddings:]
            hidden = self.gpt(context)[:, -1]  # only the last position's logits are needed
            return vocab_parallel_argmax(
                self.lm_head(hidden, self.gpt.embeddings.word_embeddings.weight))

        was_training = self.training
        self.eval()
        new_ids = extend_until_eos(next_token, input_ids, max_new_tokens, eos_id)
        self.train(was_training)
        return new_ids


def _samples(corpus, cfg):
    from plmscale.data.gpt_samples import GPTSamples
    return GPTSamples(corpus, corpus.tokens, cfg.data, cfg.objective, cfg.train.seed)


FAMILY = Family(
    name="gpt",
    build=lambda cfg: GPTForCausalLM(cfg.model, cfg.train.precision),
    samples=_samples,
    hf_config=imported_on_call("plmscale.export.gpt2", "hf_config"),
    hf_model_class="GPT2LMHeadModel",
    to_hf_state_dict=imported_on_call("plmscale.export.gpt2", "to_hf_state_dict"),
    pipeline=imported_on_call("plmscale.models.gpt_pipe", "gpt_pipeline"),
)
