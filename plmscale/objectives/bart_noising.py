"""BART's noising functions (Lewis et al. 2020, section 2.2), on numpy token arrays, driven by a
``numpy.random.Generator`` so that a sample stays a pure function of (seed, index).

All five are composable; ``noise`` applies the ones the ``ObjectiveConfig`` switches on, in the order
sentence permutation -> text infilling -> token masking -> token deletion -> document rotation (the
order fairseq's denoising dataset uses: permutation first so that infilling spans can cross the new
sentence boundaries, rotation last so that the model must also find the document start).

Counts that are a ratio of a length are rounded up or down at random (``_stochastic_round``), so the
expected rate is exact even on short sequences.
"""

from __future__ import annotations

import numpy as np

from plmscale.config.schema import ObjectiveConfig


def _stochastic_round(value: float, rng: np.random.Generator) -> int:
    whole = int(np.floor(value))
    return whole + int(rng.random() < value - whole)


# -- token-level noise ------------------------------------------------------------------------
def token_masking(tokens: np.ndarray, ratio: float, rng: np.random.Generator, mask_id: int
                  ) -> np.ndarray:
    """Replace ``ratio`` of the tokens (sampled without replacement) by ``mask_id``. Tokens that
    already are ``mask_id`` (from infilling) are not counted and not chosen."""
    eligible = np.flatnonzero(tokens != mask_id)
    count = _stochastic_round(ratio * eligible.size, rng)
    out = tokens.copy()
    out[rng.choice(eligible, size=count, replace=False)] = mask_id
    return out


def token_deletion(tokens: np.ndarray, ratio: float, rng: np.random.Generator,
                   mask_id: int | None = None) -> np.ndarray:
    """Delete ``ratio`` of the tokens (sampled without replacement); the model must find where.
    ``mask_id`` tokens, when given, are never deleted (they mark infilled spans)."""
    eligible = np.flatnonzero(tokens != mask_id) if mask_id is not None else np.arange(tokens.size)
    count = _stochastic_round(ratio * eligible.size, rng)
    keep = np.ones(tokens.size, dtype=bool)
    keep[rng.choice(eligible, size=count, replace=False)] = False
    return tokens[keep]


# -- text infilling ---------------------------------------------------------------------------
def text_infilling(tokens: np.ndarray, ratio: float, poisson_lambda: float,
                   rng: np.random.Generator, mask_id: int, word_starts: np.ndarray | None = None,
                   return_spans: bool = False):
    """Replace spans by ONE ``mask_id`` each; span lengths ~ Poisson(``poisson_lambda``); a
    zero-length span inserts a ``mask_id``.

    Spans are counted in units: words when ``word_starts`` (0/1 per token) is given (as fairseq's
    whole-word spans), else tokens. The number of spans is ``ratio * units / lambda`` (rounded at
    random), so the expected number of noised units is ``ratio * units``; the lengths are drawn i.i.d.
    (never trimmed to a budget, which would bias the distribution). Spans do not overlap: the
    ``k`` spans and the ``units - sum(lengths)`` untouched units are put in a uniformly random order.
    If the lengths add up to more than the sequence (only possible for very short input), spans are
    dropped from the end of the draw until they fit.

    Returns the noised tokens; with ``return_spans`` also an int array [k, 2] of each span's
    [start, end) token offsets in ``tokens`` (end == start for an insertion), in order of position.
    """
    if poisson_lambda <= 0:
        raise ValueError(f"objective.poisson_lambda={poisson_lambda} must be > 0")
    if word_starts is None:
        unit_starts = np.arange(tokens.size)
    else:
        unit_starts = np.flatnonzero(word_starts)
        if tokens.size and (unit_starts.size == 0 or unit_starts[0] != 0):
            unit_starts = np.concatenate([[0], unit_starts])  # a chunk may begin inside a word
    units = unit_starts.size
    count = _stochastic_round(ratio * units / poisson_lambda, rng)
    lengths = rng.poisson(poisson_lambda, size=count)
    while lengths.sum() > units:
        lengths = lengths[:-1]
    count = lengths.size

    # Random order of k span blocks among the untouched units: choose which of the
    # (untouched + k) slots are blocks; slot i then starts at the unit after all earlier slots.
    untouched = units - int(lengths.sum())
    is_block = np.zeros(untouched + count, dtype=bool)
    is_block[rng.choice(untouched + count, size=count, replace=False)] = True
    slot_units = np.ones(is_block.size, dtype=np.int64)
    slot_units[is_block] = lengths
    first_unit = np.cumsum(slot_units) - slot_units
    span_first = first_unit[is_block]                 # unit where each span begins
    span_last = span_first + lengths                  # one past its last unit

    bounds = np.concatenate([unit_starts, [tokens.size]])
    span_tokens = np.stack([bounds[span_first], bounds[span_last]], axis=1).astype(np.int64)
    removed = np.zeros(tokens.size + 1, dtype=np.int64)
    np.add.at(removed, span_tokens[:, 0], 1)
    np.add.at(removed, span_tokens[:, 1], -1)
    keep = np.cumsum(removed)[:-1] == 0
    kept = tokens[keep]
    # Each span's [MASK] goes where its first token was: after the kept tokens before it.
    kept_before = np.concatenate([[0], np.cumsum(keep)])[span_tokens[:, 0]]
    noised = np.insert(kept, kept_before, mask_id).astype(tokens.dtype)
    return (noised, span_tokens) if return_spans else noised


