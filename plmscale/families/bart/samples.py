"""BART denoising samples: a contiguous chunk of a document, noised for the encoder, reconstructed by
the decoder.

Sample ``i`` is a pure function of (seed, i) (same on any layout and after a resume; a new noise per
draw). Layout, as fairseq / HF BART::

    input_ids          <s> noise(text) </s> [PAD]...          (encoder; attention_mask marks real tokens)
    labels             <s> text </s> -100...                  (the original text)
    decoder_input_ids  </s> <s> text [PAD]...                 (labels shifted right; HF's
                                                               decoder_start_token_id is eos)
"""

from __future__ import annotations

import numpy as np

from plmscale.config.schema import DataConfig, ObjectiveConfig
from plmscale.data.corpus import Corpus
from plmscale.data.tokenizer import SpecialTokens
from plmscale.objectives.bart_noising import noise
from plmscale.objectives.masking import IGNORE_INDEX


class BartSamples:
    """Chunks start at a sentence boundary and fill up to ``min(seq_length, decoder_seq_length) - 2``
    tokens of one document (a chunk that would run past the document's end starts earlier instead,
    so few samples are short)."""

    def __init__(self, corpus: Corpus, tokens: SpecialTokens, data: DataConfig,
                 objective: ObjectiveConfig, seed: int):
        self.corpus, self.tokens, self.data, self.objective = corpus, tokens, data, objective
        self.seed = seed
        self.encoder_length = data.seq_length
        self.decoder_length = data.decoder_seq_length or data.seq_length
        self.budget = min(self.encoder_length, self.decoder_length) - 2
        if self.budget < 1:
            raise ValueError(f"data.seq_length={data.seq_length} / data.decoder_seq_length="
                             f"{data.decoder_seq_length} leave no room for text next to <s> and </s>")

    def chunk(self, rng: np.random.Generator):
        """(token_ids, sentence_starts, word_starts) of a chunk of a length-weighted random document."""
        doc = self.corpus.document(self.corpus.sample_document(rng))
        size = len(doc.token_ids)
        starts = np.unique(np.concatenate([[0], np.asarray(doc.sentence_starts, dtype=np.int64)]))
        first = int(starts[rng.integers(starts.size)])
        fitting = starts[starts <= size - self.budget]  # starts from which a full chunk fits
        first = min(first, int(fitting[-1]) if fitting.size else 0)
        end = min(first + self.budget, size)
        sentence_starts = starts[(starts >= first) & (starts < end)] - first
        words = np.asarray(doc.word_starts[first:end])
        return np.asarray(doc.token_ids[first:end], dtype=np.int64), sentence_starts, words

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        t = self.tokens
        text, sentence_starts, word_starts = self.chunk(rng)
        noised = noise(text, sentence_starts, word_starts, self.objective, rng, t.mask)
        # Inserted masks can make the source longer than the text: keep </s> at the end.
        noised = noised[:self.encoder_length - 2]
        source = np.concatenate([[t.bos], noised, [t.eos]]).astype(np.int64)
        target = np.concatenate([[t.bos], text, [t.eos]]).astype(np.int64)
        decoder_input = np.concatenate([[t.eos], target[:-1]])
        enc_pad, dec_pad = self.encoder_length - source.size, self.decoder_length - target.size
        return {
            "input_ids": np.pad(source, (0, enc_pad), constant_values=t.pad),
            "attention_mask": np.pad(np.ones(source.size, dtype=np.int64), (0, enc_pad)),
            "decoder_input_ids": np.pad(decoder_input, (0, dec_pad), constant_values=t.pad),
            "labels": np.pad(target, (0, dec_pad), constant_values=IGNORE_INDEX),
        }
