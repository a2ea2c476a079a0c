"""BERT pretraining samples: sentence-pair (NSP) construction + dynamic MLM masking.

Sample ``i`` is a pure function of (seed, i): the same global index gives the same sample on any
number of ranks and after a resume, and every draw of a new index gets a fresh mask (dynamic masking).
"""

from __future__ import annotations

import numpy as np

from plmscale.config.schema import DataConfig, ObjectiveConfig
from plmscale.data.corpus import Corpus
from plmscale.data.tokenizer import SpecialTokens
from plmscale.objectives.masking import mask_tokens


class BertSamples:
    """``[CLS] A [SEP] B [SEP]`` pairs; B is the true continuation (label 0) or, half the time when NSP
    is on, a segment from another document (label 1, HF's convention)."""

    def __init__(self, corpus: Corpus, tokens: SpecialTokens, data: DataConfig,
                 objective: ObjectiveConfig, seed: int):
        self.corpus, self.tokens, self.data, self.objective = corpus, tokens, data, objective
        self.seed = seed

    # -- segment selection -------------------------------------------------------------------
    def _sentences(self, doc_index: int) -> list[np.ndarray]:
        doc = self.corpus.document(doc_index)
        bounds = list(doc.sentence_starts) + [len(doc.token_ids)]
        return [doc.token_ids[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

    def _take(self, sentences: list[np.ndarray], start: int, budget: int) -> list[np.ndarray]:
        chunk, length = [], 0
        for sentence in sentences[start:]:
            if length >= budget:
                break
            chunk.append(sentence)
            length += len(sentence)
        return chunk

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        max_tokens = self.data.seq_length - 3
        target = max_tokens
        if rng.random() < self.data.short_seq_prob:
            target = int(rng.integers(2, max_tokens + 1))
        doc = self.corpus.sample_document(rng)
        sentences = self._sentences(doc)
        chunk = self._take(sentences, int(rng.integers(len(sentences))), target)

        nsp = self.objective.next_sentence_prediction
        split = int(rng.integers(1, len(chunk))) if len(chunk) > 1 else 1
        a = np.concatenate(chunk[:split])
        is_random_next = nsp and (len(chunk) == 1 or rng.random() < 0.5)
        if is_random_next:
            other = self.corpus.sample_document(rng, exclude=doc)
            other_sentences = self._sentences(other)
            picked = self._take(other_sentences, int(rng.integers(len(other_sentences))),
                                max(target - len(a), 1))
            b = np.concatenate(picked)
        elif len(chunk) > split:
            b = np.concatenate(chunk[split:])
        else:
            b = a[:0]
        a, b = _truncate_pair(a, b, max_tokens, rng)
        return self._assemble(a, b, int(is_random_next), rng)

    # -- assembly and masking ----------------------------------------------------------------
    def _assemble(self, a: np.ndarray, b: np.ndarray, label: int, rng: np.random.Generator):
        t, seq = self.tokens, self.data.seq_length
        parts = [[t.cls], a, [t.sep]] + ([b, [t.sep]] if len(b) else [])
        ids = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
        types = np.zeros(len(ids), dtype=np.int64)
        types[len(a) + 2:] = 1
        eligible = ~np.isin(ids, t.special_ids)
        o = self.objective
        corrupted, labels = mask_tokens(ids, eligible, rng, mask_id=t.mask,
                                        replacement_ids=t.normal_ids, probability=o.mlm_probability,
                                        mask_fraction=o.mask_token_fraction,
                                        random_fraction=o.random_token_fraction)
        pad = seq - len(ids)
        return {
            "input_ids": np.pad(corrupted, (0, pad), constant_values=t.pad),
            "token_type_ids": np.pad(types, (0, pad)),
            "attention_mask": np.pad(np.ones(len(ids), dtype=np.int64), (0, pad)),
            "mlm_labels": np.pad(labels, (0, pad), constant_values=-100),
            "next_sentence_label": np.int64(label),
        }


def _truncate_pair(a: np.ndarray, b: np.ndarray, max_tokens: int, rng: np.random.Generator):
    """Trim the longer segment, from its front or back at random (as BERT), until both fit."""
    while len(a) + len(b) > max_tokens:
        longer = 0 if len(a) >= len(b) else 1
        seg = a if longer == 0 else b
        excess = len(a) + len(b) - max_tokens
        cut = min(excess, len(seg) - 1) if len(seg) > 1 else len(seg)
        seg = seg[cut:] if rng.random() < 0.5 else seg[:len(seg) - cut]
        a, b = (seg, b) if longer == 0 else (a, seg)
    return a, b
