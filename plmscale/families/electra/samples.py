"""ELECTRA's samples: BERT's without NSP, plus the generator's sampling seed."""

from __future__ import annotations

import dataclasses

import numpy as np

from plmscale.families.bert.samples import BertSamples


class ElectraSamples:
    """BERT's samples without NSP (one [CLS] A [SEP] B [SEP] sequence of consecutive text), plus
    ``sampling_seed``: the generator's sampling noise for this sample, from (seed, index) alone."""

    def __init__(self, corpus, cfg):
        objective = dataclasses.replace(cfg.objective, next_sentence_prediction=False)
        self.inner = BertSamples(corpus, corpus.tokens, cfg.data, objective, cfg.train.seed)
        self.seed = cfg.train.seed

    def __call__(self, index: int) -> dict:
        sample = self.inner(index)
        del sample["next_sentence_label"]
        sample["sampling_seed"] = np.int64(np.random.default_rng([self.seed, index, 1])
                                           .integers(2**62))
        return sample
