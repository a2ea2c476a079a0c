"""XLNet's permutation language modelling, sample side (Yang et al. 2019, section 2.3; the original
code's ``data_utils._sample_mask`` and ``_local_perm``).

Partial prediction: about 1/K of the tokens are predicted (K = ``mask_alpha`` = 6; the paper's 85 of
512). They come in spans: n ~ p(n) proportional to 1/n over 1..``max_span``, each inside a context
of K*n tokens (a random left part, the span from the next word start, the rest of the context to
its right); the remaining budget is filled with single random tokens. As in the original code (whose
end-of-span loop tests the span's first piece, so every step counts), a span is n tokens long.

The factorisation order: a random permutation, in which every non-predicted token takes rank -1 (it
comes first: everybody sees it, and it sees no predicted token) and the predicted tokens keep their
permuted ranks among themselves. ``perm_mask[i, j]`` (True: i may not see j, HF's convention) then
hides from i every predicted or functional token j with rank >= i's own rank (a predicted i never
sees itself; a functional token sees itself). The input keeps the original tokens: the query stream
(``mask_emb`` at the predicted positions) is what keeps a prediction from reading its own token.
"""

from __future__ import annotations

import numpy as np


def span_lengths_distribution(max_span: int) -> np.ndarray:
    """p(n) for n = 1..max_span, proportional to 1/n."""
    weights = 1.0 / np.arange(1, max_span + 1)
    return weights / weights.sum()


def sample_spans(length: int, word_starts: np.ndarray, goal: int, rng: np.random.Generator,
                 mask_alpha: int = 6, max_span: int = 5) -> list[tuple[int, int]]:
    """The original code's span loop: [begin, end) spans of n tokens (p(n) ~ 1/n, n capped by what
    is left of ``goal``), each beginning on a word start inside a context of ``mask_alpha * n``
    tokens; spans never touch (at least one context token lies between two)."""
    probs = span_lengths_distribution(max_span)
    spans, predicted, cursor = [], 0, 0
    while cursor < length and predicted < goal:
        n = min(int(rng.choice(max_span, p=probs)) + 1, goal - predicted)
        context = n * mask_alpha
        left = int(rng.integers(context))
        begin = cursor + left
        while begin < length and not word_starts[begin]:
            begin += 1
        end = begin + n
        if end >= length:
            break
        spans.append((begin, end))
        predicted += n
        cursor = end + context - left
    return spans


def sample_prediction_mask(length: int, word_starts: np.ndarray, goal: int,
                           rng: np.random.Generator, mask_alpha: int = 6,
                           max_span: int = 5) -> np.ndarray:
    """[length] bool: exactly ``min(goal, length)`` predicted positions of a token sequence
    (``sample_spans`` first, then single random tokens to reach the goal, as the original)."""
    mask = np.zeros(length, dtype=bool)
    goal = min(goal, length)
    for begin, end in sample_spans(length, word_starts, goal, rng, mask_alpha, max_span):
        mask[begin:end] = True
    missing = goal - int(mask.sum())
    if missing > 0:
        mask[rng.choice(np.flatnonzero(~mask), missing, replace=False)] = True
    return mask


def permutation_mask(predicted: np.ndarray, functional: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """[L, L] bool perm_mask (True: i may not see j) of one random factorisation order in which
    the ``predicted`` positions come last; ``functional`` ([SEP], [CLS]) keep their random ranks
    and are never predicted."""
    length = len(predicted)
    targets = predicted & ~functional
    ordered = ~targets & ~functional  # the context: rank -1
    rank = np.where(ordered, -1, rng.permutation(length))
    own = np.where(targets, rank, rank + 1)  # a target may not see itself
    return (own[:, None] <= rank[None, :]) & ~ordered[None, :]
