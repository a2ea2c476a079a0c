"""UniLM pretraining samples: per sample one of four objectives, drawn from (seed, index) with
``objective.objective_weights`` (default 1/3 bidirectional, 1/3 seq2seq, 1/6 left-to-right, 1/6
right-to-left), laid out as microsoft/unilm does:

* bidirectional: ``[CLS] A [SEP] B [SEP]``, types 0 / 1, B a true or random next segment (NSP);
* seq2seq: ``[CLS] A [SEP] B [SEP]``, types 4 (source) / 5 (target), B the true continuation;
* left-to-right / right-to-left: one text segment ``[CLS] T [SEP]``, every type 2 / 3.

Masking: 15% of the non-special tokens (``objective.mlm_probability``) as units of one token or, with
``objective.ngram_probability`` (20%), a bigram or trigram; each masked token 80/10/10. The NSP
label is -100 (not predicted) for all but bidirectional samples.
"""

from __future__ import annotations

import numpy as np

from plmscale.families.bert.samples import BertSamples, Segment
from plmscale.objectives.masking import IGNORE_INDEX, corrupt
from plmscale.objectives.masking_strategies import mixed_ngram_selection
from plmscale.objectives.unified_lm import DEFAULT_WEIGHTS, MASK_KINDS, draw_kind, parse_weights


class UniLMSamples(BertSamples):
    """``sample(index)``: input_ids, token_type_ids (carrying the objective), attention_mask,
    mlm_labels and next_sentence_label."""

    def __init__(self, corpus, tokens, data, objective, seed: int):
        super().__init__(corpus, tokens, data, objective, seed)
        self.probabilities = parse_weights(objective.objective_weights or DEFAULT_WEIGHTS,
                                           list(MASK_KINDS))

    def kind(self, index: int) -> str:
        """The objective of sample ``index`` (its own (seed, index) stream)."""
        return draw_kind(np.random.default_rng([self.seed, index, 2]), self.probabilities)

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        kind = self.kind(index)
        bidirectional = kind == "bidirectional"
        a, b, label = self.pair(rng, bidirectional and self.objective.next_sentence_prediction)
        if kind == "seq2seq" and not len(b) and len(a) > 1:  # a one-sentence text: cut it in two
            cut = int(rng.integers(1, len(a)))
            a, b = a[:cut], a[cut:]
        if kind in ("left_to_right", "right_to_left"):  # one text segment
            a, b = Segment.join([a, b]), a[:0]
        return self._assemble(a, b, label if bidirectional else IGNORE_INDEX, rng,
                              segment_types=MASK_KINDS[kind])

    def mask(self, ids, eligible, rng, strategy="token", word_starts=None, span_labels=None):
        """UniLM's units (single tokens, 20% bi/trigrams), corrupted 80/10/10."""
        o, t = self.objective, self.tokens
        selection = mixed_ngram_selection(eligible, rng, o.mlm_probability, o.ngram_probability,
                                          o.max_ngram)
        corrupted, labels = corrupt(ids, selection.positions, rng, mask_id=t.mask,
                                    replacement_ids=t.normal_ids,
                                    mask_fraction=o.mask_token_fraction,
                                    random_fraction=o.random_token_fraction)
        return corrupted, labels, selection
