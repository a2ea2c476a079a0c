"""Token-level annotations: whole-word flags (English, Chinese), sentences, gazetteer spans."""

from __future__ import annotations

import re
import unicodedata

import jieba
import numpy as np
import pytest
import sentencepiece as spm

from data_prep.annotate import Annotator, Gazetteer

HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


@pytest.fixture(scope="module")
def sp(tokenizer_model):
    return spm.SentencePieceProcessor(model_file=str(tokenizer_model))


def rows(batch):
    """Rows of a record batch as dicts of numpy arrays."""
    out = []
    cols = batch.to_pydict()
    for i in range(batch.num_rows):
        out.append({k: np.asarray(v[i]) for k, v in cols.items()})
    return out


def groups(sp, ids, flags):
    """Decoded word groups: a new group at every flagged token."""
    out, cur = [], []
    for t, f in zip(ids.tolist(), flags.tolist()):
        if f and cur:
            out.append(cur)
            cur = []
        cur.append(t)
    if cur:
        out.append(cur)
    return [sp.decode(g).strip() for g in out]


def reference_words(text: str, han: str) -> list[str]:
    """Words by the documented definition, written independently with plain loops."""
    def kind(ch):
        if HAN.fullmatch(ch):
            return "han"
        if ch.isspace():
            return "space"
        return "sep" if unicodedata.category(ch)[0] in "PS" else "word"

    starts = set()
    for i, ch in enumerate(text):
        k, p = kind(ch), kind(text[i - 1]) if i else "space"
        if k == "space":
            continue
        if p == "space" or "sep" in (k, p) or (k == "han") != (p == "han") or (k == "han" and han == "char"):
            starts.add(i)
    if han == "jieba":
        for m in HAN.finditer(text):
            pos = m.start()
            for w in jieba.cut(m.group(), HMM=True):
                starts.add(pos)
                pos += len(w)
    bounds = sorted(starts) + [len(text)]
    return [text[a:b].strip() for a, b in zip(bounds, bounds[1:])]


def coarsen(words: list[str], sp, ids) -> list[str]:
    """Reference words merged where one token covers a word boundary (the documented rule:
    a token that contains several word starts joins those words)."""
    token_bounds, pos = set(), 0
    for t in ids.tolist():
        token_bounds.add(pos)
        pos += len(sp.id_to_piece(t).replace("\u2581", ""))
    out, pos = [], 0
    for w in words:
        if pos in token_bounds or not out:
            out.append(w)
        else:
            out[-1] += w
        pos += len(w)
    return out


def test_english_word_groups_are_words(tokenizer_model, sp):
    text = "Hello, world! It's 3.14 now: you_know; re-enter (quickly) 42nd"
    batch, _ = Annotator(str(tokenizer_model), language="en").annotate([text])
    (row,) = rows(batch)
    assert groups(sp, row["token_ids"], row["word_starts"]) == reference_words(text, "char")
    assert batch.schema.field("word_starts").type.value_type == "uint8"
    assert len(row["word_starts"]) == len(row["token_ids"])


def test_chinese_word_groups_follow_jieba_and_char_fallback(tokenizer_model, sp):
    text = "我们今天去北京大学看书。他说：好的，然后走了"
    for language, han in (("zh", "jieba"), ("auto", "jieba"), ("en", "char")):
        batch, _ = Annotator(str(tokenizer_model), language=language).annotate([text])
        (row,) = rows(batch)
        got = groups(sp, row["token_ids"], row["word_starts"])
        want = [unicodedata.normalize("NFKC", w) for w in reference_words(text, han)]
        assert got == coarsen(want, sp, row["token_ids"]), language
        assert len(got) >= 0.6 * len(want)  # tokens rarely straddle words


def test_real_english_text_matches_reference_definition(tokenizer_model, sp, en_text):
    """On real text every group is one reference word, except where one token covers
    several punctuation characters (sentencepiece never mixes letters and punctuation)."""
    paragraphs = [p.replace("\n", " ") for p in en_text.split("\n\n")[:150]]
    batch, _ = Annotator(str(tokenizer_model), language="en").annotate(paragraphs)
    checked = 0
    for para, row in zip(paragraphs, rows(batch)):
        got = groups(sp, row["token_ids"], row["word_starts"])
        want = reference_words(para, "char")
        assert "".join(got) == "".join(want)
        it = iter(want)
        for g in got:  # each group is a run of consecutive reference words
            acc, n = next(it), 1
            while acc != g:
                acc, n = acc + next(it), n + 1
                assert len(acc) <= len(g), (para, g)
            if n > 1:
                assert all(unicodedata.category(c)[0] in "PS" for c in g), (para, g)
            checked += 1
    assert checked > 1000


