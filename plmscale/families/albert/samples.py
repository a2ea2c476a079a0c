"""ALBERT pretraining samples: sentence-order prediction (SOP) pairs + n-gram masking.

Lan et al. 2019 (section 4.6 / 3.1): segment A and segment B are two consecutive stretches of one
document; positives keep their order, negatives are the same two segments swapped (label 1, HF's
``sentence_order_label`` convention), with probability 1/2. BERT's pair layout and sentence
selection are reused (``BertSamples``); what differs is that B is never taken from another document
and that truncation keeps the two segments adjacent (A loses tokens at its front, B at its end), so
the only difference between a positive and its negative is the order. Masking follows
``objective.masking`` ("ngram" in the ALBERT configs: n <= max_ngram words, p(n) ~ 1/n).
"""

from __future__ import annotations

import numpy as np

from plmscale.families.bert.samples import BertSamples, Segment


class AlbertSamples(BertSamples):
    """``[CLS] A [SEP] B [SEP]`` with A, B consecutive in one document, swapped half the time."""

    def segments(self, rng: np.random.Generator) -> tuple[int, tuple[int, int], tuple[int, int]]:
        """(document, A = [a0, a1), B = [a1, b1)): adjacent token ranges of one document whose
        lengths sum to at most seq_length - 3 (B is empty only for a one-token document)."""
        max_tokens = self.data.seq_length - 3
        target = max_tokens
        if rng.random() < self.data.short_seq_prob:
            target = int(rng.integers(2, max_tokens + 1))
        doc = self.corpus.sample_document(rng)
        d = self.corpus.document(doc)
        bounds = list(d.sentence_starts) + [len(d.token_ids)]
        sentences = [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        start = int(rng.integers(len(sentences)))
        if start == len(sentences) - 1 and start > 0:  # the last sentence: pair it with the one before
            start -= 1
        chunk = self._take(sentences, start, target)
        if len(chunk) < 2 and start + 1 < len(sentences):  # a long first sentence still gets a B
            chunk = sentences[start:start + 2]
        lo, hi = chunk[0].start, chunk[-1].stop
        if len(chunk) >= 2:  # split between sentences
            mid = chunk[int(rng.integers(1, len(chunk)))].start
        if len(chunk) < 2 or not lo < mid < hi:  # one sentence (or empty ones): split inside
            mid = lo + int(rng.integers(1, hi - lo)) if hi - lo >= 2 else hi
        # Truncate the longer segment at its outer end until both fit: A and B stay adjacent.
        excess = hi - lo - max_tokens
        if excess > 0:
            la, lb = mid - lo, hi - mid
            even = min(excess, abs(la - lb))  # first trim the longer one down to the other's length
            la, lb = (la - even, lb) if la >= lb else (la, lb - even)
            la, lb = la - (excess - even + 1) // 2, lb - (excess - even) // 2
            lo, hi = mid - la, mid + lb
        return doc, (lo, mid), (mid, hi)

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        doc, (a0, a1), (b0, b1) = self.segments(rng)
        d = self.corpus.document(doc)

        def segment(lo: int, hi: int) -> Segment:
            words = np.array(d.word_starts[lo:hi], dtype=bool)
            words[:1] = True  # a segment cut mid-word starts a word of its own
            no_span = np.full(hi - lo, -1, dtype=np.int64)
            return Segment(np.asarray(d.token_ids[lo:hi]), words, no_span, no_span)

        sop = self.objective.sentence_order_prediction
        swapped = bool(sop and b1 > b0 and rng.random() < 0.5)
        first, second = (segment(b0, b1), segment(a0, a1)) if swapped else (segment(a0, a1),
                                                                             segment(b0, b1))
        out = self._assemble(first, second, 0, rng, self.masking_strategy(index))
        del out["next_sentence_label"]
        if sop:
            out["sentence_order_label"] = np.int64(swapped)
        return out
