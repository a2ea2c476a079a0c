"""BERT's MLM statistics over many draws, on real shards: 15% of eligible tokens, 80/10/10, special
tokens never selected, a fresh mask per draw; and NSP pairs half true, half random."""

import numpy as np
import pytest

from plmscale.config import DataConfig, ObjectiveConfig
from plmscale.data import Corpus
from plmscale.families.bert.samples import BertSamples
from plmscale.objectives import IGNORE_INDEX, mask_tokens


@pytest.fixture(scope="module")
def samples(demo_shards):
    corpus = Corpus(demo_shards)
    return BertSamples(corpus, corpus.tokens, DataConfig(seq_length=128), ObjectiveConfig(), seed=3)


def test_mlm_rates_over_many_draws(samples):
    tokens = samples.tokens
    selected = eligible = masked = randomised = kept = 0
    for index in range(3000):
        s = samples(index)
        real = s["attention_mask"].astype(bool)
        chosen = s["mlm_labels"] != IGNORE_INDEX
        original = np.where(chosen, s["mlm_labels"], s["input_ids"])
        special = np.isin(original, tokens.special_ids)
        assert not (chosen & special).any(), "a special token was selected"
        assert not (chosen & ~real).any(), "padding was selected"
        eligible += int((real & ~special).sum())
        selected += int(chosen.sum())
        inputs, labels = s["input_ids"][chosen], s["mlm_labels"][chosen]
        masked += int((inputs == tokens.mask).sum())
        kept += int((inputs == labels).sum())
        randomised += int(((inputs != tokens.mask) & (inputs != labels)).sum())
    assert selected / eligible == pytest.approx(0.15, abs=0.005)
    assert masked / selected == pytest.approx(0.80, abs=0.02)
    # A random replacement can draw the original token (p ~ 1/vocab): it then counts as kept.
    assert randomised / selected == pytest.approx(0.10, abs=0.02)
    assert kept / selected == pytest.approx(0.10, abs=0.02)


def test_masking_is_dynamic_and_deterministic(samples):
    a, b = samples(11), samples(11)
    assert all(np.array_equal(a[k], b[k]) for k in a)  # same index -> same sample (resumable)
    masks = {tuple(np.flatnonzero(samples(i)["mlm_labels"] != IGNORE_INDEX)) for i in range(50)}
    assert len(masks) > 45  # new draws -> new masks


def test_nsp_pairs_are_balanced_and_well_formed(samples):
    t = samples.tokens
    labels = []
    for index in range(800):
        s = samples(index)
        n = int(s["attention_mask"].sum())
        ids, types = s["input_ids"][:n], s["token_type_ids"][:n]
        assert ids[0] == t.cls and ids[n - 1] == t.sep
        assert (s["input_ids"][n:] == t.pad).all()
        labels.append(int(s["next_sentence_label"]))
        if (types == 1).any():
            first_b = int(np.argmax(types == 1))
            assert ids[first_b - 1] == t.sep
    assert np.mean(labels) == pytest.approx(0.5, abs=0.06)


def test_mask_tokens_exact_rate_on_synthetic_input():
    rng = np.random.default_rng(0)
    tokens = np.arange(1000, 1200)
    eligible = np.ones(200, dtype=bool)
    eligible[:20] = False
    total = 0
    for _ in range(2000):
        corrupted, labels = mask_tokens(tokens, eligible, rng, mask_id=1,
                                        replacement_ids=np.arange(100, 200))
        assert (labels[:20] == IGNORE_INDEX).all() and (corrupted[:20] == tokens[:20]).all()
        total += int((labels != IGNORE_INDEX).sum())
    assert total / (2000 * 180) == pytest.approx(0.15, abs=0.002)
