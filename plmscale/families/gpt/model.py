"""GPT-2 (Radford et al. 2019): pre-LN causal decoder, learned positions, final LayerNorm, LM head
tied to the word embeddings without a bias; the same architecture as HF ``GPT2LMHeadModel``.

Trained with causal LM on packed documents (``samples.py``); optionally tokens do not attend across
the document separators of a packed window (``reset_attention_at_document_boundary``: the samples
then carry ``document_ids``, which travel with the state to every layer).

The same decoder with the config's modern switches is the Llama architecture (HF
``LlamaForCausalLM``, the ``llama`` family): rotary positions instead of a position table
(``position_embedding_type="rotary"``), RMSNorm, SwiGLU, grouped-query attention
(``num_query_groups``), no biases and an untied output table (``output_layer``, vocabulary-parallel
like the embedding).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.families.pieces import Piece, PiecewiseModel
from plmscale.models.common import (Embeddings, TiedVocabParallelLogits, gather_vocab_logits,
                                    padded_vocab_size, tp_world)
from plmscale.models.common.generation import evaluating, extend_until_eos
from plmscale.models.common.megatron import vocab_parallel_embedding
from plmscale.models.common.norms import build_norm
from plmscale.models.common.prenorm import PreLNLayer
from plmscale.objectives.causal_lm import (causal_lm_loss_and_accuracy, document_attention_mask,
                                           vocab_parallel_argmax)


def output_init_std(cfg: ModelConfig) -> float:
    """GPT-2's init std for the projections that write into the residual stream (attention output,
    second MLP layer): init_std / sqrt(2 * layers). Drawn on the full tensor: any TP/PP layout."""
    return cfg.init_std / math.sqrt(2 * cfg.num_layers)


def decoder_pieces(cfg: ModelConfig, precision: str, prefix: str,
                   embeddings: Callable[[], nn.Module], embed: Callable[[nn.Module, dict], dict],
                   mask: Callable[[dict], torch.Tensor | None],
                   loss: Callable[[nn.Module, dict], dict], causal: bool = True) -> list[Piece]:
    """GPT-2's stack, shared with Llama and GLM: [embeddings] [pre-LN layer] x num_layers [final
    norm], then ``loss(lm_head, state)`` with ``state["word_embeddings"]`` the output table: the
    word embeddings (tied) or its own ``output_layer`` when ``tie_word_embeddings`` is False.
    ``embed(module, state)`` sets ``state["hidden"]``; ``mask(state)``: each layer's attention mask
    (added to the causal one when ``causal``)."""
    path = f"{prefix}.embeddings"
    padded = padded_vocab_size(cfg, tp_world()[1])
    head = {"lm_head": lambda: TiedVocabParallelLogits(padded, cfg.vocab_size, bias=False)}
    if not cfg.tie_word_embeddings:
        head["output_layer"] = lambda: vocab_parallel_embedding(padded, cfg.hidden_size, precision)

    def layer(module, state):
        return {**state, "hidden": module(state["hidden"], mask(state))}

    def output(lm_head, *rest):
        *table, state = rest
        return loss(lm_head, {**state, "word_embeddings": table[0].weight} if table else state)

    tied = [Piece({path: embeddings}, lambda module, state: {**state, "word_embeddings":
                                                             module.word_embeddings.output_table()},
                  tie=("word_embeddings.weight",))]
    return ([Piece({path: embeddings}, embed)]
            + [Piece({f"{prefix}.layers.{i}": lambda i=i: PreLNLayer(
                cfg, precision, causal=causal, output_init_std=output_init_std(cfg),
                layer_number=i)},
                     layer, layer=True) for i in range(cfg.num_layers)]
            + [Piece({f"{prefix}.final_layernorm": lambda: build_norm(cfg)},
                     lambda norm, state: {**state, "hidden": norm(state["hidden"])})]
            + (tied if cfg.tie_word_embeddings else []) + [Piece(head, output)])


def gpt_pieces(cfg: ModelConfig, precision: str = "fp32") -> list[Piece]:
    """[embeddings] [pre-LN causal layer] x num_layers [final norm], the LM head + loss (tied to the
    word embeddings, or its own ``output_layer`` table when ``tie_word_embeddings`` is False)."""
    def mask(state):
        documents = state.get("document_ids")
        return document_attention_mask(documents) if documents is not None else None

    def loss(lm_head, state):
        logits = lm_head(state["hidden"], state["word_embeddings"])
        loss, accuracy = causal_lm_loss_and_accuracy(logits, state["labels"])
        return {"loss": loss, "lm_loss": loss, "lm_accuracy": accuracy}

    # GPT has no token types and no embedding LayerNorm (the first layer's norm does that job).
    return decoder_pieces(
        cfg, precision, "gpt",
        lambda: Embeddings(dataclasses.replace(cfg, type_vocab_size=0), precision, layernorm=False),
        lambda module, state: {**state, "hidden": module(state["input_ids"])}, mask, loss)



class GPTForCausalLM(PiecewiseModel):
    """GPT (or Llama) with its LM head. ``forward(batch)`` -> {"loss", "lm_loss", "lm_accuracy"}."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32"):
        super().__init__(gpt_pieces(cfg, precision), cfg)

    def _vocab_logits(self, input_ids, document_ids=None, last_only: bool = False):
        state = self.run({"input_ids": input_ids, "document_ids": document_ids}, self.pieces[:-1])
        hidden = state["hidden"][:, -1] if last_only else state["hidden"]
        table = (state["word_embeddings"] if self.cfg.tie_word_embeddings
                 else self.output_layer.weight)
        return self.lm_head(hidden, table)

    @torch.no_grad()
    def logits(self, input_ids, document_ids=None):
        """Full-vocabulary next-token logits [b, s, V], as HF's ``GPT2LMHeadModel`` (or
        ``LlamaForCausalLM``) returns them."""
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

        with evaluating(self):
            return extend_until_eos(next_token, input_ids, max_new_tokens, eos_id)
