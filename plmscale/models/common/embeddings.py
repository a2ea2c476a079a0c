"""Input embeddings: vocab-parallel word embeddings + learned positions (+ token types, + ERNIE 2.0's
task types), then an optional LayerNorm and dropout. Families differ only in which of these they switch on."""

from __future__ import annotations

import torch
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.models.common.megatron import (padded_vocab_size, tp_world,
                                             vocab_parallel_embedding)


class Embeddings(nn.Module):
    """``word_embeddings`` is split over TP ranks by vocabulary rows (padded to an equal split); the
    output is all-reduced inside megatron's ``VocabParallelEmbedding`` so every TP rank gets the full
    hidden state."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32", embedding_size: int | None = None,
                 position_offset: int = 0, layernorm: bool = True):
        super().__init__()
        if cfg.position_embedding_type not in ("learned", "rotary"):
            raise ValueError(f"model.position_embedding_type={cfg.position_embedding_type!r}: this "
                             "family's embeddings use learned positions (or rotary ones, applied "
                             "in attention); set it to 'learned' or 'rotary'")
        size = embedding_size or cfg.hidden_size
        self.padded_vocab_size = padded_vocab_size(cfg, tp_world()[1])
        self.word_embeddings = vocab_parallel_embedding(self.padded_vocab_size, size, precision)
        self.position_offset = position_offset
        # Rotary positions live in the attention layers: no position table here.
        self.position_embeddings = (nn.Embedding(cfg.max_position_embeddings + position_offset, size)
                                    if cfg.position_embedding_type == "learned" else None)
        self.token_type_embeddings = (nn.Embedding(cfg.type_vocab_size, size)
                                      if cfg.type_vocab_size > 0 else None)
        self.task_type_embeddings = (nn.Embedding(cfg.task_type_vocab_size, size)
                                     if cfg.task_type_vocab_size > 0 else None)
        self.LayerNorm = nn.LayerNorm(size, eps=cfg.layernorm_epsilon) if layernorm else None
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, task_type_ids: torch.Tensor | None = None):
        """``position_ids`` [b, s] (rows of ``position_embeddings``) default to ``position_offset``
        + 0, 1, 2, ... for every sequence; ``token_type_ids`` and ``task_type_ids`` [b, s] (where
        their tables exist) to 0, as HF's ``BertEmbeddings`` and ``ErnieEmbeddings``."""
        hidden = self.word_embeddings(input_ids)
        if self.position_embeddings is not None:
            if position_ids is None:
                position_ids = (torch.arange(input_ids.shape[1], device=input_ids.device)
                                + self.position_offset)[None]
            hidden = hidden + self.position_embeddings(position_ids)
        for table, ids in ((self.token_type_embeddings, token_type_ids),
                           (self.task_type_embeddings, task_type_ids)):
            if table is not None:
                hidden = hidden + table(ids if ids is not None else torch.zeros_like(input_ids))
        if self.LayerNorm is not None:
            hidden = self.LayerNorm(hidden)
        return self.dropout(hidden)
