"""Training-side view of the shards that ``data_prep encode`` writes: memory-mapped, checked against
the manifest, with length-weighted document sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from data_prep.shards import ShardedCorpus, ShardError

from plmscale.data.tokenizer import SpecialTokens


class Corpus:
    """A ``data_prep`` shard directory plus its tokenizer's special ids."""

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
        lengths = np.array([len(self.shards.document(i).token_ids) for i in range(len(self.shards))],
                           dtype=np.int64)
        self._usable = np.flatnonzero(lengths > 0)
        if self._usable.size == 0:
            raise ValueError(f"{directory} holds no non-empty document")
        # Longer documents are picked proportionally more often, so every token is equally likely.
        self._cumulative = np.cumsum(lengths[self._usable])

    def __len__(self) -> int:
        return len(self.shards)

    def document(self, index: int):
        return self.shards.document(index)

    def sample_document(self, rng: np.random.Generator, exclude: int | None = None) -> int:
        """A document index drawn proportionally to length (another one than ``exclude`` if any)."""
        for _ in range(16):
            token = int(rng.integers(self._cumulative[-1]))
            doc = int(self._usable[np.searchsorted(self._cumulative, token, side="right")])
            if doc != exclude or self._usable.size == 1:
                return doc
        return doc
