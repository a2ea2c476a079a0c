"""Weighted data mixtures (Megatron's ``--data-path 0.3 a 0.7 b``) and T5-style task prefixes.

Global sample ``i`` comes from the source that a seeded 64-bit hash of ``i`` picks with the
normalised weights; it is that source's ``n``-th sample, ``n`` = how many earlier global samples
the hash gave the same source, so each source reads its own stream in order (T5's epochs stay
epochs). Both are pure functions of ``(seed, i)``: any DP size and any resume position see the same
stream. The ordinals are counted per block of ``BLOCK`` indices and the per-block counts cached, so
starting far into the stream costs one pass of vectorised hashing, not a replay of the samples.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

BLOCK = 1 << 16
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic): well-mixed 64-bit hashes."""
    with np.errstate(over="ignore"):
        x = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (x ^ (x >> np.uint64(31))) & _MASK


class Mixture:
    """``sample(i)`` over several sources' ``sample(n)`` functions, mixed with ``weights``."""

    def __init__(self, samplers: Sequence[Callable[[int], dict]], weights: Sequence[float],
                 seed: int):
        weights = np.asarray(weights, dtype=np.float64)
        self.samplers = list(samplers)
        self.cumulative = np.cumsum(weights / weights.sum())
        self.key = splitmix64(np.uint64(seed) ^ np.uint64(0x6D69787475726521))  # "mixture!"
        self._prefix = [np.zeros(len(self.samplers), dtype=np.int64)]  # counts before block b
        self._block = (-1, None, None)

    def sources_of(self, indices) -> np.ndarray:
        """The source index of each global sample index (vectorised)."""
        hashed = splitmix64(np.asarray(indices, dtype=np.uint64) ^ self.key)
        uniform = (hashed >> np.uint64(11)).astype(np.float64) * 2.0 ** -53  # [0, 1), 53 bits
        return np.minimum(np.searchsorted(self.cumulative, uniform, side="right"),
                          len(self.samplers) - 1)

    def counts(self, start: int, stop: int) -> np.ndarray:
        """How many of the global samples ``[start, stop)`` each source gives."""
        return np.bincount(self.sources_of(np.arange(start, stop, dtype=np.uint64)),
                           minlength=len(self.samplers))

    def _block_sources(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """(source, ordinal within the block among the same source) of the block's indices."""
        if self._block[0] != block:
            sources = self.sources_of(np.arange(block * BLOCK, (block + 1) * BLOCK,
                                                dtype=np.uint64))
            ordinals = np.empty(BLOCK, dtype=np.int64)
            for s in range(len(self.samplers)):
                where = np.flatnonzero(sources == s)
                ordinals[where] = np.arange(where.size)
            self._block = (block, sources, ordinals)
        return self._block[1], self._block[2]

    def locate(self, index: int) -> tuple[int, int]:
        """(source, that source's sample number) of global sample ``index``."""
        block, offset = divmod(int(index), BLOCK)
        while len(self._prefix) <= block:
            b = len(self._prefix) - 1
            self._prefix.append(self._prefix[-1] + self.counts(b * BLOCK, (b + 1) * BLOCK))
        sources, ordinals = self._block_sources(block)
        source = int(sources[offset])
        return source, int(self._prefix[block][source] + ordinals[offset])

    def __call__(self, index: int) -> dict:
        source, number = self.locate(index)
        return self.samplers[source](number)


class Prefixed:
    """A text-to-text source whose encoder input starts with a task prefix (T5's "summarize: ").

    ``inner`` builds samples with an encoder length shortened by the prefix; the prefix goes before
    ``input_ids`` and is attended (``attention_mask`` 1), so the encoder length, and every other
    array, match the unprefixed sources' and the samples stack into one batch."""

    def __init__(self, inner: Callable[[int], dict], prefix_ids: np.ndarray):
        self.inner, self.prefix = inner, np.asarray(prefix_ids, dtype=np.int64)

    def __call__(self, index: int) -> dict:
        sample = dict(self.inner(index))
        sample["input_ids"] = np.concatenate([self.prefix, sample["input_ids"]])
        sample["attention_mask"] = np.concatenate([np.ones(len(self.prefix), np.int64),
                                                   sample["attention_mask"]])
        return sample
