"""Training-side view of the shards that ``data_prep encode`` writes: memory-mapped, checked against
the manifest, with length-weighted document sampling, and a held-out split of whole documents."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
from data_prep.shards import ShardedCorpus, ShardError

from plmscale.data.tokenizer import SpecialTokens


HOLDOUT_SEED = 20_240_917
"""Fixed, so a held-out split is the same for every run (and seed) of the same shards."""


class Corpus:
    """A ``data_prep`` shard directory plus its tokenizer's special ids; ``subset`` and
    ``held_out_split`` give views of some of its documents, renumbered from 0."""

    def __init__(self, directory: str | Path, verify: bool = True):
        directory = Path(directory)
        if not (directory / "manifest.json").is_file():
            raise FileNotFoundError(
                f"{directory} holds no manifest.json: point data.path at the output directory of "
                f"`python -m data_prep encode` (bash launch/demo.sh shows the two commands)")
        self.shards = ShardedCorpus(directory, verify=verify)
        self.tokens = SpecialTokens.from_model(self.shards.tokenizer_path)
        if self.shards.max_token_id() >= self.tokens.vocab_size:
            raise ShardError(
                f"{directory}: token id {self.shards.max_token_id()} in the shards, but the "
                f"tokenizer {self.shards.tokenizer_path} has only {self.tokens.vocab_size} pieces: "
                f"the shards were encoded with another tokenizer; re-run `python -m data_prep "
                f"encode` with this tokenizer")
        self.directory = directory
        self._lengths = np.array([len(self.shards.document(i).token_ids)
                                  for i in range(len(self.shards))], dtype=np.int64)
        self._select(np.arange(len(self.shards)), "")

    def _select(self, ids: np.ndarray, what: str) -> None:
        self._ids = np.asarray(ids, dtype=np.int64)
        lengths = self._lengths[self._ids]
        self._usable = np.flatnonzero(lengths > 0)
        if self._usable.size == 0:
            raise ValueError(f"{self.directory}{what} holds no non-empty document")
        # Longer documents are picked proportionally more often, so every token is equally likely.
        self._cumulative = np.cumsum(lengths[self._usable])

    def __len__(self) -> int:
        return len(self._ids)

    def document(self, index: int):
        return self.shards.document(int(self._ids[index]))

    def subset(self, ids, what: str = "") -> "Corpus":
        """A view of the documents ``ids`` (indices of this view), renumbered 0..len(ids)-1."""
        view = copy.copy(self)
        view._select(self._ids[np.asarray(ids, dtype=np.int64)], what)
        return view

    def held_out_split(self, fraction: float) -> tuple["Corpus", "Corpus"]:
        """(training view, held-out view): ``round(fraction * documents)`` documents (at least one)
        drawn with a fixed seed are held out; training never sees them."""
        n = len(self)
        if n < 2:
            raise ValueError(f"{self.directory} holds {n} document(s); data.valid_fraction needs at "
                             f"least two to hold one out: set data.valid_path to a separate shard "
                             f"directory instead")
        count = min(max(round(fraction * n), 1), n - 1)
        held = np.zeros(n, dtype=bool)
        held[np.random.default_rng(HOLDOUT_SEED).permutation(n)[:count]] = True
        return (self.subset(np.flatnonzero(~held), " (training part)"),
                self.subset(np.flatnonzero(held), " (held-out part)"))

    def sample_document(self, rng: np.random.Generator, exclude: int | None = None) -> int:
        """A document index drawn proportionally to length (another one than ``exclude`` if any)."""
        for _ in range(16):
            token = int(rng.integers(self._cumulative[-1]))
            doc = int(self._usable[np.searchsorted(self._cumulative, token, side="right")])
            if doc != exclude or self._usable.size == 1:
                return doc
        return doc
