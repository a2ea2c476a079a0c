"""The token-by-token loop of greedy generation, shared by the families that decode (GPT, T5, BART).

The families differ only in how they get the next token from the ids so far (a decoder-only prefix,
or a decoder over a cached encoder output); the end-of-sequence bookkeeping is the same for all.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch


def extend_until_eos(next_token: Callable[[torch.Tensor], torch.Tensor], ids: torch.Tensor,
                     max_new_tokens: int, eos_id: int | None = None) -> torch.Tensor:
    """Appends up to ``max_new_tokens`` tokens to ``ids`` [b, n] and returns only the new ones
    [b, <= max_new_tokens].

    ``next_token(ids)`` gives the next token id [b] of every row from the ids so far. Once a row has
    produced ``eos_id`` it is filled with ``eos_id`` from then on, and the loop stops early when every
    row has (``eos_id=None``: always ``max_new_tokens`` steps).
    """
    prefix_length = ids.shape[1]
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for _ in range(max_new_tokens):
        next_ids = next_token(ids)
        if eos_id is not None:
            next_ids = next_ids.masked_fill(finished, eos_id)
            finished |= next_ids == eos_id
        ids = torch.cat([ids, next_ids[:, None]], dim=1)
        if eos_id is not None and bool(finished.all()):
            break
    return ids[:, prefix_length:]


@contextlib.contextmanager
def evaluating(model: torch.nn.Module):
    """``model`` in eval mode inside the block (no dropout while generating), its mode before after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def encoder_decoder_greedy(model, input_ids: torch.Tensor, start_id: int, max_new_tokens: int,
                           eos_id: int | None, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """``extend_until_eos`` for an encoder-decoder ``model`` with ``encode(ids, mask)``,
    ``decode(ids, memory, mask)`` and ``head(hidden)`` (this TP rank's vocabulary slice): the encoder
    runs once, the decoder recomputes its whole prefix from ``start_id`` each step."""
    from plmscale.objectives.causal_lm import vocab_parallel_argmax
    with evaluating(model):
        memory = model.encode(input_ids, attention_mask)

        def next_token(ids):
            return vocab_parallel_argmax(model.head(model.decode(ids, memory, attention_mask)[:, -1]))

        ids = torch.full((input_ids.shape[0], 1), start_id, dtype=torch.long, device=input_ids.device)
        return extend_until_eos(next_token, ids, max_new_tokens, eos_id)
