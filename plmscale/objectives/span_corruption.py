"""T5 span corruption (Raffel et al. 2020, section 3.1.4 and 3.3.4).

A fraction ``noise_density`` of a raw token sequence is split into spans of mean length
``mean_noise_span_length``; the encoder input keeps the other tokens and replaces each span by one
sentinel ``<extra_id_i>`` (i = 0, 1, ... in order), the target lists ``<extra_id_i>`` followed by the
span's tokens for every span. Both end with EOS.

The counts are deterministic functions of the raw length (only the span positions are random), so the
raw length can be chosen such that inputs and targets exactly fill fixed lengths: ``raw_length``
inverts ``corrupted_lengths`` (what T5's ``random_spans_helper`` does).
"""

from __future__ import annotations

import numpy as np


def noise_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(noise tokens, noise spans) for a raw sequence of ``length`` tokens."""
    num_noise = int(round(length * noise_density))
    num_noise = min(max(num_noise, 1), length - 1)
    num_spans = max(int(round(num_noise / mean_noise_span_length)), 1)
    # Each noise span needs a non-noise span before it (the sequence starts with non-noise).
    num_spans = min(num_spans, num_noise, length - num_noise)
    return num_noise, num_spans


def corrupted_lengths(length: int, noise_density: float, mean_noise_span_length: float
                      ) -> tuple[int, int]:
    """(encoder input length, target length), EOS included, after corrupting ``length`` raw tokens."""
    num_noise, num_spans = noise_counts(length, noise_density, mean_noise_span_length)
    return length - num_noise + num_spans + 1, num_noise + num_spans + 1


def raw_length(inputs_length: int, noise_density: float, mean_noise_span_length: float,
               targets_length: int | None = None) -> int:
    """The largest raw length whose corrupted input fits ``inputs_length`` (and target fits
    ``targets_length`` when given).

    Adding one raw token grows the corrupted input by 0 or 1 token, so without a target limit the input
    fills ``inputs_length`` exactly.
    """
    if inputs_length < 3:
        raise ValueError(f"inputs length {inputs_length} is too short for span corruption (need >= 3)")

    def fits(n: int) -> bool:
        i, t = corrupted_lengths(n, noise_density, mean_noise_span_length)
        return i <= inputs_length and (targets_length is None or t <= targets_length)

    if not fits(2):
        raise ValueError(f"targets length {targets_length} is too short for span corruption "
                         f"(need >= {corrupted_lengths(2, noise_density, mean_noise_span_length)[1]})")
    n = 2
    while fits(n + 1):
        n += 1
    return n


def _random_segmentation(num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """``num_segments`` positive lengths summing to ``num_items``, uniform over all such compositions."""
    cuts = np.sort(rng.choice(num_items - 1, num_segments - 1, replace=False) + 1)
    return np.diff(np.concatenate([[0], cuts, [num_items]]))


def random_spans_noise_mask(length: int, noise_density: float, mean_noise_span_length: float,
                            rng: np.random.Generator) -> np.ndarray:
    """Boolean [length], True = noise: non-noise and noise spans alternate, starting with non-noise."""
    num_noise, num_spans = noise_counts(length, noise_density, mean_noise_span_length)
    noise = _random_segmentation(num_noise, num_spans, rng)
    keep = _random_segmentation(length - num_noise, num_spans, rng)
    lengths = np.stack([keep, noise], axis=1).reshape(-1)
    is_noise = np.tile([False, True], num_spans)
    return np.repeat(is_noise, lengths)


def span_corrupt(tokens: np.ndarray, noise_mask: np.ndarray, sentinel_ids: np.ndarray, eos: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets): each noise span -> its sentinel in the inputs; sentinel + span in the targets.

    ``sentinel_ids[i]`` is the id of ``<extra_id_i>``; both outputs end with ``eos``.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    starts = noise_mask & ~np.concatenate([[False], noise_mask[:-1]])  # first token of each span
    if starts.sum() > len(sentinel_ids):
        raise ValueError(f"{int(starts.sum())} noise spans but only {len(sentinel_ids)} sentinels")
    span_index = np.cumsum(starts) - 1
    sentinels = np.asarray(sentinel_ids, dtype=np.int64)[np.maximum(span_index, 0)]
    # Inputs: non-noise tokens, and the sentinel in place of each span's first token.
    inputs = np.where(starts, sentinels, tokens)[~noise_mask | starts]
    # Targets: the sentinel before each span's first token, then the span itself.
    targets = np.stack([sentinels, tokens], axis=1)[noise_mask]
    targets = targets[np.stack([starts, np.ones_like(starts)], axis=1)[noise_mask]]
    return np.append(inputs, eos), np.append(targets, eos)


def reconstruct(inputs: np.ndarray, targets: np.ndarray, sentinel_ids: np.ndarray, eos: int
                ) -> np.ndarray:
    """Undo ``span_corrupt``: put each span of ``targets`` back in place of its sentinel in ``inputs``."""
    sentinel_set = {int(i) for i in sentinel_ids}
    inputs = np.asarray(inputs)[:-1] if len(inputs) and inputs[-1] == eos else np.asarray(inputs)
    targets = np.asarray(targets)[:-1] if len(targets) and targets[-1] == eos else np.asarray(targets)
    spans: dict[int, list[int]] = {}
    current = None
    for token in targets.tolist():
        if token in sentinel_set:
            current = int(token)
            spans[current] = []
        elif current is not None:
            spans[current].append(token)
    out: list[int] = []
    for token in inputs.tolist():
        out.extend(spans[token] if token in spans else [token])
    return np.asarray(out, dtype=np.int64)
