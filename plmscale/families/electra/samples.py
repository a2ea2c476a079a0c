"""ELECTRA's samples: BERT's without NSP, plus the generator's sampling seed."""

from __future__ import annotations

import numpy as np

from plmscale.families.bert.samples import BertSamplesWithoutNSP


class ElectraSamples(BertSamplesWithoutNSP):
    """BERT's samples without NSP (one [CLS] A [SEP] B [SEP] sequence of consecutive text), plus
    ``sampling_seed``: the generator's sampling noise for this sample, from (seed, index) alone."""

    def __call__(self, index: int) -> dict:
        sample = super().__call__(index)
        sample["sampling_seed"] = np.int64(np.random.default_rng([self.seed, index, 1])
                                           .integers(2**62))
        return sample
