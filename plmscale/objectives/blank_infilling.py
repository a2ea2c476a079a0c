"""GLM's autoregressive blank infilling (Du et al. 2022; THUDM/GLM ``blocklm_utils.py``), on numpy in
the data workers.

A text is cut into Part A (the text with each masked span replaced by one mask token) and Part B
(the spans, shuffled; each as input ``[START] + span`` and target ``span + [END]``). Positions:
Part A counts 0, 1, ...; every Part B token takes the position of its span's mask token; block
positions are 0 in Part A and 1..len+1 inside a span. The model attends Part A bidirectionally
(blind to Part B) and Part B causally over itself with all of Part A (:func:`glm_attention_mask`).

Three objectives, chosen per batch (``objective.objective_weights``):

* ``blank`` ([MASK]): span lengths from Poisson(3) truncated to 1..39 and renormalised, drawn until
  int(15%) of the text is covered; spans placed uniformly at random, never touching;
* ``sentence`` ([sMASK]): whole sentences, in random order, until 15% of the text is covered;
* ``document`` ([gMASK]): one span, the end of the text, of 50-100% of its length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from plmscale.objectives.masking import IGNORE_INDEX

OBJECTIVES = ("blank", "sentence", "document")
MAX_SPAN = 39  # GLM: lengths 1..39 of the Poisson(lambda) distribution, renormalised
DOCUMENT_RATIO = (0.5, 1.0)  # [gMASK]: the span covers 50-100% of the text (the paper, 2.3)


def span_length_distribution(poisson_lambda: float = 3.0, max_length: int = MAX_SPAN) -> np.ndarray:
    """p(l) for l = 1..max_length (index l-1): Poisson(lambda) truncated and renormalised
    (lambda 3: mean 3.157, p(1) = 0.157)."""
    if poisson_lambda <= 0:
        raise ValueError(f"objective.poisson_lambda must be > 0, got {poisson_lambda}")
    lengths = np.arange(1, max_length + 1)
    log_pmf = lengths * math.log(poisson_lambda) - poisson_lambda - np.array(
        [math.lgamma(l + 1) for l in lengths])
    pmf = np.exp(log_pmf)
    return pmf / pmf.sum()


def blank_spans(length: int, seq_room: int, rng: np.random.Generator, ratio: float = 0.15,
                distribution: np.ndarray | None = None) -> tuple[int, list[tuple[int, int]]]:
    """(text length n, sorted non-touching [start, end) spans) for a text of ``length`` tokens that
    must fit with its spans in ``seq_room`` slots (each span costs 2 more: its mask token and its
    [START]). Lengths are drawn until they cover int(ratio * n); n = min(length, seq_room - 2k)
    shrinks as spans are added. Placement as GLM's ``sample_spans``: the gaps between spans are a
    uniformly random composition with at least one token between two spans."""
    distribution = span_length_distribution() if distribution is None else distribution
    lengths: list[int] = []
    n = min(length, seq_room)
    while sum(lengths) < int(ratio * n) or not lengths:  # at least one span to predict
        lengths.append(int(rng.choice(distribution.size, p=distribution)) + 1)
        n = min(length, seq_room - 2 * len(lengths))
    # Drop spans that cannot be placed with gaps between them (very short texts only); a single
    # span longer than the text covers all of it.
    while len(lengths) > 1 and sum(lengths) + len(lengths) - 1 > n:
        lengths.pop()
    if lengths and lengths[0] > n:
        lengths = [n] if n > 0 else []
    free = n - sum(lengths) - (len(lengths) - 1)  # tokens not in spans nor compulsory gaps
    places = np.sort(rng.integers(0, free + 1, size=len(lengths)))
    spans, offset = [], 0
    for place, span in zip(places, lengths):
        spans.append((int(offset + place), int(offset + place + span)))
        offset += span + 1
    return n, spans


def sentence_spans(sentence_bounds: list[tuple[int, int]], seq_room: int, rng: np.random.Generator,
                   ratio: float = 0.15) -> tuple[int, list[tuple[int, int]]]:
    """(text length n, sorted spans) of sentence-level masking: whole sentences in random order
    until int(ratio * n) tokens are covered; sentences at the end are dropped from the text until
    it fits ``seq_room`` with 2 slots per span."""
    bounds = list(sentence_bounds)
    while True:
        n = bounds[-1][1] if bounds else 0
        chosen, covered = [], 0
        for k in rng.permutation(len(bounds)):
            if covered >= int(ratio * n) and chosen:
                break
            chosen.append(bounds[int(k)])
            covered += bounds[int(k)][1] - bounds[int(k)][0]
        if n + 2 * len(chosen) <= seq_room or len(bounds) <= 1:
            n = min(n, seq_room - 2 * len(chosen))  # one sentence longer than the room: cut it
            return n, sorted((a, min(b, n)) for a, b in chosen if a < n)
        bounds.pop()


def document_span(length: int, seq_room: int, rng: np.random.Generator
                  ) -> tuple[int, list[tuple[int, int]]]:
    """(text length n, [the final span]) of [gMASK]: 50-100% of the text, at its end."""
    n = min(length, seq_room - 2)
    low, high = DOCUMENT_RATIO
    span = max(1, int(round(n * rng.uniform(low, high))))
    return n, [(n - span, n)]


@dataclass(frozen=True)
class BlankTokens:
    """The ids GLM's layout needs (``plmscale.data.SpecialTokens``)."""

    cls: int
    mask: int  # the objective's mask: [MASK], [sMASK] or [gMASK]
    start: int
    end: int
    pad: int


