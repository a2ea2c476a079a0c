"""RoBERTa pretraining samples: FULL-SENTENCES packing + dynamic masking, no NSP.

Liu et al. 2019 (section 4.2, FULL-SENTENCES): each input is packed with full sentences sampled
contiguously from one or more documents, up to ``seq_length`` tokens; when a document ends, the next
document's sentences follow after a separator token. Here a sample starts at a random sentence of a
length-weighted random document and continues through the following documents (corpus order), so
sample ``i`` is a pure function of (seed, i) like every plmscale sample, and every draw of an index
gets a fresh mask (dynamic masking). Layout: ``<s> s1 s2 ... </s> t1 t2 ... </s> [PAD]...`` with
``</s>`` as the document separator (fairseq's eos) and as the closing token.
"""

from __future__ import annotations

import numpy as np

from plmscale.config.schema import DataConfig, ObjectiveConfig
from plmscale.data.corpus import Corpus
from plmscale.data.tokenizer import SpecialTokens
from plmscale.objectives.masking import IGNORE_INDEX
from plmscale.objectives.masking_strategies import mask_with_strategy


class RobertaSamples:
    """``sample(i)`` -> input_ids, attention_mask, mlm_labels (no token types, no NSP label)."""

    def __init__(self, corpus: Corpus, tokens: SpecialTokens, data: DataConfig,
                 objective: ObjectiveConfig, seed: int):
        self.corpus, self.tokens, self.data, self.objective = corpus, tokens, data, objective
        self.seed = seed

    def _next_document(self, doc: int) -> int:
        for _ in range(len(self.corpus)):
            doc = (doc + 1) % len(self.corpus)
            if len(self.corpus.document(doc).token_ids):
                return doc
        return doc

    def pack(self, rng: np.random.Generator, start: tuple[int, int] | None = None):
        """The packed content (without <s> / closing </s>): (token ids, word-start flags, pieces),
        ``pieces`` listing what was packed in order: (document, sentence index, length), or
        ("sep",) for a document separator. Whole sentences only; a single sentence longer than the
        sequence is cut (the only way a sentence is ever split). ``start``: (document, sentence)
        to begin at instead of a random one (XLNet's consecutive segments)."""
        budget = self.data.seq_length - 2
        if start is None:
            doc = self.corpus.sample_document(rng)
            sentence = int(rng.integers(len(self.corpus.document(doc).sentence_starts)))
        else:
            doc, sentence = start
        d = self.corpus.document(doc)
        ids, flags, pieces, length = [], [], [], 0
        while True:
            bounds = list(d.sentence_starts) + [len(d.token_ids)]
            while sentence < len(d.sentence_starts):
                a, b = int(bounds[sentence]), int(bounds[sentence + 1])
                if length + (b - a) > budget:
                    if length == 0:  # a sentence longer than a whole sequence: keep its head
                        b = a + budget
                    else:
                        return (*_join(ids, flags), pieces)
                ids.append(d.token_ids[a:b])
                flags.append(d.word_starts[a:b])
                pieces.append((doc, sentence, b - a))
                length += b - a
                sentence += 1
                if length >= budget:
                    return (*_join(ids, flags), pieces)
            # Document ended: continue with the next one after a separator, if its first sentence
            # fits as well (no dangling separator at the end of a sequence).
            nxt = self._next_document(doc)
            d_next = self.corpus.document(nxt)
            first = (int(d_next.sentence_starts[1]) if len(d_next.sentence_starts) > 1
                     else len(d_next.token_ids))
            if nxt == doc or length + 1 + first > budget:
                return (*_join(ids, flags), pieces)
            ids.append(np.array([self.tokens.eos], dtype=np.int64))
            flags.append(np.ones(1, dtype=np.uint8))
            pieces.append(("sep",))
            length += 1
            doc, d, sentence = nxt, d_next, 0

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        content, flags, _ = self.pack(rng)
        t, seq = self.tokens, self.data.seq_length
        ids = np.concatenate([[t.bos], content, [t.eos]]).astype(np.int64)
        word_starts = np.concatenate([[1], flags, [1]]).astype(np.uint8)
        corrupted, labels, _ = mask_with_strategy(ids, ~np.isin(ids, t.special_ids), rng, t,
                                                  self.objective, self.objective.masking, word_starts)
        pad = seq - len(ids)
        return {
            "input_ids": np.pad(corrupted, (0, pad), constant_values=t.pad),
            "attention_mask": np.pad(np.ones(len(ids), dtype=np.int64), (0, pad)),
            "mlm_labels": np.pad(labels, (0, pad), constant_values=IGNORE_INDEX),
        }


def _join(ids: list, flags: list) -> tuple[np.ndarray, np.ndarray]:
    if not ids:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    return (np.concatenate(ids).astype(np.int64), np.concatenate(flags).astype(np.uint8))