def test_fast_and_offset_paths_agree(tokenizer_model, en_text):
    """The table rule (fast path) and the offset rule (slow path) must give the same flags."""
    ann = Annotator(str(tokenizer_model), language="en")
    paragraphs = [p.replace("\n", " ") for p in en_text.split("\n\n")[:200]]
    # Out-of-vocabulary characters (byte-fallback tokens) in every position.
    paragraphs += ["naïve café ☃ über — «quoted» ☃☃ x☃y 龘靐字 a龘b ☃. Ωmega", "☃", "龘,x", "é(é)é"]
    batch, _ = ann.annotate(paragraphs)
    sp = ann.sp
    assert sum(sp.is_byte(int(i)) for i in batch.column("token_ids").values.to_numpy()) > 20
    for para, row in zip(paragraphs, rows(batch)):
        flags, _ = ann._precise(para, row["token_ids"].astype(np.int32))
        ann._attach_bare_whitespace(row["token_ids"], flags)
        flags[0] = True
        np.testing.assert_array_equal(flags.astype(np.uint8), row["word_starts"], err_msg=para)


def test_sentence_starts(tokenizer_model, sp):
    text = 'He left. She stayed! Why? Mr. Smith came. He said "Stop." Then 3.14 ok.\n\nNew para 他走了。她留下了！好吗？'
    batch, _ = Annotator(str(tokenizer_model)).annotate([text])
    (row,) = rows(batch)
    ids, starts = row["token_ids"], row["sentence_starts"].tolist()
    assert starts[0] == 0 and starts == sorted(set(starts))
    sentences = [sp.decode(ids[a:b].tolist()) for a, b in zip(starts, starts[1:] + [len(ids)])]
    want = ["He left.", "She stayed!", "Why?", "Mr. Smith came.", 'He said "Stop."', "Then 3.14 ok.",
            "New para 他走了。", "她留下了!", "好吗?"]
    assert sentences == want


def test_documents_and_paragraphs(tokenizer_model, sp):
    docs = ["First doc line one\nline two.\n\nSecond paragraph", "中文第一行\n第二行。", "x"]
    batch, stats = Annotator(str(tokenizer_model)).annotate(docs)
    assert batch.num_rows == 3 and stats["documents_written"] == 3
    r = rows(batch)
    assert sp.decode(r[0]["token_ids"].tolist()) == "First doc line one line two. Second paragraph"
    assert sp.decode(r[1]["token_ids"].tolist()) == "中文第一行第二行。"  # CJK wrap joined with nothing
    assert len(r[0]["sentence_starts"]) == 2  # paragraph start is a sentence start
    assert stats["tokens"] == sum(len(x["token_ids"]) for x in r)


def test_byte_fallback_tokens_use_offsets(tokenizer_model, sp):
    text = "naïve 𝒳yz ☃ café"
    batch, _ = Annotator(str(tokenizer_model), language="en").annotate([text])
    (row,) = rows(batch)
    assert any(sp.is_byte(int(t)) for t in row["token_ids"])
    assert groups(sp, row["token_ids"], row["word_starts"]) == [
        unicodedata.normalize("NFKC", w) for w in reference_words(text, "char")]


def test_gazetteer_spans(tokenizer_model, sp, tmp_path):
    path = tmp_path / "gaz.txt"
    path.write_text("# entities\nCaius Marcius\nRome\n北京大学\n\n")
    gaz = Gazetteer.load(str(path))
    text = "First Caius Marcius went to Rome; Romeo did not. 我在北京大学。\n\nRome again"
    batch, _ = Annotator(str(tokenizer_model), gazetteer=gaz).annotate([text, "nothing here"])
    first, second = rows(batch)
    spans = first["spans"].reshape(-1, 2)
    found = [sp.decode(first["token_ids"][a:b].tolist()) for a, b in spans]
    assert found == ["Caius Marcius", "Rome", "北京大学", "Rome"]
    assert second["spans"].size == 0
