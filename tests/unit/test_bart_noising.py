"""BART noising statistics over many draws (synthetic sequences and real shards), and the layout of
BART samples."""

import numpy as np
import pytest

from plmscale.config import DataConfig, ObjectiveConfig
from plmscale.data import Corpus
from plmscale.families.bart.samples import BartSamples
from plmscale.objectives.bart_noising import (document_rotation, noise, sentence_permutation,
                                              text_infilling, token_deletion, token_masking)

MASK = 1
TEXT = np.arange(1000, 1400)  # 400 distinct "tokens", none equal to MASK


# -- text infilling ---------------------------------------------------------------------------
def infilling_span_lengths(poisson_lambda: float, draws: int, seed: int = 0) -> np.ndarray:
    """Span lengths of many infilling draws, each draw checked against its own span list."""
    rng = np.random.default_rng(seed)
    lengths = []
    for _ in range(draws):
        noised, spans = text_infilling(TEXT, 0.3, poisson_lambda, rng, MASK, return_spans=True)
        assert (spans[1:, 0] >= spans[:-1, 1]).all(), "spans overlap"
        # Rebuild the output from the reported spans: each span (empty ones included) -> ONE mask.
        pieces, cursor = [], 0
        for start, end in spans:
            pieces += [TEXT[cursor:start], [MASK]]
            cursor = end
        pieces.append(TEXT[cursor:])
        assert np.array_equal(noised, np.concatenate(pieces))
        lengths.append(spans[:, 1] - spans[:, 0])
    return np.concatenate(lengths)


def poisson_chi_square(lengths: np.ndarray, lam: float, top: int = 10) -> float:
    """Pearson's statistic of the length histogram against Poisson(lam), bins 0..top-1 and >= top."""
    from math import exp, factorial
    pmf = np.array([exp(-lam) * lam ** k / factorial(k) for k in range(top)])
    expected = np.append(pmf, 1 - pmf.sum()) * lengths.size
    observed = np.bincount(np.minimum(lengths, top), minlength=top + 1)
    return float(((observed - expected) ** 2 / expected).sum())


# Chi-square critical value for 11 bins - 1 = 10 degrees of freedom at significance 0.001
# (standard tables: 29.588). No parameter is estimated from the data (lambda is given).
CHI2_10DF_P001 = 29.588


def test_infilling_span_lengths_are_poisson_3():
    lengths = infilling_span_lengths(3.0, draws=600)
    assert lengths.size > 20_000  # 600 draws x ~40 spans; expected count of the >= 10 bin ~ 26
    assert poisson_chi_square(lengths, 3.0) < CHI2_10DF_P001
    assert lengths.mean() == pytest.approx(3.0, abs=0.05)
    assert (lengths == 0).any()  # zero-length spans exist and were checked to insert one mask


def test_chi_square_rejects_a_wrong_lambda():
    """The statistic has power: lengths from Poisson(2.7) fail against Poisson(3)."""
    assert poisson_chi_square(infilling_span_lengths(2.7, draws=600), 3.0) > CHI2_10DF_P001


def test_infilling_noises_30_percent_of_tokens():
    rng = np.random.default_rng(1)
    noised = 0
    for _ in range(2000):
        _, spans = text_infilling(TEXT, 0.3, 3.0, rng, MASK, return_spans=True)
        noised += int((spans[:, 1] - spans[:, 0]).sum())
    assert noised / (2000 * TEXT.size) == pytest.approx(0.30, abs=0.005)


def test_infilling_in_words_on_real_text(corpus):
    """With word starts, spans cover whole words and ~30% of the tokens."""
    rng = np.random.default_rng(2)
    noised = total = 0
    for index in range(300):
        doc = corpus.document(corpus.sample_document(rng))
        tokens, words = np.asarray(doc.token_ids[:256]), np.asarray(doc.word_starts[:256])
        _, spans = text_infilling(tokens, 0.3, 3.0, rng, MASK, words, return_spans=True)
        word_bounds = set(np.flatnonzero(words)) | {0, tokens.size}
        assert all(int(s) in word_bounds and int(e) in word_bounds for s, e in spans)
        noised += int((spans[:, 1] - spans[:, 0]).sum())
        total += tokens.size
    assert noised / total == pytest.approx(0.30, abs=0.015)


# -- token masking / deletion -----------------------------------------------------------------
@pytest.mark.parametrize("ratio", [0.1, 0.3])
def test_token_masking_and_deletion_rates(ratio):
    rng = np.random.default_rng(3)
    masked = deleted = 0
    draws = 2000
    for _ in range(draws):
        out = token_masking(TEXT, ratio, rng, MASK)
        assert out.size == TEXT.size and ((out == MASK) | (out == TEXT)).all()
        masked += int((out == MASK).sum())
        kept = token_deletion(TEXT, ratio, rng, MASK)
        assert np.isin(kept, TEXT).all() and (np.diff(kept) > 0).all()  # an ordered subsequence
        deleted += TEXT.size - kept.size
    assert masked / (draws * TEXT.size) == pytest.approx(ratio, abs=0.005)
    assert deleted / (draws * TEXT.size) == pytest.approx(ratio, abs=0.005)


def test_masking_and_deletion_leave_infilling_masks_alone():
    rng = np.random.default_rng(4)
    tokens = np.where(np.arange(TEXT.size) % 10 == 0, MASK, TEXT)
    assert (token_deletion(tokens, 0.5, rng, MASK) == MASK).sum() == (tokens == MASK).sum()
    out = token_masking(tokens, 0.5, rng, MASK)
    assert (out == MASK).sum() == (tokens == MASK).sum() + 180  # 50% of the 360 others


