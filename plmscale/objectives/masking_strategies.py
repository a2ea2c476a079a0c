"""Which positions an MLM predicts: BERT tokens, whole words (BERT-wwm), n-grams of words (ALBERT),
contiguous word spans (SpanBERT) and gazetteer phrases / entities (ERNIE 1.0).

Every strategy is tokenizer-agnostic: it only reads, per token, the ``word_starts`` flag that
``data_prep encode`` stored (1 where a token begins a word: whitespace/punctuation rules for English,
jieba words for Chinese) and a span label (``span_labels``: the index of the gazetteer span a token
belongs to, -1 outside spans; see :func:`label_spans`) of the kind the strategy masks. The budget is
``probability`` of the eligible (non-special) tokens, counted in *tokens*; a unit (word, n-gram, span,
phrase) is never split, so the per-sequence count varies around the budget, and each strategy is
built to hit it in expectation:

* units taken in random order until the next one would overshoot; that last unit is then taken with
  probability ``remaining / its length`` (whole words, phrase filling) - the expected total is exactly
  the budget;
* n-grams and spans draw their lengths i.i.d. from the target distribution and fix the *number* of
  units in advance (``probability * words / E[length]``, rounded at random), so the length
  distribution is not distorted by the budget (stopping on a running token count would favour
  short or long units at the end: the inspection paradox).

The selected positions are then corrupted 80/10/10 by :func:`plmscale.objectives.masking.corrupt`.

"phrase" and "entity" select the same way but from different spans: "phrase" from the
``phrase_spans`` column (``data_prep encode --phrase-gazetteer``), "entity" from the ``entity_spans``
column (``--entity-gazetteer``), so ERNIE 1.0's phrase and entity stages mask different units of one
corpus. The two kinds may overlap (an entity inside a phrase); each strategy sees only its own kind.
The sample builder hands the right labels over (``plmscale.families.bert.samples.Segment.span_labels``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plmscale.objectives.masking import corrupt, select_tokens

STRATEGIES = ("token", "whole_word", "ngram", "span", "phrase", "entity")


def check_strategy(name: str) -> str:
    """``name`` if it is a known masking strategy, else a ValueError listing the known ones."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown masking strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return name


@dataclass(frozen=True)
class Selection:
    """The outcome of a strategy: sorted positions plus the units they were chosen as."""

    positions: np.ndarray
    """int64, sorted: the token positions to predict."""
    units: np.ndarray
    """int64 [k, 2]: [start, end) token ranges of the chosen units (words, n-grams, spans, phrases)."""
    unit_words: np.ndarray
    """int64 [k]: length of each unit in words (1 per token for "token")."""


@dataclass(frozen=True)
class Words:
    """Words of a sequence: [start, end) token ranges over eligible tokens only, plus the index of
    the eligible run (segment between special tokens) each word lies in."""

    starts: np.ndarray
    ends: np.ndarray
    runs: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)


def words(eligible: np.ndarray, word_starts: np.ndarray) -> Words:
    """Split the eligible tokens into words: a word is a token flagged as a word start followed by the
    non-start tokens after it. A word never crosses a special token, and the first eligible token of
    a run starts a word even when its flag is 0 (a segment truncated mid-word keeps the word's tail
    as a word of its own)."""
    eligible = np.asarray(eligible, dtype=bool)
    n = eligible.size
    previous = np.zeros(n, dtype=bool)
    previous[1:] = eligible[:-1]
    start = eligible & (np.asarray(word_starts, dtype=bool) | ~previous)
    starts = np.flatnonzero(start)
    boundaries = np.append(np.flatnonzero(start | ~eligible), n)
    ends = boundaries[np.searchsorted(boundaries, starts, side="right")]
    runs = np.cumsum(~eligible)[starts] if n else starts
    return Words(starts.astype(np.int64), ends.astype(np.int64), runs.astype(np.int64))


def label_spans(length: int, spans: np.ndarray, offset: int = 0) -> np.ndarray:
    """Per-token span labels for ``length`` tokens from [start, end) spans (document offsets): span
    ``k`` labels its tokens ``offset + k``, others are -1. Labels travel with the tokens through
    truncation and packing, where [start, end) pairs would need re-basing."""
    labels = np.full(length, -1, dtype=np.int64)
    for k, (a, b) in enumerate(np.asarray(spans, dtype=np.int64).reshape(-1, 2)):
        labels[max(a, 0):min(b, length)] = offset + k
    return labels


