"""RoBERTa (Liu et al. 2019): BERT's encoder and MLM head without NSP, pooler or token types
(one token-type row, as HF), learned positions offset by ``padding_idx + 1`` (= 2); the same
architecture as HF ``RobertaForMaskedLM``. Its data differ from BERT's: FULL-SENTENCES packing and
dynamic masking (``samples.py``)."""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig
from plmscale.families.bert.model import (MaskedLMHead, MaskedLMModel, encoder_pieces,
                                          loss_positions, masked_lm_metrics)
from plmscale.families.pieces import Piece


def roberta_position_ids(attention_mask: torch.Tensor | None, seq_length: int, offset: int,
                         device=None) -> torch.Tensor:
    """HF RoBERTa's positions: real tokens count from ``offset`` (= padding_idx + 1), padding
    positions get ``padding_idx``. HF derives the padding from ``input_ids == pad_token_id``; here it
    comes from the attention mask, so it does not depend on which id the tokenizer pads with."""
    if attention_mask is None:
        return (torch.arange(seq_length, device=device) + offset)[None]
    mask = attention_mask.long()
    return torch.cumsum(mask, dim=1) * mask + max(offset - 1, 0)


def roberta_pieces(cfg: ModelConfig, precision: str = "fp32") -> list[Piece]:
    """BERT's encoder pieces with RoBERTa's positions (no token types), then the MLM head."""
    def positions(state):
        ids = state["input_ids"]
        return roberta_position_ids(state.get("attention_mask"), ids.shape[1], cfg.position_offset,
                                    ids.device)

    def loss(lm_head, state):
        return masked_lm_metrics(lm_head, state["hidden"], state["mlm_labels"],
                                 state["word_embeddings"])

    # No token types: RoBERTa has a single type row, added to every position.
    pieces = encoder_pieces(cfg, precision, "roberta", positions=positions, token_types=False,
                            read=loss_positions())
    head = {"lm_head": lambda: MaskedLMHead(cfg)}
    return pieces + [Piece(head, loss)]


class RobertaForMaskedLM(MaskedLMModel):
    """BERT encoder (positions offset) + BERT's tied MLM head; ``forward(batch)`` -> MLM loss."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32"):
        super().__init__(roberta_pieces(cfg, precision), cfg)
