"""ERNIE 2.0 (Sun et al. 2020): BERT's encoder with a task-type embedding (HF ``ErnieModel`` with
``use_task_id``), the knowledge-masking MLM head and one head per ERNIE 2.0 task
(``plmscale.objectives.ernie_tasks``): capitalization and token-document relation per token,
sentence reordering and sentence distance on the pooled ``[CLS]``.

HF ``ErnieForPreTraining`` is the encoder, pooler, MLM head and a two-way ``seq_relationship``
head: the export takes that head from the sentence-distance head's adjacent and other-document
rows (``SEQ_RELATIONSHIP_ROWS``), so the model holds HF's parameters plus the task heads."""

from __future__ import annotations

import torch
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.families.bert.model import (MaskedLMHead, encoder_pieces, masked_lm_metrics,
                                          pair_model_logits)
from plmscale.families.pieces import Piece, PiecewiseModel
from plmscale.objectives.ernie_tasks import (SENTENCE_DISTANCE_CLASSES, SEQ_RELATIONSHIP_ROWS,
                                             classification_metrics, reorder_classes)

# The task heads: name -> (its labels in the batch, reads the pooled [CLS] rather than every token).
TASK_HEADS = {"capitalization": ("capitalization_labels", False),
              "token_document": ("token_document_labels", False),
              "sentence_reordering": ("sentence_reordering_label", True),
              "sentence_distance": ("sentence_distance_label", True)}


def ernie_pieces(cfg: ModelConfig, precision: str = "fp32", reorder_max_segments: int = 3
                 ) -> list[Piece]:
    """The encoder pieces (task embeddings in the embeddings piece), then MLM + the task heads."""
    classes = {"capitalization": 2, "token_document": 2,
               "sentence_reordering": reorder_classes(reorder_max_segments),
               "sentence_distance": len(SENTENCE_DISTANCE_CLASSES)}
    heads = {"pooler": lambda: nn.Linear(cfg.hidden_size, cfg.hidden_size),
             "lm_head": lambda: MaskedLMHead(cfg)}
    heads.update({f"{name}_head": (lambda n=n: nn.Linear(cfg.hidden_size, n))
                  for name, n in classes.items()})

    def losses(pooler, lm_head, *task_heads_and_state):
        *task_heads, state = task_heads_and_state
        hidden = state["hidden"]
        out = masked_lm_metrics(lm_head, hidden, state["mlm_labels"], state["word_embeddings"])
        pooled = torch.tanh(pooler(hidden[:, 0]))
        for head, (name, (labels, sequence)) in zip(task_heads, TASK_HEADS.items()):
            out = classification_metrics(name, head(pooled if sequence else hidden), state[labels],
                                         out)
        return out

    return encoder_pieces(cfg, precision, "ernie") + [Piece(heads, losses)]


class ErnieForPreTraining(PiecewiseModel):
    """ERNIE 2.0 with its task heads. ``forward(batch)`` returns the losses and metrics of one batch."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32", reorder_max_segments: int = 3):
        super().__init__(ernie_pieces(cfg, precision, reorder_max_segments), cfg)

    @torch.no_grad()
    def logits(self, input_ids, token_type_ids=None, attention_mask=None, task_type_ids=None):
        """MLM logits [b, s, V] and the two-way sentence-relationship logits [b, 2], as HF's
        ``ErnieForPreTraining`` returns them after export."""
        return pair_model_logits(
            self, lambda pooled: self.sentence_distance_head(pooled)[:, list(SEQ_RELATIONSHIP_ROWS)],
            input_ids, token_type_ids, attention_mask, task_type_ids=task_type_ids)
