"""Causal language modelling: every position predicts the next token, over vocab-parallel logits.

The inputs/labels shift is made by the sample builder (a window of seq_length + 1 tokens gives
``input_ids = w[:-1]``, ``labels = w[1:]``), so here a label sits at the position that predicts it.
"""

from __future__ import annotations

import torch
from megatron.core import tensor_parallel

from plmscale.models.common.heads import gather_last_dim
from plmscale.models.common.megatron import tp_world

from plmscale.objectives.masking import IGNORE_INDEX


def document_attention_mask(document_ids: torch.Tensor) -> torch.Tensor:
    """[b, s] document number of each token -> boolean [b, 1, s, s], True where query and key lie
    in different documents (the causal part is added by the softmax itself)."""
    return (document_ids[:, :, None] != document_ids[:, None, :])[:, None]


@torch.no_grad()
def vocab_parallel_argmax(logits: torch.Tensor) -> torch.Tensor:
    """Argmax over the full vocabulary of vocab-parallel ``logits`` [..., V/tp].

    Each rank reduces its slice first, so only two numbers per position cross the TP group instead
    of the full logits; ties go to the lowest vocabulary id, as ``argmax`` of the gathered logits.
    """
    rank, _ = tp_world()
    local_max, local_arg = logits.float().max(-1)
    maxima = gather_last_dim(local_max[..., None].contiguous())
    indices = gather_last_dim((local_arg + rank * logits.shape[-1])[..., None].contiguous())
    return indices.gather(-1, maxima.argmax(-1, keepdim=True)).squeeze(-1)


def causal_lm_loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor):
    """Mean next-token cross entropy and accuracy over labelled positions.

    ``logits`` [b, s, V/tp] (this rank's vocabulary slice), ``labels`` [b, s] with ``IGNORE_INDEX``
    where nothing is predicted (packed GPT windows label every position).
    """
    keep = labels != IGNORE_INDEX
    count = keep.sum().clamp(min=1)
    with torch.no_grad():  # before the loss: megatron's cross entropy edits its input in place
        accuracy = ((vocab_parallel_argmax(logits.detach()) == labels) & keep).sum() / count
    safe_labels = labels.masked_fill(~keep, 0)
    losses = tensor_parallel.vocab_parallel_cross_entropy(logits.float(), safe_labels)
    return (losses * keep).sum() / count, accuracy.float()
