"""Dynamic masked-LM corruption (BERT): runs in the data workers on numpy arrays, a new mask per draw.

Masking is two steps: *select* the positions to predict (``select_tokens`` here for BERT's
independent tokens; whole words, n-grams, spans and phrases in ``plmscale.objectives.masking_strategies``)
and *corrupt* them (``corrupt``: 80% [MASK], 10% random token, 10% unchanged).
"""

from __future__ import annotations

import numpy as np


IGNORE_INDEX = -100


def select_tokens(eligible: np.ndarray, rng: np.random.Generator,
                  probability: float = 0.15) -> np.ndarray:
    """Positions of ``probability`` of the ``eligible`` tokens, drawn independently of each other.

    The count is ``probability * n_eligible`` rounded up or down at random, so the expected rate is
    exact even for short sequences.
    """
    positions = np.flatnonzero(eligible)
    expected = probability * positions.size
    count = int(expected) + int(rng.random() < expected - int(expected))
    return rng.choice(positions, size=count, replace=False) if count else positions[:0]


def corrupt(tokens: np.ndarray, chosen: np.ndarray, rng: np.random.Generator, *, mask_id: int,
            replacement_ids: np.ndarray, mask_fraction: float = 0.8,
            random_fraction: float = 0.1):
    """BERT's corruption of the ``chosen`` positions: ``mask_fraction`` become ``mask_id``,
    ``random_fraction`` a random id from ``replacement_ids``, the rest stay unchanged (each position
    decided independently). Returns (corrupted tokens, labels with -100 where not chosen)."""
    chosen = np.asarray(chosen, dtype=np.int64)
    labels = np.full(tokens.shape, IGNORE_INDEX, dtype=np.int64)
    labels[chosen] = tokens[chosen]
    corrupted = tokens.copy()
    action = rng.random(chosen.size)
    to_mask = chosen[action < mask_fraction]
    to_random = chosen[(action >= mask_fraction) & (action < mask_fraction + random_fraction)]
    corrupted[to_mask] = mask_id
    corrupted[to_random] = rng.choice(replacement_ids, size=to_random.size)
    return corrupted, labels


def mask_tokens(tokens: np.ndarray, eligible: np.ndarray, rng: np.random.Generator, *,
                mask_id: int, replacement_ids: np.ndarray, probability: float = 0.15,
                mask_fraction: float = 0.8, random_fraction: float = 0.1):
    """Select ``probability`` of the ``eligible`` positions; of those, ``mask_fraction`` become
    ``mask_id``, ``random_fraction`` a random id from ``replacement_ids``, the rest stay unchanged.

    The number selected is ``probability * n_eligible`` rounded up or down at random, so the expected
    rate is exact even for short sequences. Returns (corrupted tokens, labels with -100 where the
    position was not selected).
    """
    chosen = select_tokens(eligible, rng, probability)
    return corrupt(tokens, chosen, rng, mask_id=mask_id, replacement_ids=replacement_ids,
                   mask_fraction=mask_fraction, random_fraction=random_fraction)
