"""The masked-LM loss over the labelled positions only (shared by the MLM encoder families)."""

from __future__ import annotations

import torch

from plmscale.models.common.heads import vocab_parallel_loss_and_accuracy

IGNORE_INDEX = -100


def masked_lm_metrics(head, hidden: torch.Tensor, labels: torch.Tensor,
                      embedding_weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """``mlm_loss`` and ``mlm_accuracy`` of ``head(hidden, embedding_weight)`` against ``labels``
    ([b, s], -100 = not predicted). Only the labelled positions (~15%) go through the head: the
    vocabulary projection is the most expensive matmul of a small encoder's step."""
    selected = labels != IGNORE_INDEX
    logits = head(hidden[selected], embedding_weight)
    loss, accuracy = vocab_parallel_loss_and_accuracy(logits, labels[selected])
    return {"mlm_loss": loss, "mlm_accuracy": accuracy}
