"""MPNet (Song et al. 2020): a post-LN encoder with RoBERTa-style positions, no token types and one
T5-style relative-bias table shared by all layers; the same architecture as HF ``MPNetForMaskedLM``.

Masked and permuted pretraining needs no special layers: the content and query streams are one
sequence of L + 2 pred rows (``plmscale.objectives.masked_permutation``) under a general mask in
which no row sees the query block, so a standard self-attention with keys from every row computes
exactly the two-stream attention (the query block's keys exist but are never read). Positions (and
from them the relative bias) are the permuted positions, per sample. Batch keys: ``input_ids``,
``position_ids`` (0-based), ``attention_visible`` [b, S, S] (True = may see) and ``mlm_labels``
[b, pred] for the last pred rows; or, in standard order, ``input_ids`` and ``attention_mask``.
"""

from __future__ import annotations

import dataclasses

import torch

from plmscale.config.schema import ModelConfig
from plmscale.families.bert.model import MaskedLMHead, masked_lm_metrics
from plmscale.families.pieces import Piece, PiecewiseModel
from plmscale.models.common import Embeddings, PostLNLayer, gather_vocab_logits, padding_mask
from plmscale.models.common.heads import GatherFromTensorParallel, ScatterToTensorParallel
from plmscale.models.common.relative_position import (RelativePositionBias,
                                                      relative_position_bucket)


class MPNetLayer(PostLNLayer):
    """BERT's post-LN layer with the shared relative position bias added to its scores."""

    def forward(self, hidden, mask, position_bias):
        hidden = self.attention_layernorm(
            hidden + self.dropout(self.self_attention(hidden, mask, position_bias)))
        return self.output_layernorm(hidden + self.dropout(self.mlp(hidden)))


def _positions(state: dict) -> torch.Tensor:
    ids = state["input_ids"]
    if "position_ids" in state:
        return state["position_ids"]
    return torch.arange(ids.shape[1], device=ids.device).expand(ids.shape[0], -1)


def mpnet_pieces(cfg: ModelConfig, precision: str = "fp32") -> list[Piece]:
    """[embeddings] [relative bias] [layer] x num_layers, the tied MLM head on the query rows."""
    embeddings = {"mpnet.embeddings": lambda: Embeddings(
        dataclasses.replace(cfg, type_vocab_size=0), precision, position_offset=cfg.position_offset)}

    def embed(module, state):
        positions = _positions(state)
        mask = (~state["attention_visible"].bool())[:, None] if "attention_visible" in state \
            else padding_mask(state.get("attention_mask"))
        out = {**{k: v for k, v in state.items() if k not in ("attention_visible", "attention_mask")},
               "hidden": module(state["input_ids"], None, positions + cfg.position_offset)}
        return out if mask is None else {**out, "hidden_mask": mask}

    def bias(module, state):
        # [b, S, S, heads/tp] from the permuted positions; gathered so the state that crosses
        # pipeline stages is the same on every TP rank (each layer takes its heads back).
        positions = _positions(state)
        buckets = relative_position_bucket(positions[:, None, :] - positions[:, :, None], True,
                                           module.num_buckets, module.max_distance)
        return {**state, "position_bias": GatherFromTensorParallel.apply(module.weight[buckets])}

    def layer(module, state):
        local = ScatterToTensorParallel.apply(state["position_bias"]).permute(0, 3, 1, 2)
        return {**state, "hidden": module(state["hidden"], state.get("hidden_mask"), local)}

    def hand_over(module, state):  # the tied output projection reads the input embedding table
        return {**state, "word_embeddings": module.word_embeddings.output_table()}

    def loss(lm_head, state):
        labels = state["mlm_labels"]
        query = state["hidden"][:, -labels.shape[1]:]
        return masked_lm_metrics(lm_head, query, labels, state["word_embeddings"])

    return ([Piece(embeddings, embed),
             Piece({"mpnet.encoder.relative_attention_bias":
                    lambda: RelativePositionBias(cfg, bidirectional=True)}, bias)]
            + [Piece({f"mpnet.layers.{i}": lambda: MPNetLayer(cfg, precision)}, layer, layer=True)
               for i in range(cfg.num_layers)]
            + [Piece(embeddings, hand_over, tie=("word_embeddings.weight",)),
               Piece({"lm_head": lambda: MaskedLMHead(cfg)},
                     loss)])


class MPNetForMaskedLM(PiecewiseModel):
    """MPNet with its tied MLM head. ``forward(batch)`` -> {"loss", "mlm_loss", "mlm_accuracy"}."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32"):
        super().__init__(mpnet_pieces(cfg, precision), cfg)

    @torch.no_grad()
    def logits(self, input_ids, attention_mask=None):
        """Full-vocabulary MLM logits [b, s, V] in standard order, as HF's model returns them."""
        state = self.run({"input_ids": input_ids, "attention_mask": attention_mask},
                         self.pieces[:-1])
        return gather_vocab_logits(self.lm_head(state["hidden"], state["word_embeddings"]),
                                   self.cfg.vocab_size)
