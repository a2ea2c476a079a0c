"""GPT packed windows: a pure function of (seed, index), covering the eos-separated stream."""

import numpy as np
import pytest

from plmscale.config import load_config
from plmscale.data import Corpus
from plmscale.families.gpt.samples import GPTSamples


@pytest.fixture(scope="module")
def corpus(demo_shards):
    return Corpus(demo_shards, verify=False)


def samples(corpus, seed=1, seq=64, reset=False):
    cfg = load_config(None, ["model.preset=gpt-tiny", f"data.seq_length={seq}",
                             f"objective.reset_attention_at_document_boundary={reset}"])
    return GPTSamples(corpus, corpus.tokens, cfg.data, cfg.objective, seed)


def test_windows_tile_the_shuffled_stream(corpus):
    s = samples(corpus)
    windows = [s.window(0, w)[0] for w in range(s.windows_per_epoch)]
    assert all(len(w) == 65 for w in windows)
    stream = np.concatenate([windows[0]] + [w[1:] for w in windows[1:]])
    order, _, _ = s._epoch(0)
    eos = corpus.tokens.eos
    expected = np.concatenate([np.append(corpus.document(int(s.documents[o])).token_ids, eos)
                               for o in order])
    assert len(expected) - len(stream) < 64
    np.testing.assert_array_equal(stream, expected[:len(stream)])
    assert (stream == eos).sum() >= len(order) - 1  # every document is followed by the separator


def test_sample_is_pure_function_of_seed_and_index(corpus):
    a, b = samples(corpus), samples(corpus)
    n = a.windows_per_epoch
    for i in (0, 7, n - 1, n, n + 5, 3 * n + 2):  # in later epochs too, in any order
        x, y = a(i), b(i)
        np.testing.assert_array_equal(x["input_ids"], y["input_ids"])
        np.testing.assert_array_equal(x["input_ids"][1:], x["labels"][:-1])  # shifted by one
        assert x["input_ids"].shape == (64,) and x["input_ids"].dtype == np.int64
    visit = a._epoch(0)[2]
    np.testing.assert_array_equal(np.sort(visit), np.arange(n))  # every window once per epoch
    for j in (0, 1, n // 2):
        np.testing.assert_array_equal(a(j)["input_ids"], a.window(0, int(visit[j]))[0][:-1])
    assert not np.array_equal(a(0)["input_ids"], a(n)["input_ids"])  # epochs are reshuffled
    assert not np.array_equal(a(0)["input_ids"], samples(corpus, seed=2)(0)["input_ids"])


def test_document_ids_step_after_each_separator(corpus):
    s = samples(corpus, reset=True)
    eos = corpus.tokens.eos
    found = 0
    for i in range(s.windows_per_epoch):
        x = s(i)
        ids, docs = x["input_ids"], x["document_ids"]
        assert docs[0] == 0 and set(np.diff(docs)) <= {0, 1}
        np.testing.assert_array_equal(np.diff(docs) == 1, ids[:-1] == eos)
        found += int((ids == eos).any())
        if found >= 2:
            break
    assert found >= 2
    assert "document_ids" not in samples(corpus)(0)
