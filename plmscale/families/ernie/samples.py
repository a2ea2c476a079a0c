"""ERNIE 2.0 pretraining samples: one task per sample (``objective.task_schedule`` at the sample's
step, ``plmscale.objectives.ernie_tasks``), every sample also knowledge-masked as BERT's.

Every sample carries every task's label arrays (IGNORE_INDEX where the sample is of another task),
so samples of different tasks batch together, plus ``task_type_ids`` (the task's type, every
position). Sample ``i`` is a pure function of (seed, i), as BERT's.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import sentencepiece as spm

from plmscale.config.schema import DataConfig, ObjectiveConfig
from plmscale.data.corpus import Corpus
from plmscale.data.tokenizer import SpecialTokens
from plmscale.families.bert.samples import BertSamples, Segment, _truncate_pair
from plmscale.objectives.ernie_tasks import (TASK_TYPES, capitalization_labels, capitalized_pieces,
                                             cut_and_shuffle, parse_distance_weights,
                                             reorder_label, token_document_labels)
from plmscale.objectives.masking import IGNORE_INDEX
from plmscale.objectives.schedule import sample_step, task_schedule

TOKEN_LABELS = ("capitalization_labels", "token_document_labels")
SEQUENCE_LABELS = ("sentence_reordering_label", "sentence_distance_label")
_TRIES = 64  # documents drawn before a sentence-distance class is declared impossible


class ErnieSamples(BertSamples):
    """``[CLS] segment [SEP]`` (masking, capitalization, token-document relation), ``[CLS] s1 [SEP]
    ... sn [SEP]`` (sentence reordering) or ``[CLS] A [SEP] B [SEP]`` (sentence distance)."""

    def __init__(self, corpus: Corpus, tokens: SpecialTokens, data: DataConfig,
                 objective: ObjectiveConfig, seed: int, global_batch_size: Optional[int] = None):
        super().__init__(corpus, tokens, data, objective, seed, global_batch_size)
        self.tasks = task_schedule(objective)
        if self.tasks is not None:
            sample_step(0, global_batch_size, "task_schedule")
        self.distance_weights = parse_distance_weights(objective.sentence_distance_weights)
        if objective.sentence_reorder_max_segments < 1:
            raise ValueError(f"objective.sentence_reorder_max_segments="
                             f"{objective.sentence_reorder_max_segments}: must be >= 1")
        self.capitalized = capitalized_pieces(
            spm.SentencePieceProcessor(model_file=str(corpus.shards.tokenizer_path)))

    def task(self, index: int) -> str:
        """The task of sample ``index``: a draw from the schedule's mixture at its step, from a
        (seed, index) stream of its own (masking alone without a schedule)."""
        if self.tasks is None:
            return "masking"
        step = sample_step(index, self.global_batch_size, "task_schedule")
        return self.tasks.pick(step, np.random.default_rng([self.seed, index, 2]))

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        task = self.task(index)
        labels = {"sentence_reordering_label": IGNORE_INDEX, "sentence_distance_label": IGNORE_INDEX}
        if task == "sentence_reordering":
            parts, labels["sentence_reordering_label"] = self._reordered(rng)
            types = None
        elif task == "sentence_distance":
            a, b, labels["sentence_distance_label"] = self._sentence_pair(rng)
            parts, types = [a, b], [0, 1]
        else:
            segment, rest = self._segment(rng)
            parts, types = [segment], None
        sample = self._layout(parts, types, rng, self.masking_strategy(index))
        eligible = sample.pop("eligible")
        ids, starts = sample.pop("original_ids"), sample.pop("word_starts")
        token = {name: np.full(len(ids), IGNORE_INDEX, dtype=np.int64) for name in TOKEN_LABELS}
        if task == "capitalization":
            token["capitalization_labels"] = capitalization_labels(ids, starts, eligible,
                                                                   self.capitalized)
        elif task == "token_document":
            token["token_document_labels"] = token_document_labels(ids, eligible, rest)
        pad = self.data.seq_length - len(ids)
        sample.update({k: np.pad(v, (0, pad), constant_values=IGNORE_INDEX) for k, v in token.items()})
        sample.update({k: np.int64(v) for k, v in labels.items()})
        sample["task_type_ids"] = np.full(self.data.seq_length, TASK_TYPES[task], dtype=np.int64)
        return sample

    # -- the tasks' inputs -------------------------------------------------------------------
    def _target(self, rng: np.random.Generator, specials: int) -> int:
        """Token budget of a sample with ``specials`` special tokens (shorter now and then)."""
        max_tokens = self.data.seq_length - specials
        if rng.random() < self.data.short_seq_prob:
            return int(rng.integers(2, max_tokens + 1))
        return max_tokens

    def _segment(self, rng: np.random.Generator) -> tuple[Segment, np.ndarray]:
        """Consecutive sentences of one document, and the document's tokens outside them."""
        doc_index = self.corpus.sample_document(rng)
        sentences = self._sentences(doc_index)
        first = int(rng.integers(len(sentences)))
        segment = Segment.join(self._take(sentences, first, self._target(rng, 2)))
        segment = segment[:self.data.seq_length - 2]
        all_ids = np.asarray(self.corpus.document(doc_index).token_ids)
        start = int(sentences.starts[first])
        return segment, np.concatenate([all_ids[:start], all_ids[start + len(segment):]])

    def _reordered(self, rng: np.random.Generator) -> tuple[list[Segment], int]:
        """A paragraph cut into n = 1..m segments (n uniform) in a random order, and its class."""
        n = int(rng.integers(1, self.objective.sentence_reorder_max_segments + 1))
        sentences = self._sentences(self.corpus.sample_document(rng))
        budget = self._target(rng, 1 + n)
        paragraph = Segment.join(self._take(sentences, int(rng.integers(len(sentences))), budget))
        paragraph = paragraph[:max(budget, n)]
        if len(paragraph) < n:
            raise ValueError(f"a paragraph of {len(paragraph)} tokens cannot be cut into {n} "
                             f"segments: raise data.seq_length or lower "
                             f"objective.sentence_reorder_max_segments")
        pieces, order = cut_and_shuffle(len(paragraph), n, rng)
        return [paragraph[pieces[k]] for k in order], reorder_label(order)

    def _sentence_pair(self, rng: np.random.Generator) -> tuple[Segment, Segment, int]:
        """Two sentences and their distance class, drawn with ``objective.sentence_distance_weights``."""
        label = int(rng.choice(3, p=self.distance_weights))
        for _ in range(_TRIES):
            doc = self.corpus.sample_document(rng)
            sentences = self._sentences(doc)
            n = len(sentences)
            i = int(rng.integers(n))
            if label == 0 and n >= 2:
                i = min(i, n - 2)
                a, b = sentences[i], sentences[i + 1]
            elif label == 1:
                far = np.concatenate([np.arange(0, max(i - 1, 0)), np.arange(i + 2, n)])
                if far.size == 0:
                    continue
                a, b = sentences[i], sentences[int(rng.choice(far))]
            elif label == 2:
                other = self._sentences(self.corpus.sample_document(rng, exclude=doc))
                a, b = sentences[i], other[int(rng.integers(len(other)))]
            else:
                continue
            a, b = _truncate_pair(a, b, self._target(rng, 3), rng)
            return a, b, label
        raise ValueError(f"no document found for sentence-distance class "
                         f"{('adjacent', 'same_document')[label]!r} in {_TRIES} draws (it needs "
                         f"documents of {label + 2}+ sentences): set its weight in "
                         f"objective.sentence_distance_weights to 0 or use a longer corpus")

    def _layout(self, parts: list[Segment], types: Optional[list[int]], rng, strategy: str) -> dict:
        """``[CLS] part [SEP] part [SEP] ...`` masked with ``strategy``: the model inputs and MLM
        labels padded to seq_length, plus (unpadded) the original ids, word starts and the
        positions that can carry labels (not special tokens)."""
        t = self.tokens
        joined_parts, type_ids = [self._special(t.cls)], [0]
        for k, part in enumerate(parts):
            joined_parts += [part, self._special(t.sep)]
            type_ids += [types[k] if types else 0] * (len(part) + 1)
        joined = Segment.join(joined_parts)
        ids = joined.ids.astype(np.int64)
        eligible = ~np.isin(ids, t.special_ids)
        corrupted, mlm, _ = self.mask(ids, eligible, rng, strategy, joined.word_starts,
                                      joined.span_labels(strategy))
        pad = self.data.seq_length - len(ids)
        return {"input_ids": np.pad(corrupted, (0, pad), constant_values=t.pad),
                "token_type_ids": np.pad(np.array(type_ids, dtype=np.int64), (0, pad)),
                "attention_mask": np.pad(np.ones(len(ids), dtype=np.int64), (0, pad)),
                "mlm_labels": np.pad(mlm, (0, pad), constant_values=IGNORE_INDEX),
                "original_ids": ids, "word_starts": joined.word_starts.astype(bool),
                "eligible": eligible}
