"""GPT-2 (Radford et al. 2019): pre-LN causal decoder, learned positions, final LayerNorm, LM head
tied to the word embeddings without a bias; the same architecture as HF ``GPT2LMHeadModel``.

Trained with causal LM on packed documents (``samples.py``); optionally tokens do not attend across
the document separators of a packed window (``reset_attention_at_document_boundary``: the samples
then carry ``document_ids``, which travel with the state to every layer).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.families.pieces import Piece, PiecewiseModel
from plmscale.models.common import (Embeddings, TiedVocabParallelLogits, gather_vocab_logits,
                                    padded_vocab_size, tp_world)
from plmscale.models.common.generation import extend_until_eos
from plmscale.models.common.prenorm import PreLNLayer
from plmscale.objectives.causal_lm import (causal_lm_loss_and_accuracy, document_attention_mask,
                                           vocab_parallel_argmax)


def output_init_std(cfg: ModelConfig) -> float:
    """GPT-2's init std for the projections that write into the residual stream (attention output,
    second MLP layer): init_std / sqrt(2 * layers). Drawn on the full tensor: any TP/PP layout."""
    return cfg.init_std / math.sqrt(2 * cfg.num_layers)


def gpt_pieces(cfg: ModelConfig, precision: str = "fp32") -> list[Piece]:
    """[embeddings] [pre-LN causal layer] x num_layers [final norm], the tied LM head + loss."""
    # GPT has no token types and no embedding LayerNorm (the first layer's norm does that job).
    embeddings = {"gpt.embeddings": lambda: Embeddings(dataclasses.replace(cfg, type_vocab_size=0),
                                                       precision, layernorm=False)}

    def layer(module, state):
        documents = state.get("document_ids")
        mask = document_attention_mask(documents) if documents is not None else None
        return {**state, "hidden": module(state["hidden"], mask)}

    def loss(lm_head, state):
        logits = lm_head(state["hidden"], state["word_embeddings"])
        loss, accuracy = causal_lm_loss_and_accuracy(logits, state["labels"])
        return {"loss": loss, "lm_loss": loss, "lm_accuracy": accuracy}

    return ([Piece(embeddings, lambda module, state: {**state, "hidden": module(state["input_ids"])})]
            + [Piece({f"gpt.layers.{i}": lambda i=i: PreLNLayer(
                cfg, precision, causal=True, output_init_std=output_init_std(cfg), layer_number=i)},
                     layer, layer=True) for i in range(cfg.num_layers)]
            + [Piece({"gpt.final_layernorm": lambda: nn.LayerNorm(cfg.hidden_size,
                                                                  eps=cfg.layernorm_epsilon)},
                     lambda norm, state: {**state, "hidden": norm(state["hidden"])}),
               Piece(embeddings, lambda module, state: {**state, "word_embeddings":
                                                        module.word_embeddings.weight},
                     tie=("word_embeddings.weight",)),
               Piece({"lm_head": lambda: TiedVocabParallelLogits(
                   padded_vocab_size(cfg, tp_world()[1]), cfg.vocab_size, bias=False)}, loss)])


class GPTForCausalLM(PiecewiseModel):
    """GPT with the tied LM head. ``forward(batch)`` -> {"loss", "lm_loss", "lm_accuracy"}."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32"):
        super().__init__(gpt_pieces(cfg, precision))
        self.cfg = cfg

    def _vocab_logits(self, input_ids, document_ids=None, last_only: bool = False):
        state = self.run({"input_ids": input_ids, "document_ids": document_ids}, self.pieces[:-1])
        hidden = state["hidden"][:, -1] if last_only else state["hidden"]
        return self.lm_head(hidden, state["word_embeddings"])

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
            return vocab_parallel_argmax(self._vocab_logits(context, last_only=True))

        was_training = self.training
        self.eval()
        new_ids = extend_until_eos(next_token, input_ids, max_new_tokens, eos_id)
        self.train(was_training)
        return new_ids
