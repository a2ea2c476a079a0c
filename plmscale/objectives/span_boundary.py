"""SpanBERT's span boundary objective (SBO, Joshi et al. 2020), as a head any encoder can attach.

Each token ``x_i`` of a masked span ``(s, e)`` is predicted from the encoder outputs of the two tokens
just outside the span and a learned embedding of its position inside the span:

    h0 = [x_{s-1}; x_{e+1}; p_{i-s}]
    h1 = LayerNorm(GELU(W1 h0))
    y_i = LayerNorm(GELU(W2 h1))

then projected onto the vocabulary by the MLM head's (tied) output layer; the SBO cross entropy is
added to the MLM loss. The data side (``BertSamples`` with ``objective.span_boundary_objective``)
supplies, for every token i of a span s..e (inclusive), ``sbo_left`` = s-1, ``sbo_right`` = e+1 and
``sbo_position`` = i-s, all -1 outside spans (``plmscale.objectives.masking_strategies.span_boundary_targets``).

The head is small (two h x h-sized linears) and replicated on tensor-parallel ranks, like the MLM
head's dense layer; the vocabulary projection stays vocab-parallel through the ``project`` and
``loss_fn`` callables the model passes in.

Attaching it to a model (``forward``)::

    sbo_loss, sbo_accuracy = span_boundary_loss(
        self.sbo_head, hidden, batch["sbo_left"], batch["sbo_right"], batch["sbo_position"],
        batch["mlm_labels"],
        project=lambda y: self.lm_head.logits(y, embedding_weight),
        loss_fn=vocab_parallel_loss_and_accuracy)
    loss = mlm_loss + sbo_loss
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn


class SpanBoundaryHead(nn.Module):
    """The SBO representation network: boundary states + relative position -> 2-layer FFN with GELU
    and LayerNorm after each layer. ``max_positions`` offsets are embedded; longer spans (in tokens)
    share the last embedding."""

    def __init__(self, hidden_size: int, max_positions: int = 64, position_embedding_size: int = 200,
                 layernorm_epsilon: float = 1e-12, gelu_approximate: str = "none"):
        super().__init__()
        self.max_positions = max_positions
        self.position_embeddings = nn.Embedding(max_positions, position_embedding_size)
        self.dense1 = nn.Linear(2 * hidden_size + position_embedding_size, hidden_size)
        self.LayerNorm1 = nn.LayerNorm(hidden_size, eps=layernorm_epsilon)
        self.dense2 = nn.Linear(hidden_size, hidden_size)
        self.LayerNorm2 = nn.LayerNorm(hidden_size, eps=layernorm_epsilon)
        self.approximate = gelu_approximate

    def forward(self, hidden: torch.Tensor, left: torch.Tensor, right: torch.Tensor,
                position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``hidden`` [b, s, h]; ``left``/``right``/``position`` [b, s] (-1 outside spans).
        Returns (representations [n, h] of the n span tokens, their flat indices into b*s in
        row-major order - the order of ``labels[position >= 0]``)."""
        b, s, h = hidden.shape
        selected = position >= 0
        rows = torch.arange(b, device=hidden.device).unsqueeze(1).expand(b, s)[selected]
        flat = hidden.reshape(b * s, h)
        left_state = flat[rows * s + left[selected]]
        right_state = flat[rows * s + right[selected]]
        offsets = position[selected].clamp(max=self.max_positions - 1)
        x = torch.cat([left_state, right_state, self.position_embeddings(offsets)], dim=-1)
        x = self.LayerNorm1(F.gelu(self.dense1(x), approximate=self.approximate))
        x = self.LayerNorm2(F.gelu(self.dense2(x), approximate=self.approximate))
        return x, torch.nonzero(selected.reshape(-1), as_tuple=False).squeeze(1)


def _local_loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor):
    loss = F.cross_entropy(logits.float(), labels)
    with torch.no_grad():
        accuracy = (logits.argmax(-1) == labels).float().mean()
    return loss, accuracy


def span_boundary_loss(head: SpanBoundaryHead, hidden: torch.Tensor, left: torch.Tensor,
                       right: torch.Tensor, position: torch.Tensor, labels: torch.Tensor,
                       project: Callable[[torch.Tensor], torch.Tensor],
                       loss_fn: Optional[Callable] = None):
    """Mean SBO cross entropy and accuracy over the span tokens of a batch.

    ``labels`` [b, s] are the MLM labels (the original token at every masked position); ``project``
    maps [n, h] representations to logits (the MLM head's output layer); ``loss_fn(logits, labels)
    -> (loss, accuracy)`` defaults to a single-device cross entropy (pass
    ``vocab_parallel_loss_and_accuracy`` under tensor parallelism). A batch without spans gives a
    zero loss that still depends on the head's parameters (so every rank runs the same backward).
    """
    loss_fn = loss_fn or _local_loss_and_accuracy
    representations, index = head(hidden, left, right, position)
    targets = labels.reshape(-1)[index]
    if targets.numel() == 0:
        zero = sum(p.sum() for p in head.parameters()) * 0.0 + hidden.sum() * 0.0
        return zero, zero.detach()
    return loss_fn(project(representations), targets)
