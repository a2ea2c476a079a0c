"""DistilBERT's samples: BERT's without NSP, with neither token types nor an NSP label."""

from __future__ import annotations

import dataclasses

from plmscale.families.bert.samples import BertSamples


class DistilBertSamples:
    """BERT's samples without NSP, with neither token types nor an NSP label."""

    def __init__(self, corpus, cfg):
        objective = dataclasses.replace(cfg.objective, next_sentence_prediction=False)
        self.inner = BertSamples(corpus, corpus.tokens, cfg.data, objective, cfg.train.seed)

    def __call__(self, index: int) -> dict:
        sample = self.inner(index)
        return {k: v for k, v in sample.items() if k not in ("token_type_ids", "next_sentence_label")}