# -- reordering -------------------------------------------------------------------------------
def sentence_permutation_order(length: int, sentence_starts: np.ndarray,
                               rng: np.random.Generator) -> np.ndarray:
    """Token gather index that shuffles the sentences (``sentence_starts``: offsets of sentence
    beginnings; 0 is added if missing) into a random order."""
    starts = np.unique(np.concatenate([[0], np.asarray(sentence_starts, dtype=np.int64)]))
    starts = starts[starts < length] if length else starts[:0]
    ends = np.concatenate([starts[1:], [length]])
    order = rng.permutation(starts.size)
    pieces = [np.arange(starts[i], ends[i]) for i in order]
    return np.concatenate(pieces).astype(np.int64) if pieces else np.zeros(0, dtype=np.int64)


def sentence_permutation(tokens: np.ndarray, sentence_starts: np.ndarray,
                         rng: np.random.Generator) -> np.ndarray:
    """The sentences of ``tokens`` in a random order."""
    return tokens[sentence_permutation_order(tokens.size, sentence_starts, rng)]


def document_rotation(tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate so that the document starts at a token chosen uniformly among all but the current
    first one (always a real rotation when there are >= 2 tokens)."""
    if tokens.size < 2:
        return tokens.copy()
    return np.roll(tokens, -int(rng.integers(1, tokens.size)))


# -- composition ------------------------------------------------------------------------------
def noise(tokens: np.ndarray, sentence_starts: np.ndarray, word_starts: np.ndarray | None,
          objective: ObjectiveConfig, rng: np.random.Generator, mask_id: int) -> np.ndarray:
    """Apply the noising functions that ``objective`` switches on (default: text infilling of 30%
    of the words + sentence permutation, the paper's best)."""
    o = objective
    if o.permute_sentences:
        order = sentence_permutation_order(tokens.size, sentence_starts, rng)
        tokens = tokens[order]
        word_starts = word_starts[order] if word_starts is not None else None
    if o.infilling_ratio > 0:
        tokens = text_infilling(tokens, o.infilling_ratio, o.poisson_lambda, rng, mask_id,
                                word_starts)
    if o.token_masking_ratio > 0:
        tokens = token_masking(tokens, o.token_masking_ratio, rng, mask_id)
    if o.token_deletion_ratio > 0:
        tokens = token_deletion(tokens, o.token_deletion_ratio, rng, mask_id)
    if o.rotate_document:
        tokens = document_rotation(tokens, rng)
    return tokens
