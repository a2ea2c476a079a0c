"""ALBERT SOP pairs on real shards: 50/50 order labels, negatives are exactly the two consecutive
segments swapped, segment types and lengths; n-gram masking predicts whole words."""

import numpy as np
import pytest

from plmscale.config import load_config
from plmscale.data import Corpus
from plmscale.families.albert.samples import AlbertSamples

SEQ = 64


@pytest.fixture(scope="module")
def corpus(demo_shards):
    return Corpus(demo_shards)


def _samples(corpus, *overrides):
    cfg = load_config(None, ["model.preset=albert-tiny", f"data.seq_length={SEQ}",
                             "objective.sentence_order_prediction=true", *overrides])
    return AlbertSamples(corpus, corpus.tokens, cfg.data, cfg.objective, cfg.train.seed)


def _original(sample):
    return np.where(sample["mlm_labels"] != -100, sample["mlm_labels"], sample["input_ids"])


def test_sop_pairs_are_consecutive_segments_swapped_half_the_time(corpus):
    samples, t = _samples(corpus, "objective.masking=token"), corpus.tokens
    labels = []
    for i in range(1000):
        doc, (a0, a1), (b0, b1) = samples.segments(np.random.default_rng([samples.seed, i]))
        assert a0 < a1 == b0 < b1 and b1 - a0 <= SEQ - 3  # adjacent, non-empty, fit
        tokens = corpus.document(doc).token_ids
        a, b = tokens[a0:a1], tokens[b0:b1]
        sample = samples(i)
        label = int(sample["sentence_order_label"])
        first, second = (b, a) if label else (a, b)  # 1 = swapped (HF's sentence_order_label)
        expected = np.concatenate([[t.cls], first, [t.sep], second, [t.sep]])
        n = len(expected)
        assert (_original(sample)[:n] == expected).all()
        assert (sample["input_ids"][n:] == t.pad).all() and sample["attention_mask"].sum() == n
        types = np.r_[np.zeros(len(first) + 2), np.ones(len(second) + 1), np.zeros(SEQ - n)]
        assert (sample["token_type_ids"] == types).all()
        labels.append(label)
    assert np.mean(labels) == pytest.approx(0.5, abs=0.05)  # 1000 draws: sd 0.016


def test_without_sop_segments_keep_their_order(corpus):
    samples = _samples(corpus, "objective.sentence_order_prediction=false")
    for i in range(50):
        doc, (a0, a1), (b0, b1) = samples.segments(np.random.default_rng([samples.seed, i]))
        sample = samples(i)
        assert "sentence_order_label" not in sample
        tokens = corpus.document(doc).token_ids
        assert (_original(sample)[1:1 + a1 - a0] == tokens[a0:a1]).all()


def test_ngram_masking_takes_whole_words(corpus):
    samples = _samples(corpus, "objective.masking=ngram", "objective.max_ngram=3")
    assert samples.objective.masking == "ngram"
    labelled = eligible = 0
    for i in range(200):
        doc, (a0, a1), (b0, b1) = samples.segments(np.random.default_rng([samples.seed, i]))
        sample = samples(i)
        label = int(sample["sentence_order_label"])
        flags = corpus.document(doc).word_starts
        starts = [flags[a0:a1].copy(), flags[b0:b1].copy()]
        for f in starts:
            f[0] = 1
        first, second = (starts[1], starts[0]) if label else (starts[0], starts[1])
        word_start = np.concatenate([[1], first, [1], second, [1]]).astype(bool)
        n = len(word_start)
        chosen = sample["mlm_labels"][:n] != -100
        # A masked run starts at a word start and the token after it starts a new word.
        after = np.r_[word_start[1:], True]
        run_start = chosen & ~np.r_[False, chosen[:-1]]
        run_end = chosen & ~np.r_[chosen[1:], False]
        assert word_start[run_start].all() and after[run_end].all()
        labelled += chosen.sum()
        eligible += n - 3
    assert labelled / eligible == pytest.approx(0.15, abs=0.02)
