"""MPNet pretraining samples: RoBERTa's FULL-SENTENCES packing (``<s> ... </s>``), then the masked
and permuted layout of ``plmscale.objectives.masked_permutation``.

Sample ``i`` is a pure function of (seed, i). Arrays (S = L + 2 pred): ``input_ids`` [S],
``position_ids`` [S] (0-based; the model adds ``position_offset``), ``attention_visible`` [S, S]
(True = row may see column; padding columns hidden), ``mlm_labels`` [pred] (the query stream's
targets).
"""

from __future__ import annotations

import numpy as np

from plmscale.config.schema import DataConfig, ObjectiveConfig
from plmscale.data.corpus import Corpus
from plmscale.data.tokenizer import SpecialTokens
from plmscale.families.roberta.samples import RobertaSamples
from plmscale.objectives.masked_permutation import predicted_count, two_stream_visibility
from plmscale.objectives.masking import IGNORE_INDEX, corrupt


class MPNetSamples:
    def __init__(self, corpus: Corpus, tokens: SpecialTokens, data: DataConfig,
                 objective: ObjectiveConfig, seed: int):
        self.tokens, self.data, self.objective = tokens, data, objective
        self.packer = RobertaSamples(corpus, tokens, data, objective, seed)
        self.seed = seed
        self.pred = predicted_count(data.seq_length, objective.mlm_probability)

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        content, _, _ = self.packer.pack(rng)
        t, length, pred, o = self.tokens, self.data.seq_length, self.pred, self.objective
        ids = np.concatenate([[t.bos], content, [t.eos]]).astype(np.int64)
        real = len(ids)
        eligible = np.flatnonzero(~np.isin(ids, t.special_ids))
        # A full sequence has pred predicted tokens; a short one (the end of the corpus) fewer.
        used = min(pred, len(eligible))
        predicted = rng.choice(eligible, used, replace=False)  # in factorisation order
        others = rng.permutation(np.setdiff1d(np.arange(real), predicted))
        order = np.concatenate([others, np.arange(real, length), predicted])
        ids = np.pad(ids, (0, length - real), constant_values=t.pad)
        masked, _ = corrupt(ids[predicted], np.arange(used), rng, mask_id=t.mask,
                            replacement_ids=t.normal_ids, mask_fraction=o.mask_token_fraction,
                            random_fraction=o.random_token_fraction)
        visible = two_stream_visibility(length, pred, used)
        visible[:, len(others):length - used] = False  # padding
        unused = np.full(pred - used, t.pad)
        slots = np.concatenate([predicted, np.zeros(pred - used, dtype=np.int64)])
        block = np.concatenate([masked, unused])
        return {"input_ids": np.concatenate([ids[order], block, block]),
                "position_ids": np.concatenate([order, slots, slots]),
                "attention_visible": visible,
                "mlm_labels": np.concatenate([ids[predicted], np.full(pred - used, IGNORE_INDEX)])}
