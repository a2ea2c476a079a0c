"""T5 span-corruption samples over the packed token stream (documents joined by EOS).

Sample ``i`` is a pure function of (seed, i): the stream is cut into chunks of the raw length that
exactly fills the encoder input after corruption; epoch ``e`` visits every chunk once in an order given
by a seeded bijection (no table of the size of the corpus), with chunk boundaries shifted by a seeded
offset per epoch; the noise spans are drawn from a generator seeded by (seed, i).
"""

from __future__ import annotations

import numpy as np

from plmscale.config.schema import DataConfig, ObjectiveConfig
from plmscale.data.corpus import Corpus
from plmscale.families.gpt.samples import PackedStream
from plmscale.objectives.span_corruption import (corrupted_lengths, noise_counts,
                                                 random_spans_noise_mask, raw_length,
                                                 span_corrupt)

from plmscale.objectives.masking import IGNORE_INDEX
MAX_SENTINELS = 100


def sentinel_ids(tokenizer_path) -> np.ndarray:
    """Ids of ``<extra_id_0>``, ``<extra_id_1>``, ... that the tokenizer has (in that order)."""
    from plmscale.data.tokenizer import piece_ids
    ids = []
    for token_id in piece_ids(tokenizer_path, [f"<extra_id_{i}>" for i in range(MAX_SENTINELS)]):
        if token_id is None:
            break
        ids.append(token_id)
    return np.asarray(ids, dtype=np.int64)


def _mix(x: int) -> int:
    """splitmix64 finaliser: a well-mixed 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def permute(index: int, size: int, key: int) -> int:
    """A seeded bijection of ``range(size)`` (4-round Feistel network with cycle walking), O(1) memory."""
    bits = max(2, (size - 1).bit_length())
    bits += bits % 2
    half, mask = bits // 2, (1 << (bits // 2)) - 1
    x = index
    while True:
        left, right = x >> half, x & mask
        for round_ in range(4):
            left, right = right, left ^ (_mix(key * 8 + round_ ^ (right << 3)) & mask)
        x = (left << half) | right
        if x < size:  # walk the cycle until it comes back into range (a permutation of [0, 2^bits))
            return x


class T5Samples:
    """``sample(i)`` -> input_ids / attention_mask [data.seq_length] and decoder_input_ids /
    decoder_attention_mask / labels [decoder length]; the decoder starts with PAD (T5's convention)."""

    def __init__(self, corpus: Corpus, data: DataConfig, objective: ObjectiveConfig, seed: int):
        self.tokens, self.seed = corpus.tokens, seed
        self.density, self.mean_span = objective.noise_density, objective.mean_noise_span_length
        self.raw_length = raw_length(data.seq_length, self.density, self.mean_span,
                                     data.decoder_seq_length)
        _, targets = corrupted_lengths(self.raw_length, self.density, self.mean_span)
        self.inputs_length = data.seq_length
        self.targets_length = data.decoder_seq_length or targets
        self.sentinels = sentinel_ids(corpus.shards.tokenizer_path)
        _, num_spans = noise_counts(self.raw_length, self.density, self.mean_span)
        if num_spans > len(self.sentinels):
            raise ValueError(f"data.seq_length={data.seq_length} gives {num_spans} noise spans but the "
                             f"tokenizer has {len(self.sentinels)} <extra_id_i> sentinels")
        self.stream = PackedStream(corpus, self.tokens.eos)
        self.chunks = max(self.stream.total // self.raw_length, 1)

    def _start(self, index: int) -> int:
        epoch, position = divmod(index, self.chunks)
        key = _mix(self.seed * 1_000_003 + epoch)
        shift = key % self.raw_length  # chunk boundaries move every epoch
        return permute(position, self.chunks, key) * self.raw_length + shift

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        raw, _ = self.stream.read(self._start(index), self.raw_length)
        mask = random_spans_noise_mask(len(raw), self.density, self.mean_span, rng)
        inputs, targets = span_corrupt(raw, mask, self.sentinels, self.tokens.eos)
        pad, n_in, n_out = self.tokens.pad, self.inputs_length, self.targets_length
        decoder_inputs = np.concatenate([[pad], targets[:-1]])
        return {
            "input_ids": np.pad(inputs, (0, n_in - len(inputs)), constant_values=pad),
            "attention_mask": np.pad(np.ones(len(inputs), np.int64), (0, n_in - len(inputs))),
            "decoder_input_ids": np.pad(decoder_inputs, (0, n_out - len(targets)),
                                        constant_values=pad),
            "decoder_attention_mask": np.pad(np.ones(len(targets), np.int64),
                                             (0, n_out - len(targets))),
            "labels": np.pad(targets, (0, n_out - len(targets)), constant_values=IGNORE_INDEX),
        }
