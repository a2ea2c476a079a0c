"""GLM (Du et al. 2022; THUDM/GLM ``mpu/transformer.py``): pre-LN Transformer (LayerNorm eps 1e-5,
tanh GELU, 4h MLP) with a final LayerNorm; word + position + block-position embeddings (two tables
of max_seq + 1 rows); logits = hidden @ word_embeddings^T, no bias. The attention mask comes from
each sample's Part A length (``plmscale.objectives.blank_infilling.glm_attention_mask``).

HF has no GLM class; the same network is ``GPT2LMHeadModel`` (n_positions = max_seq + 1) given
``inputs_embeds`` = word + block-position embeddings, the position ids and the mask as a float
additive 4-D mask (``plmscale.families.glm.hf``).
"""

from __future__ import annotations

import dataclasses

import torch

from plmscale.config.schema import ModelConfig
from plmscale.families.gpt.model import decoder_pieces
from plmscale.families.pieces import Piece, PiecewiseModel
from plmscale.models.common import (Embeddings, gather_vocab_logits,
                                    vocab_parallel_loss_and_accuracy)
from plmscale.models.common.generation import extend_until_eos
from plmscale.objectives import IGNORE_INDEX
from plmscale.objectives.blank_infilling import glm_attention_mask
from plmscale.objectives.causal_lm import vocab_parallel_argmax


def glm_embeddings(cfg: ModelConfig, precision: str) -> Embeddings:
    """Word + position + block-position embeddings without a LayerNorm. The block-position table is
    the module's token-type table (same size as the position table): one more learned table added
    to the sum, which is what GLM's block positions are."""
    return Embeddings(dataclasses.replace(cfg, type_vocab_size=cfg.max_position_embeddings),
                      precision, layernorm=False)


def glm_pieces(cfg: ModelConfig, precision: str = "fp32") -> list[Piece]:
    """GPT-2's stack (``decoder_pieces``) with GLM's embeddings and masks; loss on Part B."""
    def embed(module, state):
        return {**state, "hidden": module(state["input_ids"], state["block_position_ids"],
                                          state["position_ids"])}

    def loss(lm_head, state):
        labels = state["labels"]
        selected = labels != IGNORE_INDEX  # Part B only: the head runs on those positions alone
        logits = lm_head(state["hidden"][selected], state["word_embeddings"])
        loss, accuracy = vocab_parallel_loss_and_accuracy(logits, labels[selected])
        return {"loss": loss, "lm_loss": loss, "lm_accuracy": accuracy}

    return decoder_pieces(cfg, precision, "glm", lambda: glm_embeddings(cfg, precision), embed,
                          lambda state: glm_attention_mask(state["part_a"],
                                                           state["hidden"].shape[1]),
                          loss, causal=False)


class GLMForBlankInfilling(PiecewiseModel):
    """``forward(batch)`` -> {"loss", "lm_loss", "lm_accuracy"} (Part B tokens, per token)."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32"):
        super().__init__(glm_pieces(cfg, precision), cfg)

    def _vocab_logits(self, input_ids, position_ids, block_position_ids, part_a, last_only=False):
        state = self.run({"input_ids": input_ids, "position_ids": position_ids,
                          "block_position_ids": block_position_ids, "part_a": part_a},
                         self.pieces[:-1])
        hidden = state["hidden"][:, -1] if last_only else state["hidden"]
        return self.lm_head(hidden, state["word_embeddings"])

    @torch.no_grad()
    def logits(self, input_ids, position_ids, block_position_ids, part_a):
        """Full-vocabulary logits [b, s, V] of every position (GPT-2's ``logits`` on the same
        inputs, see the module docstring)."""
        return gather_vocab_logits(self._vocab_logits(input_ids, position_ids, block_position_ids,
                                                      part_a), self.cfg.vocab_size)

    @torch.no_grad()
    def fill_blank(self, part_a: torch.Tensor, mask_position: int, start_id: int,
                   max_new_tokens: int, end_id: int | None = None) -> torch.Tensor:
        """Greedy blank filling: Part A ``part_a`` [b, n] holds a mask token at ``mask_position``;
        returns the span written for it [b, <= max_new_tokens] (stopping once every row has
        produced ``end_id``, GLM's [END]). Full recompute per token; collective over TP."""
        b, n = part_a.shape
        lengths = torch.full((b,), n, dtype=torch.long, device=part_a.device)

        def next_token(ids):
            k = ids.shape[1] - n  # [START] + the tokens written so far
            positions = torch.cat([torch.arange(n), torch.full((k,), mask_position)])
            blocks = torch.cat([torch.zeros(n, dtype=torch.long), torch.arange(1, k + 1)])
            logits = self._vocab_logits(ids, positions[None].expand(b, -1).to(ids.device),
                                        blocks[None].expand(b, -1).to(ids.device), lengths,
                                        last_only=True)
            return vocab_parallel_argmax(logits)

        was_training = self.training
        self.eval()
        start = torch.full((b, 1), start_id, dtype=part_a.dtype, device=part_a.device)
        new_ids = extend_until_eos(next_token, torch.cat([part_a, start], 1), max_new_tokens,
                                   end_id)
        self.train(was_training)
        return new_ids

    @torch.no_grad()
    def greedy_generate(self, input_ids: torch.Tensor, max_new_tokens: int,
                        eos_id: int | None = None) -> torch.Tensor:
        """``launch/generate.py``'s entry (``FAMILY.generation``): the prompt is Part A
        ending in a blank, then [START] (``[CLS] text [gMASK] [START]``); returns the text written
        into that last blank, i.e. the document's continuation (GLM's [gMASK] objective)."""
        part_a, start = input_ids[:, :-1], int(input_ids[0, -1])
        return self.fill_blank(part_a, part_a.shape[1] - 1, start, max_new_tokens, eos_id)
