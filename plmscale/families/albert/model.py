"""ALBERT (Lan et al. 2019): factorised embeddings (width E, projected to H), ONE set of layer
parameters applied at every depth, BERT's MLM head working at width E, and sentence-order prediction
(SOP) instead of NSP; the same architecture as HF ``AlbertForPreTraining``.

The shared layer is a single module (``albert.layer_groups.0``) that every depth's piece runs, so it
is one parameter set with one gradient (the sum over depths); under pipeline parallelism each stage
holds a copy tied to the others, as the input and output word embeddings are.
"""

from __future__ import annotations

import torch
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.families.bert.model import (encoder_pieces, loss_positions, pair_model_logits,
                                          pretraining_head)
from plmscale.families.pieces import Piece, PiecewiseModel
from plmscale.models.common import Embeddings


def albert_pieces(cfg: ModelConfig, precision: str = "fp32",
                  sentence_order_prediction: bool = True) -> list[Piece]:
    """Embeddings at width E, the E -> H projection, ``num_layers`` applications of the layer
    groups (one group when ``share_layer_parameters``; HF's ``num_hidden_groups``: depth i uses group
    ``i * groups // num_layers``), then the MLM head (H -> E, tied) and the SOP head."""
    width = cfg.embedding_size or cfg.hidden_size
    groups = 1 if cfg.share_layer_parameters else cfg.num_layers
    pieces = encoder_pieces(
        cfg, precision, "albert", embeddings=lambda: Embeddings(cfg, precision, embedding_size=width),
        layer_path=lambda depth: f"albert.layer_groups.{depth * groups // cfg.num_layers}",
        read=loss_positions("sentence_order_label" if sentence_order_prediction else None))
    project = Piece({"albert.embedding_hidden_mapping_in": lambda: nn.Linear(width, cfg.hidden_size)},
                    lambda linear, state: {**state, "hidden": linear(state["hidden"])})
    # sentence_order_label: 0 = segments in order, 1 = swapped (HF's convention)
    heads = pretraining_head(cfg, "sop", "sentence_order_label", sentence_order_prediction,
                             output_size=width)
    return pieces[:1] + [project] + pieces[1:] + [heads]


class AlbertForPreTraining(PiecewiseModel):
    """ALBERT with the MLM head and the SOP head on the pooled [CLS]. ``forward(batch)``: MLM loss,
    plus SOP when the batch has ``sentence_order_label`` and the objective enables it."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32",
                 sentence_order_prediction: bool = True):
        super().__init__(albert_pieces(cfg, precision, sentence_order_prediction), cfg)

    @torch.no_grad()
    def logits(self, input_ids, token_type_ids=None, attention_mask=None):
        """Full-vocabulary MLM logits [b, s, V] and SOP logits [b, 2], as HF's model returns them."""
        return pair_model_logits(self, self.sop_head, input_ids, token_type_ids, attention_mask)