def blank_sample(text: np.ndarray, spans: list[tuple[int, int]], tokens: BlankTokens,
                 seq_length: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """GLM's layout of ``[CLS] + text`` with ``spans`` (sorted [start, end) into ``text``) masked:
    input_ids, labels (-100 outside Part B), position_ids, block_position_ids and ``part_a`` (the
    length of Part A, for the attention mask), padded to ``seq_length``."""
    part_a, positions_of_mask, previous = [tokens.cls], [], 0
    for start, end in spans:
        part_a.extend(text[previous:start])
        positions_of_mask.append(len(part_a))
        part_a.append(tokens.mask)
        previous = end
    part_a.extend(text[previous:])
    ids, labels = list(part_a), [IGNORE_INDEX] * len(part_a)
    positions, blocks = list(range(len(part_a))), [0] * len(part_a)
    for k in rng.permutation(len(spans)):
        start, end = spans[k]
        span = [int(t) for t in text[start:end]]
        ids += [tokens.start] + span
        labels += span + [tokens.end]
        positions += [positions_of_mask[k]] * (len(span) + 1)
        blocks += list(range(1, len(span) + 2))
    if len(ids) > seq_length:
        raise ValueError(f"GLM sample of {len(ids)} tokens exceeds data.seq_length={seq_length}")
    pad = seq_length - len(ids)
    return {"input_ids": np.array(ids + [tokens.pad] * pad, dtype=np.int64),
            "labels": np.array(labels + [IGNORE_INDEX] * pad, dtype=np.int64),
            "position_ids": np.array(positions + [0] * pad, dtype=np.int64),
            "block_position_ids": np.array(blocks + [0] * pad, dtype=np.int64),
            "part_a": np.int64(len(part_a))}


def glm_attention_mask(part_a: torch.Tensor, seq_length: int) -> torch.Tensor:
    """Boolean [b, 1, s, s], True = hidden: column j is visible to row i when j is in Part A
    (j < part_a) or j <= i. Part A rows see all of Part A and nothing of Part B; Part B rows see Part
    A and Part B causally; padding (after Part B) is never seen by a real row."""
    index = torch.arange(seq_length, device=part_a.device)
    visible = (index[None, None, :] < part_a.view(-1, 1, 1)) | (index[None, :] <= index[:, None])[None]
    return ~visible[:, None]
