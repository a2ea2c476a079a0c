"""GLM pretraining samples: a window of whole sentences from a random document, then one of the
blank-infilling objectives (``plmscale.objectives.blank_infilling``), the same for every sample of
an optimiser step (GLM chooses per batch) and drawn with ``objective.objective_weights``."""

from __future__ import annotations

import numpy as np

from plmscale.families.bert.samples import Sentences
from plmscale.objectives.blank_infilling import (OBJECTIVES, BlankTokens, blank_sample, blank_spans,
                                                 document_span, sentence_spans,
                                                 span_length_distribution)
from plmscale.objectives.unified_lm import draw_kind, parse_weights


class GLMSamples:
    """``sample(index)``: input_ids, labels, position_ids, block_position_ids, part_a."""

    def __init__(self, corpus, tokens, data, objective, seed: int, global_batch_size: int):
        missing = [name for name in ("start", "gmask", "smask") if getattr(tokens, name) is None]
        if missing:
            raise ValueError(f"the tokenizer of {data.path} lacks GLM's [START] / [gMASK] / [sMASK] "
                             "pieces; retrain it with `python -m data_prep train-tokenizer` (it adds "
                             "them) and re-encode the corpus")
        self.corpus, self.tokens, self.seed = corpus, tokens, seed
        self.seq_length, self.global_batch_size = data.seq_length, global_batch_size
        self.ratio = objective.mlm_probability
        self.distribution = span_length_distribution(objective.poisson_lambda)
        self.probabilities = parse_weights(objective.objective_weights or "blank:1", OBJECTIVES)

    def objective(self, index: int) -> str:
        """The objective of the optimiser step that sample ``index`` belongs to."""
        step = index // self.global_batch_size
        return draw_kind(np.random.default_rng([self.seed, step, 3]), self.probabilities)

    def text(self, rng: np.random.Generator, room: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Up to ``room`` tokens of whole sentences from a random place in a random document (a
        first sentence longer than that is cut), with the sentences' [start, end) bounds."""
        sentences = Sentences(self.corpus.document(self.corpus.sample_document(rng)))
        pieces, bounds, used = [], [], 0
        for i in range(int(rng.integers(len(sentences))), len(sentences)):
            ids = np.asarray(sentences[i].ids, dtype=np.int64)[:room - used]
            if not len(ids) or (pieces and used + len(sentences[i].ids) > room):
                break
            pieces.append(ids)
            bounds.append((used, used + len(ids)))
            used += len(ids)
        return np.concatenate(pieces), bounds

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        objective = self.objective(index)
        room = self.seq_length - 1  # [CLS] first
        text, bounds = self.text(rng, room)
        t = self.tokens
        if objective == "blank":
            n, spans = blank_spans(len(text), room, rng, self.ratio, self.distribution)
            mask = t.mask
        elif objective == "sentence":
            n, spans = sentence_spans(bounds, room, rng, self.ratio)
            mask = t.smask
        else:
            n, spans = document_span(len(text), room, rng)
            mask = t.gmask
        ids = BlankTokens(cls=t.cls, mask=mask, start=t.start, end=t.eos, pad=t.pad)
        return blank_sample(text[:n], spans, ids, self.seq_length, rng)