# -- length distributions ----------------------------------------------------------------------
def ngram_length_distribution(max_ngram: int) -> np.ndarray:
    """ALBERT: p(n) proportional to 1/n for n = 1..max_ngram (index n-1)."""
    if max_ngram < 1:
        raise ValueError(f"max_ngram must be >= 1, got {max_ngram}")
    weights = 1.0 / np.arange(1, max_ngram + 1)
    return weights / weights.sum()


def span_length_distribution(p: float, max_length: int) -> np.ndarray:
    """SpanBERT: Geometric(p) on 1, 2, ... clipped at ``max_length`` - truncated to 1..max_length and
    renormalised, as SpanBERT's code does (mean 3.8 words for p=0.2, max 10). Index l-1 holds p(l)."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"span_geometric_p must be in (0, 1], got {p}")
    if max_length < 1:
        raise ValueError(f"span_max_length must be >= 1, got {max_length}")
    lengths = np.arange(1, max_length + 1)
    weights = p * (1.0 - p) ** (lengths - 1)
    return weights / weights.sum()


# -- strategies --------------------------------------------------------------------------------
def _token_selection(eligible, rng, probability) -> Selection:
    positions = np.sort(select_tokens(eligible, rng, probability)).astype(np.int64)
    return Selection(positions, np.stack([positions, positions + 1], axis=1),
                     np.ones(positions.size, dtype=np.int64))


def _fill(lengths: np.ndarray, order: np.ndarray, room: float, rng) -> np.ndarray:
    """Indices (from ``order``) of the units taken until ``room`` tokens are used: every unit that
    fits, then the unit that would overshoot with probability ``remaining / its length`` (so the
    expected total equals ``room`` exactly)."""
    if order.size == 0 or room <= 0:
        return order[:0]
    total = np.cumsum(lengths[order])
    fits = int(np.searchsorted(total, room, side="right"))
    if fits < order.size:
        used = float(total[fits - 1]) if fits else 0.0
        if rng.random() * lengths[order[fits]] < room - used:
            fits += 1
    return order[:fits]


def _span_units(eligible: np.ndarray, labels: np.ndarray, w: Words) -> tuple[np.ndarray, np.ndarray]:
    """[start, end) ranges of the span runs (contiguous equal labels >= 0 on eligible tokens),
    widened to whole words, overlapping ones merged."""
    n = eligible.size
    labelled = eligible & (labels >= 0)
    if not labelled.any() or len(w) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    change = np.ones(n, dtype=bool)
    change[1:] = (labels[1:] != labels[:-1]) | (labelled[1:] != labelled[:-1])
    starts = np.flatnonzero(change & labelled)
    stops = np.append(np.flatnonzero(change), n)
    ends = stops[np.searchsorted(stops, starts, side="right")]
    # Widen to the words the span touches: a phrase never cuts a word.
    first = np.searchsorted(w.starts, starts, side="right") - 1
    last = np.searchsorted(w.starts, ends - 1, side="right") - 1
    a, b = w.starts[first], w.ends[last]
    merged_a, merged_b = [int(a[0])], [int(b[0])]
    for s, e in zip(a[1:], b[1:]):
        if s < merged_b[-1]:
            merged_b[-1] = max(merged_b[-1], int(e))
        else:
            merged_a.append(int(s))
            merged_b.append(int(e))
    return np.asarray(merged_a, dtype=np.int64), np.asarray(merged_b, dtype=np.int64)


def _words_of(units_a, units_b, w: Words) -> np.ndarray:
    return (np.searchsorted(w.starts, units_b, side="left")
            - np.searchsorted(w.starts, units_a, side="left")).astype(np.int64)


def _phrase_selection(eligible, word_flags, labels, rng, probability) -> Selection:
    """ERNIE 1.0 phrase / entity masking: the spans of ``labels`` (phrases or entities, whichever
    the strategy masks) first, as whole units in random order (a span that no longer fits is
    skipped), then whole words outside every span fill the budget."""
    w = words(eligible, word_flags)
    room = probability * float(eligible.sum())
    if labels is None:
        labels = np.full(eligible.size, -1, dtype=np.int64)
    span_a, span_b = _span_units(eligible, np.asarray(labels), w)
    chosen_a, chosen_b, total = [], [], 0.0
    for k in rng.permutation(span_a.size):
        size = span_b[k] - span_a[k]
        if total + size <= room:
            chosen_a.append(span_a[k])
            chosen_b.append(span_b[k])
            total += size
    # Words inside any span (chosen or not) are not units of their own: a span is masked whole or
    # not at all.
    inside = np.zeros(eligible.size + 1, dtype=np.int64)
    np.add.at(inside, span_a, 1)
    np.add.at(inside, span_b, -1)
    in_span = np.cumsum(inside)[:-1] > 0
    free = np.flatnonzero(~in_span[w.starts]) if len(w) else np.zeros(0, dtype=np.int64)
    lengths = w.ends - w.starts
    taken = _fill(lengths, rng.permutation(free), room - total, rng)
    units_a = np.concatenate([np.asarray(chosen_a, dtype=np.int64), w.starts[taken]])
    units_b = np.concatenate([np.asarray(chosen_b, dtype=np.int64), w.ends[taken]])
    return _assemble(units_a, units_b, _words_of(units_a, units_b, w))


def _whole_word_selection(eligible, word_flags, rng, probability) -> Selection:
    w = words(eligible, word_flags)
    lengths = w.ends - w.starts
    taken = _fill(lengths, rng.permutation(len(w)), probability * float(eligible.sum()), rng)
    return _assemble(w.starts[taken], w.ends[taken], np.ones(taken.size, dtype=np.int64))


def _word_span_selection(eligible, word_flags, rng, probability, distribution) -> Selection:
    """Contiguous runs of whole words with lengths (in words) drawn from ``distribution``; the number
    of runs is fixed up front so that the expected token count is the budget (see module doc)."""
    w = words(eligible, word_flags)
    n_words = len(w)
    empty = np.zeros(0, dtype=np.int64)
    if n_words == 0:
        return _assemble(empty, empty, empty)
    mean_length = float(np.dot(np.arange(1, distribution.size + 1), distribution))
    # A span of L words starting at a random word holds L * (tokens per word) tokens on average.
    expected_spans = probability * n_words / mean_length
    count = int(expected_spans) + int(rng.random() < expected_spans - int(expected_spans))
    lengths = rng.choice(np.arange(1, distribution.size + 1), size=count, p=distribution)
    chosen = np.zeros(n_words, dtype=bool)
    run_start = np.ones(n_words, dtype=bool)
    run_start[1:] = w.runs[1:] != w.runs[:-1]
    units_a, units_b, units_words = [], [], []
    for length in lengths:
        # Free stretch ending at each word: consecutive unchosen words of one run.
        stretch = _free_stretch(chosen, run_start)
        longest = int(stretch.max()) if n_words else 0
        if longest == 0:
            break
        # Rare (short sequences, crowded runs): the drawn span cannot fit anywhere; use the longest
        # free stretch rather than dropping the budget.
        length = min(int(length), longest)
        ends = np.flatnonzero(stretch >= length)  # last word of each valid placement
        last = int(ends[rng.integers(ends.size)])
        first = last - length + 1
        chosen[first:last + 1] = True
        units_a.append(w.starts[first])
        units_b.append(w.ends[last])
        units_words.append(length)
    return _assemble(np.asarray(units_a, dtype=np.int64), np.asarray(units_b, dtype=np.int64),
                     np.asarray(units_words, dtype=np.int64))


def _free_stretch(chosen: np.ndarray, run_start: np.ndarray) -> np.ndarray:
    """For each word, how many consecutive free words of its run end at it (0 if chosen)."""
    idx = np.arange(chosen.size)
    # The count restarts after a chosen word, and before the first word of a run.
    barrier = np.where(chosen, idx, np.where(run_start, idx - 1, -1))
    return np.where(chosen, 0, idx - np.maximum.accumulate(barrier))


def _assemble(units_a, units_b, units_words) -> Selection:
    order = np.argsort(units_a, kind="stable")
    units = np.stack([units_a[order], units_b[order]], axis=1).astype(np.int64).reshape(-1, 2)
    if units.size:
        positions = np.concatenate([np.arange(a, b) for a, b in units]).astype(np.int64)
    else:
        positions = np.zeros(0, dtype=np.int64)
    return Selection(positions, units, np.asarray(units_words, dtype=np.int64)[order])


def select_positions(strategy: str, eligible: np.ndarray, rng: np.random.Generator, *,
                     word_starts: np.ndarray | None = None, span_labels: np.ndarray | None = None,
                     probability: float = 0.15, max_ngram: int = 3, span_geometric_p: float = 0.2,
                     span_max_length: int = 10) -> Selection:
    """Choose the positions to predict with ``strategy`` (one of :data:`STRATEGIES`).

    ``eligible``: bool per token (False on special tokens and padding: never selected, never part of
    a word). ``word_starts``: per-token word-start flags (required by all but "token").
    ``span_labels``: per-token gazetteer span labels, -1 outside spans: the phrase spans for
    "phrase", the entity spans for "entity" (without them those strategies are whole-word masking;
    other strategies ignore them).
    """
    check_strategy(strategy)
    eligible = np.asarray(eligible, dtype=bool)
    if strategy == "token":
        return _token_selection(eligible, rng, probability)
    if word_starts is None:
        raise ValueError(f"masking strategy {strategy!r} needs the word_starts flags of the tokens")
    word_starts = np.asarray(word_starts)
    if word_starts.shape != eligible.shape:
        raise ValueError(f"word_starts has shape {word_starts.shape}, tokens {eligible.shape}")
    if strategy == "whole_word":
        return _whole_word_selection(eligible, word_starts, rng, probability)
    if strategy == "ngram":
        return _word_span_selection(eligible, word_starts, rng, probability,
                                    ngram_length_distribution(max_ngram))
    if strategy == "span":
        return _word_span_selection(eligible, word_starts, rng, probability,
                                    span_length_distribution(span_geometric_p, span_max_length))
    return _phrase_selection(eligible, word_starts, span_labels, rng, probability)


def select_for(objective, strategy: str, eligible: np.ndarray, rng: np.random.Generator,
               word_starts: np.ndarray | None = None,
               span_labels: np.ndarray | None = None) -> Selection:
    """:func:`select_positions` with the parameters of an ``ObjectiveConfig``."""
    return select_positions(strategy, eligible, rng, word_starts=word_starts,
                            span_labels=span_labels, probability=objective.mlm_probability,
                            max_ngram=objective.max_ngram,
                            span_geometric_p=objective.span_geometric_p,
                            span_max_length=objective.span_max_length)


def span_boundary_targets(length: int, selection: Selection) -> dict[str, np.ndarray]:
    """SpanBERT's span-boundary inputs for one sequence of ``length`` tokens: for every token of a
    chosen unit, the positions of the token just left of the unit and just right of it, and the
    token's offset inside the unit; -1 elsewhere. The boundaries exist because units never contain
    [CLS] / [SEP]."""
    left = np.full(length, -1, dtype=np.int64)
    right = np.full(length, -1, dtype=np.int64)
    offset = np.full(length, -1, dtype=np.int64)
    for a, b in selection.units:
        left[a:b] = a - 1
        right[a:b] = b
        offset[a:b] = np.arange(b - a)
    return {"sbo_left": left, "sbo_right": right, "sbo_position": offset}


def mixed_ngram_selection(eligible: np.ndarray, rng: np.random.Generator, probability: float = 0.15,
                          ngram_probability: float = 0.2, max_ngram: int = 3) -> Selection:
    """UniLM's masking units: single tokens, or with ``ngram_probability`` an n-gram of 2..max_ngram
    tokens (n uniform), never crossing a special token; ``probability`` of the eligible tokens in
    expectation (the number of units is fixed up front as for ALBERT's n-grams)."""
    if not 0.0 <= ngram_probability <= 1.0:
        raise ValueError(f"objective.ngram_probability must be in [0, 1], got {ngram_probability}")
    if max_ngram < 2 and ngram_probability > 0:
        raise ValueError(f"objective.max_ngram={max_ngram}: n-grams need max_ngram >= 2 (or set "
                         "objective.ngram_probability=0)")
    longer = max(max_ngram - 1, 1)
    distribution = np.array([1.0 - ngram_probability] + [ngram_probability / longer] * longer)
    eligible = np.asarray(eligible, dtype=bool)
    every_token_a_word = np.ones(eligible.shape, dtype=bool)
    return _word_span_selection(eligible, every_token_a_word, rng, probability,
                                distribution[:max(max_ngram, 1)])


def mask_with_strategy(ids: np.ndarray, eligible: np.ndarray, rng: np.random.Generator, tokens,
                       objective, strategy: str = "token", word_starts: np.ndarray | None = None,
                       span_labels: np.ndarray | None = None):
    """Dynamic MLM corruption of one sequence: select the ``eligible`` positions with ``strategy``
    ("token": BERT's independent tokens, drawn exactly as ``masking.mask_tokens``; "whole_word",
    "ngram", "span", ...: :func:`select_for` on ``word_starts`` / ``span_labels``) and corrupt them with
    ``objective``'s 80/10/10 fractions. Returns (corrupted ids, labels with -100 where not selected,
    the Selection or None for "token")."""
    o, selection = objective, None
    if strategy == "token":
        positions = select_tokens(eligible, rng, o.mlm_probability)
    else:
        selection = select_for(o, strategy, eligible, rng, word_starts, span_labels)
        positions = selection.positions
    corrupted, labels = corrupt(ids, positions, rng, mask_id=tokens.mask,
                                replacement_ids=tokens.normal_ids,
                                mask_fraction=o.mask_token_fraction,
                                random_fraction=o.random_token_fraction)
    return corrupted, labels, selection
