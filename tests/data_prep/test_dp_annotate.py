"""Token-level annotations: whole-word flags (English, Chinese), sentences, phrase and entity
gazetteer spans."""

from __future__ import annotations

import re
import unicodedata

import jieba
import numpy as np
import pytest
import sentencepiece as spm

from data_prep.annotate import Annotator, Gazetteer, _token_spans

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


def test_cjk_line_breaks_are_dropped_as_the_pattern_says():
    """``split_paragraphs`` tries the CJK line-break pattern only around line breaks (a long line
    is not scanned character by character): the result must equal the pattern applied
    everywhere, on random mixes of Han, CJK punctuation, spaces, tabs, U+3000 and line breaks."""
    import random

    from data_prep import textutil as tu

    assert tu._drop_cjk_newlines("中文 \t\n\u3000\u3000第二行\na\n 中。\n，") == "中文第二行\na\n 中。，"
    alphabet = ["中", "文", "a", " ", "\t", "\n", "\u3000", "，", "。", "\n\n"]
    rng = random.Random(0)
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        assert tu._drop_cjk_newlines(text) == tu._CJK_NEWLINE_RE.sub("", text), repr(text)


def test_han_check_agrees_with_the_pattern(monkeypatch):
    """``has_han_character`` (a prefix search, then UTF-16 code units by numpy, block by block) must
    say what ``HAN_RE.search`` says: Han placed past the prefix and across blocks, astral Han (a
    surrogate pair), and characters above the first Han range that are not Han (Hangul, fullwidth)."""
    import random

    from data_prep import textutil as tu

    monkeypatch.setattr(tu, "_BLOCK_CHARS", 7)
    below = ["a", "é", "\u201c", " ", "\u3000", "\n"]  # all code units below the first Han range
    above = below + ["가", "Ａ", "\U0001F600"]
    han = ["中", "\u3400", "\uf900", "\U00020000", "\U0003fffe"]
    rng = random.Random(0)
    for _ in range(3000):
        filler = rng.choice([below, above])
        text = [rng.choice(filler) for _ in range(rng.choice([5, 40, 1100, 1300]))]
        if rng.random() < 0.5:
            text[rng.randrange(len(text))] = rng.choice(han)
        text = "".join(text)
        assert tu.has_han_character(text) == (tu.HAN_RE.search(text) is not None), repr(text[-60:])


def test_segmenter_failure_is_the_error_reported(tokenizer_model, monkeypatch):
    """Sentencepiece's thread goes on without the segmenter when it fails to load; the error
    that comes out is the segmenter's, not the thread's consequence of it."""
    ann = Annotator(str(tokenizer_model), language="zh")

    def fail():
        raise RuntimeError("segmenter could not load")

    monkeypatch.setattr(ann, "_load_han_words", fail)
    with pytest.raises(RuntimeError, match="segmenter could not load"):
        ann.annotate(["中文第一行第二行。"])


def test_byte_fallback_tokens_use_offsets(tokenizer_model, sp):
    text = "naïve 𝒳yz ☃ café"
    batch, _ = Annotator(str(tokenizer_model), language="en").annotate([text])
    (row,) = rows(batch)
    assert any(sp.is_byte(int(t)) for t in row["token_ids"])
    assert groups(sp, row["token_ids"], row["word_starts"]) == [
        unicodedata.normalize("NFKC", w) for w in reference_words(text, "char")]


PHRASES = ["# phrases", "New York City", "Caius Marcius went", "北京大学", ""]
ENTITIES = ["# entities", "New York", "Caius Marcius", "Rome", "北京", ""]


def gazetteer(tmp_path, name: str, lines: list[str]) -> Gazetteer:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Gazetteer.load(str(path))


