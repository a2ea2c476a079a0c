"""XLNet pretraining samples: ``A [SEP] B [SEP] [CLS]`` (segments 0, 1, 2; XLNet's [CLS] comes last)
from FULL-SENTENCES packing (RoBERTa's packer, three special tokens), cut at a random word start into
A and B, with the permutation-LM targets of ``plmscale.objectives.permutation``.

Sample ``i`` is a pure function of (seed, i). Arrays: ``input_ids`` (original tokens),
``token_type_ids``, ``attention_mask``, ``perm_mask`` [L, L] (True: i may not see j),
``target_positions`` [m] and ``target_labels`` [m] (-100 on unused rows), m = round(L / K).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from plmscale.config.schema import DataConfig, ObjectiveConfig
from plmscale.data.corpus import Corpus
from plmscale.data.tokenizer import SpecialTokens
from plmscale.families.roberta.samples import RobertaSamples
from plmscale.objectives.masking import IGNORE_INDEX
from plmscale.objectives.permutation import permutation_mask, sample_prediction_mask


def num_predict(seq_length: int, mask_alpha: int) -> int:
    """Rows of the query stream per sample: round(seq_length / K) (the paper's 85 for 512, K=6)."""
    return max(1, int(round(seq_length / mask_alpha)))


class XLNetSamples:
    def __init__(self, corpus: Corpus, tokens: SpecialTokens, data: DataConfig,
                 objective: ObjectiveConfig, seed: int):
        self.tokens, self.data, self.objective, self.seed = tokens, data, objective, seed
        # RoBERTa's packer leaves room for two specials; one position less leaves room for three.
        self.packer = RobertaSamples(corpus, tokens, dataclasses.replace(
            data, seq_length=data.seq_length - 1), objective, seed)
        self.rows = num_predict(data.seq_length, objective.permutation_mask_alpha)

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        content, flags, _ = self.packer.pack(rng)
        t, seq, o = self.tokens, self.data.seq_length, self.objective
        starts = np.flatnonzero(flags[1:]) + 1
        cut = int(rng.choice(starts)) if len(starts) else len(content)
        ids = np.concatenate([content[:cut], [t.sep], content[cut:], [t.sep, t.cls]]).astype(np.int64)
        types = np.concatenate([np.zeros(cut + 1), np.ones(len(content) - cut + 1), [2]])
        eligible = ~np.isin(ids, t.special_ids)
        # Spans are drawn over the text alone (the separators are not part of it).
        text = np.flatnonzero(eligible)
        goal = int(round(len(text) / o.permutation_mask_alpha))
        word_starts = np.concatenate([flags[:cut], [1], flags[cut:], [1, 1]]).astype(bool)
        chosen = sample_prediction_mask(len(text), word_starts[text], goal, rng,
                                        o.permutation_mask_alpha, o.permutation_max_span)
        predicted = np.zeros(len(ids), dtype=bool)
        predicted[text[chosen]] = True
        functional = np.isin(ids, [t.sep, t.cls])
        perm = permutation_mask(predicted, functional, rng)
        positions = np.flatnonzero(predicted)[:self.rows]
        pad, rows = seq - len(ids), self.rows - len(positions)
        return {
            "input_ids": np.pad(ids, (0, pad), constant_values=t.pad),
            "token_type_ids": np.pad(types.astype(np.int64), (0, pad)),
            "attention_mask": np.pad(np.ones(len(ids), dtype=np.int64), (0, pad)),
            "perm_mask": np.pad(perm, (0, pad)),
            "target_positions": np.pad(positions, (0, rows)),
            "target_labels": np.pad(ids[positions], (0, rows), constant_values=IGNORE_INDEX),
        }
