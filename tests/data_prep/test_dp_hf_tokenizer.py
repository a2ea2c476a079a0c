"""``data_prep encode --tokenizer tokenizer.json``: Hugging Face tokenizers (WordPiece, byte-level
BPE, Unigram) built locally with ``tokenizers``; the shards hold the tokenizer's own ids of every
paragraph (the unit the annotator encodes, as with sentencepiece), whole-word flags that are the
tokenizer's own words, and the special tokens resolve by name."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dp_support import run_data_prep
from hf_tokenizers import SEP, SPECIALS, build_tokenizer, documents, write_corpus

from data_prep.shards import ShardedCorpus
from data_prep.textutil import split_paragraphs


@pytest.fixture(scope="module", params=["wordpiece", "bytelevel", "unigram"])
def encoded(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    tok = build_tokenizer(request.param, out / "tokenizer.json")
    corpus = write_corpus(out / "corpus.txt")
    run_data_prep("encode", "--input", str(corpus), "--doc-separator", SEP, "--tokenizer",
                  str(out / "tokenizer.json"), "--output", str(out / "shards"), "--workers", "2",
                  "--no-progress")
    return request.param, tok, out


def test_ids_and_words_are_the_tokenizers_own(encoded):
    kind, tok, out = encoded
    corpus = ShardedCorpus(out / "shards")
    docs = documents()
    assert len(corpus) == len(docs)
    assert json.loads((out / "shards" / "manifest.json").read_text())["tokenizer"]["file"] == \
        "tokenizer.json"
    words = 0
    for doc, text in zip(corpus, docs):
        encodings = tok.encode_batch(split_paragraphs(text), add_special_tokens=False)
        ids = np.concatenate([e.ids for e in encodings])
        assert np.array_equal(doc.token_ids, ids)
        starts = []
        for e in encodings:  # a token starts a word when the pre-tokenizer's word changes
            starts += [i == 0 or e.word_ids[i] != e.word_ids[i - 1] for i in range(len(e.ids))]
        assert np.array_equal(doc.word_starts.astype(bool), np.array(starts))
        if kind == "wordpiece":  # ... which is WordPiece's "##" convention
            pieces = [t for e in encodings for t in e.tokens]
            assert np.array_equal(doc.word_starts.astype(bool),
                                  np.array([not t.startswith("##") for t in pieces]))
        if kind == "bytelevel":  # ... and for byte-level BPE, a "Ġ" token with text starts a
            # word (the rest of a run of spaces, "Ġ" alone, stays in the run's word)
            pieces = [t for e in encodings for t in e.tokens]
            assert all(doc.word_starts[i] for i, t in enumerate(pieces)
                       if t.startswith("Ġ") and t.strip("Ġ"))
        words += int(doc.word_starts.sum())
        assert doc.sentence_starts[0] == 0 and len(doc.sentence_starts) >= 1
    assert 0 < words < corpus.max_token_id() * 1000


def test_special_tokens_resolve_by_name(encoded):
    from plmscale.data.tokenizer import SpecialTokens
    from plmscale.families.t5.samples import sentinel_ids
    kind, tok, out = encoded
    tokens = SpecialTokens.from_model(out / "shards" / "tokenizer.json")
    by_name = tok.token_to_id
    if kind == "wordpiece":
        assert (tokens.cls, tokens.sep, tokens.mask, tokens.pad) == tuple(
            map(by_name, ["[CLS]", "[SEP]", "[MASK]", "[PAD]"]))
    else:
        assert (tokens.bos, tokens.eos, tokens.mask, tokens.pad) == tuple(
            map(by_name, ["<s>", "</s>", "<mask>", "<pad>"]))
    assert sorted(tokens.special_ids.tolist()) == sorted(map(by_name, SPECIALS[kind]))
    assert tokens.vocab_size == tok.get_vocab_size()
    expected = [by_name(f"<extra_id_{i}>") for i in range(3)] if kind == "unigram" else []
    assert sentinel_ids(out / "shards" / "tokenizer.json").tolist() == expected


def test_chinese_segmentation_and_gazetteers_need_sentencepiece(encoded):
    _, _, out = encoded
    done = run_data_prep("encode", "--input", str(out / "corpus.txt"), "--tokenizer",
                         str(out / "tokenizer.json"), "--output", str(out / "zh"),
                         "--language", "zh", check=False)
    assert done.returncode != 0 and "Hugging Face tokenizer" in done.stderr, done.stderr[-2000:]


def test_byte_level_pieces_are_spelled_as_the_tokenizers_decoder_spells_them(tmp_path):
    """The annotator's tables (sentence starts) read ``HFTokenizer.pieces``: each byte-level piece
    of the model's vocabulary is the text the tokenizer's own decoder gives for that token alone
    (invalid UTF-8 of a partial character included), with a leading space written as ``▁``."""
    from data_prep.hf_tokenizer import WS, HFTokenizer
    tok = build_tokenizer("gpt2", tmp_path / "tokenizer.json")
    pieces = HFTokenizer(str(tmp_path / "tokenizer.json")).pieces
    vocab = tok.get_vocab(with_added_tokens=False)
    spelled = {i: pieces[i].replace(WS, " ", 1) for i in vocab.values()}
    assert spelled == {i: tok.decode([i], skip_special_tokens=False) for i in vocab.values()}
    assert any(p.startswith(WS) for p in pieces) and any("\ufffd" in p for p in pieces)
