"""Dynamic masked-LM corruption (BERT): runs in the data workers on numpy arrays, a new mask per draw."""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = -100


def mask_tokens(tokens: np.ndarray, eligible: np.ndarray, rng: np.random.Generator, *,
                mask_id: int, replacement_ids: np.ndarray, probability: float = 0.15,
                mask_fraction: float = 0.8, random_fraction: float = 0.1):
    """Select ``probability`` of the ``eligible`` positions; of those, ``mask_fraction`` become
    ``mask_id``, ``random_fraction`` a random id from ``replacement_ids``, the rest stay unchanged.

    The number selected is ``probability * n_eligible`` rounded up or down at random, so the expected
    rate is exact even for short sequences. Returns (corrupted tokens, labels with -100 where the
    position was not selected).
    """
    positions = np.flatnonzero(eligible)
    expected = probability * positions.size
    count = int(expected) + int(rng.random() < expected - int(expected))
    chosen = rng.choice(positions, size=count, replace=False) if count else positions[:0]
    labels = np.full(tokens.shape, IGNORE_INDEX, dtype=np.int64)
    labels[chosen] = tokens[chosen]
    corrupted = tokens.copy()
    action = rng.random(count)
    to_mask = chosen[action < mask_fraction]
    to_random = chosen[(action >= mask_fraction) & (action < mask_fraction + random_fraction)]
    corrupted[to_mask] = mask_id
    corrupted[to_random] = rng.choice(replacement_ids, size=to_random.size)
    return corrupted, labels