# -- reordering -------------------------------------------------------------------------------
def split(tokens, starts):
    bounds = list(starts) + [len(tokens)]
    return [tuple(tokens[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def test_sentence_permutation_is_a_permutation_of_the_sentences(corpus):
    rng = np.random.default_rng(5)
    reordered = orders = 0
    for _ in range(300):
        doc = corpus.document(corpus.sample_document(rng))
        starts = np.asarray(doc.sentence_starts)[:20]  # the first 20 sentences keep it quick
        if starts.size < 2:
            continue
        tokens = np.asarray(doc.token_ids[:int(starts[-1])])
        starts = starts[:-1]
        sentences = split(tokens, starts)
        out = sentence_permutation(tokens, starts, rng)
        # Cut the output where its sentences must be, in the order they appear.
        pieces, cursor = [], 0
        remaining = sorted(sentences)
        while cursor < out.size:
            match = [s for s in set(remaining) if tuple(out[cursor:cursor + len(s)]) == s]
            assert match, "output is not made of the input's sentences"
            piece = max(match, key=len)
            remaining.remove(piece)
            pieces.append(piece)
            cursor += len(piece)
        assert sorted(pieces) == sorted(sentences) and not remaining
        orders += 1
        reordered += pieces != sentences
    assert orders > 50 and reordered / orders > 0.5


def test_sentence_permutation_orders_are_uniform():
    rng = np.random.default_rng(6)
    tokens, starts = np.arange(30), np.array([0, 10, 20])
    counts = {}
    for _ in range(6000):
        first = tuple(sentence_permutation(tokens, starts, rng)[[0, 10, 20]])
        counts[first] = counts.get(first, 0) + 1
    assert len(counts) == 6 and all(abs(c - 1000) < 120 for c in counts.values())


def test_rotation_keeps_every_token_in_cyclic_order():
    rng = np.random.default_rng(7)
    offsets = []
    for _ in range(3000):
        out = document_rotation(TEXT[:50], rng)
        offset = int(np.flatnonzero(out == TEXT[0])[0])
        assert np.array_equal(np.roll(out, -offset), TEXT[:50])  # same tokens, same cycle
        offsets.append((50 - offset) % 50)
    counts = np.bincount(offsets, minlength=50)
    assert counts[0] == 0 and counts[1:].min() > 25  # a real rotation, every start possible


# -- composition and samples --------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(demo_shards):
    return Corpus(demo_shards)


def test_default_noise_is_infilling_plus_permutation(corpus):
    o = ObjectiveConfig()
    assert (o.infilling_ratio, o.poisson_lambda, o.permute_sentences, o.rotate_document,
            o.token_masking_ratio, o.token_deletion_ratio) == (0.3, 3.0, True, False, 0.0, 0.0)
    rng = np.random.default_rng(8)
    tokens = np.arange(1000, 1100)
    out = noise(tokens, np.array([0, 30, 60]), None, o, rng, MASK)
    kept = out[out != MASK]
    assert np.unique(kept).size == kept.size and np.isin(kept, tokens).all()
    assert 60 <= kept.size <= 80  # ~30% noised
    # Without permutation, infilling alone keeps the untouched tokens in order.
    plain = noise(tokens, np.array([0, 30, 60]), None, ObjectiveConfig(permute_sentences=False),
                  rng, MASK)
    assert (np.diff(plain[plain != MASK]) > 0).all()
    every = ObjectiveConfig(token_masking_ratio=0.1, token_deletion_ratio=0.1, rotate_document=True)
    out = noise(tokens, np.array([0, 30, 60]), None, every, rng, MASK)
    assert 40 <= (out != MASK).sum() <= 75


def test_samples_layout_and_purity(corpus):
    t = corpus.tokens
    samples = BartSamples(corpus, t, DataConfig(seq_length=128), ObjectiveConfig(), seed=3)
    unordered = BartSamples(corpus, t, DataConfig(seq_length=128),
                            ObjectiveConfig(permute_sentences=False), seed=3)
    full = 0
    for index in range(200):
        s = samples(index)
        assert all(v.shape == (128,) for v in s.values())
        n_src, n_tgt = int(s["attention_mask"].sum()), int((s["labels"] != -100).sum())
        src, tgt = s["input_ids"][:n_src], s["labels"][:n_tgt]
        assert src[0] == t.bos and src[-1] == t.eos and (s["input_ids"][n_src:] == t.pad).all()
        assert tgt[0] == t.bos and tgt[-1] == t.eos and (s["labels"][n_tgt:] == -100).all()
        assert not np.isin(tgt[1:-1], [t.pad, t.bos, t.eos, t.mask]).any()  # plain text
        assert s["decoder_input_ids"][0] == t.eos
        assert np.array_equal(s["decoder_input_ids"][1:n_tgt], tgt[:-1])
        assert (s["decoder_input_ids"][n_tgt:] == t.pad).all()
        assert (src == t.mask).any()
        full += n_tgt == 128
        u = unordered(index)
        kept = u["input_ids"][1:int(u["attention_mask"].sum()) - 1]
        kept = kept[kept != t.mask]
        target = list(u["labels"][1:int((u["labels"] != -100).sum()) - 1])
        cursor = 0  # infilling alone: the source's text is a subsequence of the target
        for token in kept:
            cursor = target.index(token, cursor) + 1
    assert full > 150  # chunks are filled, not cut short at the document end
    a, b = samples(17), samples(17)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(samples(18)["input_ids"], a["input_ids"])
