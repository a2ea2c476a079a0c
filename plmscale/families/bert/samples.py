"""BERT pretraining samples: sentence-pair (NSP) construction + dynamic MLM masking.

Sample ``i`` is a pure function of (seed, i): the same global index gives the same sample on any
number of ranks and after a resume, and every draw of a new index gets a fresh mask (dynamic masking).

The positions to predict come from ``objective.masking`` (or, over training, from
``objective.masking_schedule``): BERT tokens, whole words, n-grams, SpanBERT spans or ERNIE phrases /
entities (``plmscale.objectives.masking_strategies``), all driven by the word-start flags and the
phrase and entity gazetteer spans that ``data_prep encode`` stored; segments carry those annotations
through sentence packing and truncation (:class:`Segment`). "phrase" masking reads the phrase spans,
"entity" masking the entity spans, so ERNIE 1.0's stages mask different units of one corpus.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional

import numpy as np

from plmscale.config.schema import DataConfig, ObjectiveConfig
from plmscale.data.corpus import Corpus
from plmscale.data.tokenizer import SpecialTokens
from plmscale.objectives.masking import IGNORE_INDEX
from plmscale.objectives.masking_strategies import (Selection, check_strategy, mask_with_strategy,
                                                    span_boundary_targets)
from plmscale.objectives.schedule import masking_schedule, sample_step


@dataclass(frozen=True)
class Segment:
    """Token ids with their word-start flags and the labels of the phrase and entity gazetteer
    spans they lie in (-1 outside spans; a token can be in a phrase and an entity), kept aligned
    through slicing and joining. ``np.asarray(segment)`` gives the ids, so code written for plain id
    arrays keeps working (it then only loses the annotations)."""

    ids: np.ndarray
    word_starts: np.ndarray
    phrase_labels: np.ndarray
    entity_labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key: slice) -> "Segment":
        if not isinstance(key, slice):
            raise TypeError("a Segment is sliced, not indexed (use .ids for single tokens)")
        return Segment(*(getattr(self, f.name)[key] for f in fields(Segment)))

    def __array__(self, dtype=None, copy=None):
        return self.ids if dtype is None else self.ids.astype(dtype)

    def span_labels(self, strategy: str) -> Optional[np.ndarray]:
        """The span labels masking ``strategy`` selects from: phrase labels for "phrase", entity
        labels for "entity", None for the strategies that use no spans."""
        return {"phrase": self.phrase_labels, "entity": self.entity_labels}.get(strategy)

    @staticmethod
    def join(segments) -> "Segment":
        """One segment from consecutive ones (the first token of each keeps its flag)."""
        segments = list(segments)
        return Segment(*(np.concatenate([getattr(s, f.name) for s in segments])
                         for f in fields(Segment)))


class Sentences:
    """The sentences of one document as :class:`Segment` objects, built on access (documents can hold
    thousands of sentences; a sample touches a few)."""

    def __init__(self, doc):
        self.doc = doc
        bounds = np.append(np.asarray(doc.sentence_starts, dtype=np.int64), len(doc.token_ids))
        keep = bounds[1:] > bounds[:-1]
        self.starts, self.ends = bounds[:-1][keep], bounds[1:][keep]
        self.phrase_spans = np.asarray(doc.phrase_spans, dtype=np.int64).reshape(-1, 2)
        self.entity_spans = np.asarray(doc.entity_spans, dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> Segment:
        a, b = int(self.starts[i]), int(self.ends[i])
        return Segment(self.doc.token_ids[a:b], self.doc.word_starts[a:b].astype(bool),
                       _window_labels(self.phrase_spans, a, b),
                       _window_labels(self.entity_spans, a, b))


def _window_labels(spans: np.ndarray, a: int, b: int) -> np.ndarray:
    """Span labels of the tokens [a, b) of a document: the index of the span (document-wide, so two
    pieces of one span cut by a sentence boundary keep one label) each token lies in, else -1."""
    labels = np.full(b - a, -1, dtype=np.int64)
    # Spans overlapping [a, b): end > a and start < b (one kind's spans are sorted and disjoint).
    lo = int(np.searchsorted(spans[:, 1], a, side="right"))
    hi = int(np.searchsorted(spans[:, 0], b, side="left"))
    for k in range(lo, hi):
        labels[max(int(spans[k, 0]), a) - a:min(int(spans[k, 1]), b) - a] = k
    return labels


class BertSamples:
    """``[CLS] A [SEP] B [SEP]`` pairs; B is the true continuation (label 0) or, half the time when NSP
    is on, a segment from another document (label 1, HF's convention).

    Subclasses for other MLM families (RoBERTa, ALBERT, ELECTRA, DistilBERT) get every masking
    strategy by building their sequences from :class:`Segment` objects (``self._sentences``,
    ``self._take``, ``Segment.join``; special tokens as ``self._special(id)``) and calling
    ``self.mask(ids, eligible, rng, strategy, joined.word_starts, joined.span_labels(strategy))``
    with ``strategy = self.masking_strategy(index)``."""

    def __init__(self, corpus: Corpus, tokens: SpecialTokens, data: DataConfig,
                 objective: ObjectiveConfig, seed: int, global_batch_size: Optional[int] = None):
        """``global_batch_size`` (samples per optimiser step) is needed only with a
        ``objective.masking_schedule``: sample ``i`` belongs to step ``i // global_batch_size``
        (``plmscale.objectives.schedule.global_batch_size(cfg)`` computes it)."""
        self.corpus, self.tokens, self.data, self.objective = corpus, tokens, data, objective
        self.seed = seed
        check_strategy(objective.masking)
        self.schedule = masking_schedule(objective)
        if self.schedule is not None:
            sample_step(0, global_batch_size, "masking_schedule")  # refuses an unknown batch size
        self.global_batch_size = global_batch_size

    # -- segment selection -------------------------------------------------------------------
    def _sentences(self, doc_index: int) -> Sentences:
        return Sentences(self.corpus.document(doc_index))

    def _take(self, sentences: Sentences, start: int, budget: int) -> list[Segment]:
        chunk, length = [], 0
        for i in range(start, len(sentences)):
            if length >= budget:
                break
            chunk.append(sentences[i])
            length += len(chunk[-1])
        return chunk

    def masking_strategy(self, index: int) -> str:
        """The masking strategy of sample ``index``: ``objective.masking``, or the schedule's at
        the sample's step (a mixture draws from its own (seed, index) stream, leaving the
        sample's other random choices unchanged)."""
        if self.schedule is None:
            return self.objective.masking
        step = sample_step(index, self.global_batch_size, "masking_schedule")
        return self.schedule.pick(step, np.random.default_rng([self.seed, index, 1]))

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        a, b, label = self.pair(rng, self.objective.next_sentence_prediction)
        return self._assemble(a, b, label, rng, self.masking_strategy(index))

    def pair(self, rng: np.random.Generator, nsp: bool) -> tuple[Segment, Segment, int]:
        """Segments A and B (B possibly empty) that fit ``[CLS] A [SEP] B [SEP]`` in seq_length, and
        the NSP label: B is the true continuation (0) or, half the time when ``nsp``, text from
        another document (1)."""
        max_tokens = self.data.seq_length - 3
        target = max_tokens
        if rng.random() < self.data.short_seq_prob:
            target = int(rng.integers(2, max_tokens + 1))
        doc = self.corpus.sample_document(rng)
        sentences = self._sentences(doc)
        chunk = self._take(sentences, int(rng.integers(len(sentences))), target)

        split = int(rng.integers(1, len(chunk))) if len(chunk) > 1 else 1
        a = Segment.join(chunk[:split])
        is_random_next = nsp and (len(chunk) == 1 or rng.random() < 0.5)
        if is_random_next:
            other = self.corpus.sample_document(rng, exclude=doc)
            other_sentences = self._sentences(other)
            picked = self._take(other_sentences, int(rng.integers(len(other_sentences))),
                                max(target - len(a), 1))
            b = Segment.join(picked)
        elif len(chunk) > split:
            b = Segment.join(chunk[split:])
        else:
            b = a[:0]
        a, b = _truncate_pair(a, b, max_tokens, rng)
        return a, b, int(is_random_next)

    # -- assembly and masking ----------------------------------------------------------------
    def _assemble(self, a: Segment, b: Segment, label: int, rng: np.random.Generator,
                  strategy: str = "token", segment_types: tuple[int, int] = (0, 1)):
        """``[CLS] a [SEP] [b [SEP]]`` masked and padded; ``segment_types``: the token types of
        the two parts (UniLM's carry its objective)."""
        t, seq = self.tokens, self.data.seq_length
        parts = [self._special(t.cls), a, self._special(t.sep)]
        if len(b):
            parts += [b, self._special(t.sep)]
        joined = Segment.join(parts)
        ids = joined.ids.astype(np.int64)
        types = np.full(len(ids), segment_types[0], dtype=np.int64)
        types[len(a) + 2:] = segment_types[1]
        eligible = ~np.isin(ids, t.special_ids)
        corrupted, labels, selection = self.mask(ids, eligible, rng, strategy,
                                                 joined.word_starts, joined.span_labels(strategy))
        pad = seq - len(ids)
        sample = {
            "input_ids": np.pad(corrupted, (0, pad), constant_values=t.pad),
            "token_type_ids": np.pad(types, (0, pad)),
            "attention_mask": np.pad(np.ones(len(ids), dtype=np.int64), (0, pad)),
            "mlm_labels": np.pad(labels, (0, pad), constant_values=-100),
            "next_sentence_label": np.int64(label),
        }
        sample.update(self.span_boundary_arrays(selection, len(ids), labels))
        return sample

    @staticmethod
    def _special(token_id: int) -> Segment:
        no_span = np.full(1, -1, dtype=np.int64)
        return Segment(np.array([token_id], dtype=np.int64), np.zeros(1, dtype=bool), no_span,
                       no_span)

    def mask(self, ids: np.ndarray, eligible: np.ndarray, rng: np.random.Generator,
             strategy: str = "token", word_starts: Optional[np.ndarray] = None,
             span_labels: Optional[np.ndarray] = None):
        """Select positions with ``strategy`` and corrupt them 80/10/10 (the objective's fractions).
        Returns (corrupted ids, labels with -100 where not selected, the Selection or None for
        "token", whose draws are BERT's ``mask_tokens`` exactly). ``span_labels``: the labels of the
        spans of the strategy's kind (``Segment.span_labels(strategy)``). Subclasses for other MLM
        families call this with their own sequences."""
        return mask_with_strategy(ids, eligible, rng, self.tokens, self.objective, strategy,
                                  word_starts, span_labels)

    def span_boundary_arrays(self, selection: Optional[Selection], length: int,
                             labels: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
        """With ``objective.span_boundary_objective``: SpanBERT's boundary inputs, padded to
        seq_length with -1 (empty dict otherwise). With token masking (``selection`` None) each
        selected token, read from ``labels``, is a unit of its own."""
        if not self.objective.span_boundary_objective:
            return {}
        if selection is None:
            positions = np.flatnonzero(labels != IGNORE_INDEX)
            selection = Selection(positions, np.stack([positions, positions + 1], axis=1),
                                  np.ones(positions.size, dtype=np.int64))
        arrays = span_boundary_targets(length, selection)
        pad = self.data.seq_length - length
        return {k: np.pad(v, (0, pad), constant_values=-1) for k, v in arrays.items()}


class BertSamplesWithoutNSP(BertSamples):
    """BERT's samples for the masked-LM families without NSP (ELECTRA, DistilBERT): one ``[CLS] A
    [SEP] B [SEP]`` sequence of consecutive text, without the NSP label and the keys in ``drop``."""

    def __init__(self, corpus: Corpus, cfg, drop: tuple[str, ...] = ()):
        objective = replace(cfg.objective, next_sentence_prediction=False)
        super().__init__(corpus, corpus.tokens, cfg.data, objective, cfg.train.seed)
        self.drop = ("next_sentence_label", *drop)

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        return {k: v for k, v in super().__call__(index).items() if k not in self.drop}


def _truncate_pair(a: Segment, b: Segment, max_tokens: int, rng: np.random.Generator):
    """Trim the longer segment, from its front or back at random (as BERT), until both fit."""
    while len(a) + len(b) > max_tokens:
        longer = 0 if len(a) >= len(b) else 1
        seg = a if longer == 0 else b
        excess = len(a) + len(b) - max_tokens
        cut = min(excess, len(seg) - 1) if len(seg) > 1 else len(seg)
        seg = seg[cut:] if rng.random() < 0.5 else seg[:len(seg) - cut]
        a, b = (seg, b) if longer == 0 else (a, seg)
    return a, b
