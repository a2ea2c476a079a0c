"""RoBERTa FULL-SENTENCES packing on real shards: whole consecutive sentences, maximal filling,
document crossings marked by a separator, no NSP / token types; dynamic token masking."""

import subprocess
import sys

import numpy as np
import pytest

from plmscale.config import load_config
from plmscale.data import Corpus
from plmscale.families.roberta.samples import RobertaSamples

SEQ = 64


@pytest.fixture(scope="module")
def many_docs(demo_shards, tmp_path_factory):
    """Shards of 80 short documents (3-8 paragraphs of the demo novels each) with the demo tokenizer,
    so that a sample often reaches the end of its document."""
    lines = [l for l in (_repo() / "corpora" / "gothic_novels.txt").read_text().splitlines()
             if len(l.split()) > 3][:2000]
    rng = np.random.default_rng(0)
    docs, i = [], 0
    while len(docs) < 80:
        n = int(rng.integers(3, 9))
        docs.append("\n".join(lines[i:i + n]))
        i += n
    out = tmp_path_factory.mktemp("many_docs")
    text = out / "docs.txt"
    text.write_text("\n<|endoftext|>\n".join(docs) + "\n")
    subprocess.run([sys.executable, "-m", "data_prep", "encode", "--input", str(text),
                    "--doc-separator", "<|endoftext|>", "--tokenizer",
                    str(demo_shards.parent / "tokenizer.model"), "--output", str(out / "shards"),
                    "--workers", "1"], check=True, capture_output=True)
    return Corpus(out / "shards")


def _repo():
    from pathlib import Path
    return Path(__file__).resolve().parents[2]


def _samples(corpus, *overrides):
    cfg = load_config(None, ["model.preset=roberta-tiny", f"data.seq_length={SEQ}", *overrides])
    return RobertaSamples(corpus, corpus.tokens, cfg.data, cfg.objective, cfg.train.seed)


def _sentence(corpus, doc, k):
    d = corpus.document(doc)
    bounds = list(d.sentence_starts) + [len(d.token_ids)]
    return d.token_ids[bounds[k]:bounds[k + 1]]


def test_full_sentences_packing(many_docs):
    corpus, samples = many_docs, _samples(many_docs)
    t, budget = corpus.tokens, SEQ - 2
    crossings, fill = 0, []
    for i in range(300):
        content, _, pieces = samples.pack(np.random.default_rng([samples.seed, i]))
        sample = samples(i)
        ids = np.where(sample["mlm_labels"] != -100, sample["mlm_labels"], sample["input_ids"])
        n = int(sample["attention_mask"].sum())
        assert sample["attention_mask"][:n].all() and not sample["attention_mask"][n:].any()
        assert (ids[:n] == np.concatenate([[t.bos], content, [t.eos]])).all()
        assert (ids[n:] == t.pad).all() and len(content) <= budget
        # Content = the pieces in order: whole sentences, a separator at each document change.
        rebuilt, previous, after_separator = [], None, False
        for piece in pieces:
            if piece == ("sep",):
                rebuilt.append([t.eos])
                doc, k, _ = previous
                assert k == len(corpus.document(doc).sentence_starts) - 1  # its document ended
                after_separator = True
                continue
            doc, k, length = piece
            sentence = _sentence(corpus, doc, k)
            if len(pieces) > 1:
                assert length == len(sentence)  # never a partial sentence when packing several
            rebuilt.append(sentence[:length])
            if after_separator:  # the next document, from its first sentence
                crossings += 1
                assert k == 0 and doc == samples._next_document(previous[0])
            elif previous is not None:
                assert (doc, k) == (previous[0], previous[1] + 1)  # consecutive sentences
            previous, after_separator = piece, False
        assert (np.concatenate(rebuilt) == content).all()
        # Maximal: the next sentence (with a separator if it starts a new document) does not fit.
        doc, k, _ = pieces[-1]
        if k + 1 < len(corpus.document(doc).sentence_starts):
            assert len(content) + len(_sentence(corpus, doc, k + 1)) > budget
        else:
            nxt = samples._next_document(doc)
            assert len(content) + 1 + len(_sentence(corpus, nxt, 0)) > budget
        fill.append(n / SEQ)
        assert "token_type_ids" not in sample and "next_sentence_label" not in sample
    assert crossings >= 20  # documents are crossed, with a separator
    assert np.mean(fill) > 0.65  # whole sentences of ~20 tokens in 64-token sequences


def test_dynamic_masking_rate_and_determinism(demo_shards):
    corpus = Corpus(demo_shards)
    samples = _samples(corpus)
    first = [samples(i) for i in range(200)]
    again = samples(7)
    assert all((again[k] == first[7][k]).all() for k in again)  # a pure function of the index
    labelled = sum(int((s["mlm_labels"] != -100).sum()) for s in first)
    eligible = sum(int((s["attention_mask"].sum() - 2)) - int(
        np.isin(np.where(s["mlm_labels"] != -100, s["mlm_labels"], s["input_ids"]),
                corpus.tokens.special_ids)[1:int(s["attention_mask"].sum()) - 1].sum())
        for s in first)
    assert labelled / eligible == pytest.approx(0.15, abs=0.01)
    # Specials are never predicted.
    assert not any(np.isin(s["mlm_labels"][s["mlm_labels"] != -100], corpus.tokens.special_ids).any()
                   for s in first)
