"""GPT pretraining samples: documents packed into one token stream, cut into fixed windows.

Per epoch, documents are concatenated in a seeded random order, each followed by the eos token
(``</s>``); the stream is cut at multiples of ``seq_length`` into windows of ``seq_length + 1`` tokens
(consecutive windows share one token, so every token of the stream is a target exactly once per
epoch), and the windows are visited in a seeded random order. Sample ``i`` is window
``order_e[i mod n]`` of epoch ``e = i // n``: a pure function of (seed, i), for any number of ranks
and across resumes.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from plmscale.config.schema import DataConfig, ObjectiveConfig
from plmscale.data.corpus import Corpus
from plmscale.data.tokenizer import SpecialTokens


class GPTSamples:
    """``input_ids = w[:-1]``, ``labels = w[1:]`` of a packed window ``w``; with
    ``objective.reset_attention_at_document_boundary`` also ``document_ids`` (0, 1, ... per token,
    a separator belonging to the document it ends) for the model's document attention mask."""

    def __init__(self, corpus: Corpus, tokens: SpecialTokens, data: DataConfig,
                 objective: ObjectiveConfig, seed: int):
        self.corpus, self.eos, self.seed = corpus, tokens.eos, seed
        self.seq_length = data.seq_length
        self.with_documents = objective.reset_attention_at_document_boundary
        lengths = np.array([len(corpus.document(i).token_ids) for i in range(len(corpus))],
                           dtype=np.int64)
        self.documents = np.flatnonzero(lengths > 0)
        self.stream_lengths = lengths[self.documents] + 1  # + the separator
        total = int(self.stream_lengths.sum())
        self.windows_per_epoch = (total - 1) // self.seq_length
        if self.windows_per_epoch < 1:
            raise ValueError(f"the corpus holds {total} tokens (with separators), fewer than one "
                             f"window of data.seq_length + 1 = {self.seq_length + 1}")
        self._epochs: OrderedDict[int, tuple] = OrderedDict()

    def _epoch(self, epoch: int):
        """(document order, stream end offsets, window order) of ``epoch``, cached (a few)."""
        if epoch not in self._epochs:
            rng = np.random.default_rng([self.seed, epoch, 0x6770])
            order = rng.permutation(len(self.documents))
            ends = np.cumsum(self.stream_lengths[order])
            self._epochs[epoch] = (order, ends, rng.permutation(self.windows_per_epoch))
            if len(self._epochs) > 2:  # data workers move forward through epochs
                self._epochs.popitem(last=False)
        return self._epochs[epoch]

    def window(self, epoch: int, window: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokens of window ``window`` (in stream order) of ``epoch`` and each one's document number
        (counted from the window's first document)."""
        order, ends, _ = self._epoch(epoch)
        start = window * self.seq_length
        stop = start + self.seq_length + 1
        k = int(np.searchsorted(ends, start, side="right"))
        pieces, documents, position = [], [], start
        while position < stop:
            slot = order[k]
            doc_start = int(ends[k] - self.stream_lengths[slot])
            text = self.corpus.document(int(self.documents[slot])).token_ids
            a, b = position - doc_start, min(stop, int(ends[k])) - doc_start
            piece = np.append(text[a:min(b, len(text))].astype(np.int64),
                              [self.eos] if b > len(text) else [])
            pieces.append(piece.astype(np.int64))
            documents.append(np.full(len(piece), len(documents), dtype=np.int64))
            position += len(piece)
            k += 1
        return np.concatenate(pieces), np.concatenate(documents)

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        epoch, j = divmod(int(index), self.windows_per_epoch)
        tokens, documents = self.window(epoch, int(self._epoch(epoch)[2][j]))
        sample = {"input_ids": tokens[:-1], "labels": tokens[1:]}
        if self.with_documents:
            sample["document_ids"] = documents[:-1]
        return sample
