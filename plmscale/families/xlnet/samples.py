"""XLNet pretraining samples: ``A [SEP] B [SEP] [CLS]`` (segments 0, 1, 2; XLNet's [CLS] comes last)
from FULL-SENTENCES packing (RoBERTa's packer, three special tokens), cut at a random word start into
A and B, with the permutation-LM targets of ``plmscale.objectives.permutation``.

Sample ``i`` is a pure function of (seed, i). Arrays: ``input_ids`` (original tokens),
``token_type_ids``, ``attention_mask``, ``perm_mask`` [L, L] (True: i may not see j),
``target_positions`` [m] and ``target_labels`` [m] (-100 on unused rows), m = round(L / K).

With memory (``mem_len`` > 0) a sample is ``objective.memory_segments`` = n such segments, every
array with a leading [n] axis, cut from one stretch of the corpus: segment t + 1's text starts at
the sentence after the last one of segment t (the next document's first when segment t ended its
document; a sentence longer than a whole segment keeps only its head, as in the packer). The model
runs them in order with the memory carried from each to the next (``model.segment_memory``), as
Transformer-XL feeds a stream's consecutive segments to one batch slot; the stream restarts with
every sample, so the first segment has no memory.
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
                 objective: ObjectiveConfig, seed: int, mem_len: int = 0):
        self.tokens, self.data, self.objective, self.seed = tokens, data, objective, seed
        self.segments = objective.memory_segments if mem_len else 0
        # RoBERTa's packer leaves room for two specials; one position less leaves room for three.
        self.packer = RobertaSamples(corpus, tokens, dataclasses.replace(
            data, seq_length=data.seq_length - 1), objective, seed)
        self.rows = num_predict(data.seq_length, objective.permutation_mask_alpha)

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        if not self.segments:
            return self.segment(rng, *self.packer.pack(rng)[:2])
        parts, start = [], None
        for _ in range(self.segments):
            content, flags, pieces = self.packer.pack(rng, start)
            parts.append(self.segment(rng, content, flags))
            start = self._after(pieces[-1])
        return {k: np.stack([p[k] for p in parts]) for k in parts[0]}

    def _after(self, piece: tuple) -> tuple[int, int]:
        """(document, sentence) that follows the last packed ``piece``."""
        doc, sentence, _ = piece
        if sentence + 1 < len(self.packer.corpus.document(doc).sentence_starts):
            return doc, sentence + 1
        return self.packer._next_document(doc), 0

    def segment(self, rng: np.random.Generator, content: np.ndarray,
                flags: np.ndarray) -> dict[str, np.ndarray]:
        """One ``A [SEP] B [SEP] [CLS]`` segment of packed ``content`` with its targets."""
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