def touching_tokens(sp, para: str, phrases: list[str]) -> list[tuple[int, int]]:
    """Reference token ranges: the tokens whose bytes intersect the first occurrence of each
    phrase in ``para`` (written independently of the annotator's group/searchsorted rule)."""
    pieces = sp.encode(para, out_type="proto").pieces
    out = []
    for phrase in phrases:
        start = para.index(phrase)
        lo, hi = len(para[:start].encode()), len(para[: start + len(phrase)].encode())
        touched = [i for i, p in enumerate(pieces) if p.begin < hi and p.end > lo]
        out.append((touched[0], touched[-1] + 1))
    return out


def test_phrase_and_entity_spans_in_separate_columns(tokenizer_model, sp, tmp_path):
    para1 = "First Caius Marcius went to New York City and Rome; Romeo did not. 我在北京大学。"
    para2 = "Rome again, New York."
    ann = Annotator(str(tokenizer_model), phrase_gazetteer=gazetteer(tmp_path, "p.txt", PHRASES),
                    entity_gazetteer=gazetteer(tmp_path, "e.txt", ENTITIES))
    batch, _ = ann.annotate([para1 + "\n\n" + para2, "nothing here"])
    first, second = rows(batch)
    base = len(sp.encode(para1))  # paragraphs are encoded one by one
    assert first["token_ids"].tolist() == sp.encode(para1) + sp.encode(para2)

    phrases = first["phrase_spans"].reshape(-1, 2).tolist()
    entities = first["entity_spans"].reshape(-1, 2).tolist()
    want_phrases = touching_tokens(sp, para1, ["Caius Marcius went", "New York City", "北京大学"])
    want_entities = touching_tokens(sp, para1, ["Caius Marcius", "New York", "Rome", "北京"]) + [
        (a + base, b + base) for a, b in touching_tokens(sp, para2, ["Rome", "New York"])]
    assert phrases == [list(t) for t in want_phrases]
    assert entities == [list(t) for t in want_entities]
    decode = lambda spans: [sp.decode(first["token_ids"][a:b].tolist()) for a, b in spans]  # noqa: E731
    assert decode(phrases) == ["Caius Marcius went", "New York City", "北京大学"]
    assert decode(entities) == ["Caius Marcius", "New York", "Rome", "北京", "Rome", "New York"]
    # Overlaps across kinds are kept in both columns: "New York" lies inside "New York City".
    (city,) = [s for s in phrases if decode([s]) == ["New York City"]]
    york = entities[1]
    assert city[0] == york[0] and york[1] < city[1]
    for spans in (phrases, entities):  # within a kind: sorted and disjoint
        assert all(a < b <= c for (a, b), (c, _) in zip(spans, spans[1:]))
    assert second["phrase_spans"].size == 0 and second["entity_spans"].size == 0

    only_entities = Annotator(str(tokenizer_model), entity_gazetteer=gazetteer(tmp_path, "e.txt", ENTITIES))
    (row,) = rows(only_entities.annotate([para1 + "\n\n" + para2])[0])
    assert row["phrase_spans"].size == 0 and row["entity_spans"].tolist() == first["entity_spans"].tolist()


def test_paragraphs_without_matches_stay_on_the_fast_path(tokenizer_model, tmp_path, monkeypatch):
    ann = Annotator(str(tokenizer_model), language="en",
                    phrase_gazetteer=gazetteer(tmp_path, "p.txt", PHRASES),
                    entity_gazetteer=gazetteer(tmp_path, "e.txt", ENTITIES))
    slow = []
    precise = ann._precise
    monkeypatch.setattr(ann, "_precise", lambda para, ids: slow.append(para) or precise(para, ids))
    paragraphs = ["plain words only", "off to New York City", "Romeo alone", "to Rome", "newer york"]
    ann.annotate(["\n\n".join(paragraphs)])
    assert slow == ["off to New York City", "to Rome"]


def test_matches_sharing_a_token_keep_one_kind_disjoint():
    # Tokens begin at bytes 0, 2 and 5; the matches [0, 3) and [3, 5) share the token at 2.
    char_bytes, begins = np.arange(8), np.array([0, 2, 5])
    assert _token_spans([(0, 3), (3, 5), (5, 7)], char_bytes, begins) == [(0, 2), (2, 3)]
