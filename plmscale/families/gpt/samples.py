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


class PackedStream:
    """``documents`` (corpus indices, in this order; None = all, in corpus order) of ``lengths``
    tokens, each followed by EOS, as one token sequence that wraps around at its end."""

    def __init__(self, corpus: Corpus, eos: int, documents: np.ndarray | None = None,
                 lengths: np.ndarray | None = None):
        self.corpus, self.eos = corpus, eos
        self.documents = np.arange(len(corpus)) if documents is None else documents
        if lengths is None:
            lengths = np.array([len(corpus.document(int(i)).token_ids) for i in self.documents],
                               dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths + 1)])  # +1: the EOS after each
        self.total = int(self.offsets[-1])

    def read(self, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokens [start, start + length) of the stream, wrapping around its end, and each one's
        document number (0 for the first document read, 1 for the next, ...)."""
        out, numbers, position = [], [], start % self.total
        while length > 0:
            k = int(np.searchsorted(self.offsets, position, side="right")) - 1
            tokens = np.append(self.corpus.document(int(self.documents[k])).token_ids, self.eos)
            piece = tokens[position - self.offsets[k]:][:length]
            out.append(piece)
            numbers.append(np.full(len(piece), len(numbers), dtype=np.int64))
            length -= len(piece)
            position = (position + len(piece)) % self.total
        return np.concatenate(out).astype(np.int64), np.concatenate(numbers)


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
        self.lengths = lengths[self.documents]
        total = int(self.lengths.sum()) + len(self.documents)  # + a separator each
        self.windows_per_epoch = (total - 1) // self.seq_length
        if self.windows_per_epoch < 1:
            raise ValueError(f"the corpus holds {total} tokens (with separators), fewer than one "
                             f"window of data.seq_length + 1 = {self.seq_length + 1}")
        self._epochs: OrderedDict[int, tuple] = OrderedDict()

    def _epoch(self, epoch: int):
        """(document order, its ``PackedStream``, window order) of ``epoch``, cached (a few)."""
        if epoch not in self._epochs:
            rng = np.random.default_rng([self.seed, epoch, 0x6770])
            order = rng.permutation(len(self.documents))
            stream = PackedStream(self.corpus, self.eos, self.documents[order], self.lengths[order])
            self._epochs[epoch] = (order, stream, rng.permutation(self.windows_per_epoch))
            if len(self._epochs) > 2:  # data workers move forward through epochs
                self._epochs.popitem(last=False)
        return self._epochs[epoch]

    def window(self, epoch: int, window: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokens of window ``window`` (in stream order) of ``epoch`` and each one's document number
        (counted from the window's first document)."""
        return self._epoch(epoch)[1].read(window * self.seq_length, self.seq_length + 1)

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        epoch, j = divmod(int(index), self.windows_per_epoch)
        tokens, documents = self.window(epoch, int(self._epoch(epoch)[2][j]))
        sample = {"input_ids": tokens[:-1], "labels": tokens[1:]}
        if self.with_documents:
            sample["document_ids"] = documents[:-1]
        return sample
