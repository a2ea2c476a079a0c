"""T5 span corruption: statistics over many draws, sentinel order, exact reconstruction, and the
length arithmetic that makes corrupted samples exactly fill the encoder/decoder lengths."""

import numpy as np
import pytest

from plmscale.config import DataConfig, ObjectiveConfig
from plmscale.data import Corpus
from plmscale.families.t5.samples import IGNORE_INDEX, T5Samples, permute
from plmscale.objectives.span_corruption import (corrupted_lengths, random_spans_noise_mask,
                                                 raw_length, reconstruct, span_corrupt)

SENTINELS = np.arange(32000, 32100)[::-1]  # any ids outside the token range
EOS = 1


def test_raw_length_matches_t5_reference_values():
    # T5's random_spans_helper for inputs_length=512 (density 0.15, mean 3): 568 raw, 114 targets.
    assert raw_length(512, 0.15, 3.0) == 568
    assert corrupted_lengths(568, 0.15, 3.0) == (512, 114)
    for inputs in range(8, 700):
        n = raw_length(inputs, 0.15, 3.0)
        assert corrupted_lengths(n, 0.15, 3.0)[0] == inputs  # fills the input exactly
        assert corrupted_lengths(n + 1, 0.15, 3.0)[0] > inputs  # and is the longest that does
    n = raw_length(512, 0.15, 3.0, targets_length=100)  # a binding decoder length
    assert corrupted_lengths(n, 0.15, 3.0)[1] <= 100 < corrupted_lengths(n + 1, 0.15, 3.0)[1]


def test_noise_statistics_over_many_draws():
    rng = np.random.default_rng(0)
    noise = total = spans = 0
    span_lengths = []
    position_hits = np.zeros(568)
    for draw in range(3000):
        length = int(rng.integers(100, 569)) if draw % 2 else 568
        mask = random_spans_noise_mask(length, 0.15, 3.0, rng)
        assert len(mask) == length and not mask[0]  # the sequence starts with non-noise
        starts = np.flatnonzero(mask & ~np.r_[False, mask[:-1]])
        ends = np.flatnonzero(mask & ~np.r_[mask[1:], False]) + 1
        span_lengths.extend(ends - starts)
        noise += int(mask.sum())
        total += length
        spans += len(starts)
        if length == 568:
            position_hits += mask
    assert noise / total == pytest.approx(0.15, abs=0.005)
    assert noise / spans == pytest.approx(3.0, rel=0.05)
    # Span lengths vary (a random composition), they are not all equal to the mean.
    assert np.mean(np.asarray(span_lengths) == 3) < 0.5 and max(span_lengths) >= 8
    # Noise falls everywhere except the first token, not in a fixed place.
    assert (position_hits[1:] > 0).all()


def test_corrupt_and_reconstruct():
    rng = np.random.default_rng(1)
    for _ in range(500):
        length = int(rng.integers(10, 600))
        tokens = rng.integers(100, 30000, length)
        mask = random_spans_noise_mask(length, 0.15, 3.0, rng)
        inputs, targets = span_corrupt(tokens, mask, SENTINELS, EOS)
        assert (len(inputs), len(targets)) == corrupted_lengths(length, 0.15, 3.0)
        assert inputs[-1] == EOS and targets[-1] == EOS
        k = int((mask & ~np.r_[False, mask[:-1]]).sum())
        # Sentinels appear in order <extra_id_0>, <extra_id_1>, ... in both.
        assert inputs[np.isin(inputs, SENTINELS)].tolist() == SENTINELS[:k].tolist()
        assert targets[np.isin(targets, SENTINELS)].tolist() == SENTINELS[:k].tolist()
        assert targets[0] == SENTINELS[0]
        assert np.array_equal(reconstruct(inputs, targets, SENTINELS, EOS), tokens)


@pytest.fixture(scope="module")
def corpus(demo_shards):
    return Corpus(demo_shards)


def make(corpus, seed=5, **data):
    return T5Samples(corpus, DataConfig(seq_length=128, **data), ObjectiveConfig(), seed)


def test_samples_fill_exactly_and_reconstruct_the_stream(corpus):
    samples = make(corpus)
    tokens = corpus.tokens
    assert samples.targets_length == corrupted_lengths(samples.raw_length, 0.15, 3.0)[1]
    noise = raw = 0
    for index in range(400):
        s = samples(index)
        assert s["input_ids"].shape == (128,) and s["attention_mask"].all()  # no padding needed
        assert s["labels"].shape == s["decoder_input_ids"].shape == (samples.targets_length,)
        assert s["decoder_attention_mask"].all() and (s["labels"] != IGNORE_INDEX).all()
        # Teacher forcing: the decoder input is the target shifted right behind PAD.
        assert s["decoder_input_ids"][0] == tokens.pad
        assert np.array_equal(s["decoder_input_ids"][1:], s["labels"][:-1])
        original, _ = samples.stream.read(samples._start(index), samples.raw_length)
        rebuilt = reconstruct(s["input_ids"], s["labels"], samples.sentinels, tokens.eos)
        assert np.array_equal(rebuilt, original)
        in_targets = ~np.isin(s["labels"], samples.sentinels)
        noise += int(in_targets.sum()) - 1  # minus the final EOS
        raw += len(original)
    assert noise / raw == pytest.approx(0.15, abs=0.005)


def test_samples_are_pure_functions_of_seed_and_index(corpus):
    a, b, other = make(corpus), make(corpus), make(corpus, seed=6)
    for index in (0, 7, 123_456):
        for key, value in a(index).items():
            assert np.array_equal(value, b(index)[key])
    assert not np.array_equal(a(7)["input_ids"], other(7)["input_ids"])
    assert not np.array_equal(a(7)["input_ids"], a(8)["input_ids"])


def test_an_epoch_visits_every_chunk_once(corpus):
    samples = make(corpus)
    starts = [samples._start(i) for i in range(samples.chunks)]
    shift = starts[0] % samples.raw_length
    assert sorted((s - shift) // samples.raw_length for s in starts) == list(range(samples.chunks))
    next_epoch = [samples._start(samples.chunks + i) for i in range(50)]
    assert next_epoch != starts[:50]  # a new order (and offset) every epoch
    for size in (1, 2, 3, 17, 1000):
        assert sorted(permute(i, size, 99) for i in range(size)) == list(range(size))


def test_decoder_length_longer_or_binding(corpus):
    longer = make(corpus, decoder_seq_length=40)(3)
    assert longer["labels"].shape == (40,) and (longer["labels"][-3:] == IGNORE_INDEX).all()
    assert longer["decoder_attention_mask"].sum() == (longer["labels"] != IGNORE_INDEX).sum()
    binding = make(corpus, decoder_seq_length=16)
    s = binding(3)
    assert s["labels"].shape == (16,) and s["input_ids"].shape == (128,)
    assert s["attention_mask"].sum() < 128  # the decoder limits the raw length; inputs get padding
