"""Chinese words from the fast segmenter: the token-level path against the offset path, agreement
with pure-Python jieba, user dictionaries, the fallback, long text cut in pieces, and the CLI."""

from __future__ import annotations

import json
import logging
import sys
import unicodedata

import numpy as np
import pytest

from data_prep import han_words as han_words_module
from data_prep import segment
from data_prep.annotate import Annotator
from data_prep.segment import Segmenter, UserDictError
from data_prep.textutil import HAN_RUN_RE, split_paragraphs

from dp_support import SEP, corpus_path, run_data_prep

# Mixed Chinese-English text, and Han characters outside the test tokenizer's vocabulary
# (spelled in byte-fallback pieces) inside Han runs.
MIXED = [
    "我们用PyTorch训练BERT模型，然后在GPU上做推理。The model 很好用，accuracy达到了95%。",
    "他说龘靐是很少见的字，龘字在中间也没关系。",
    "小明硕士毕业于中国科学院计算所，后在日本京都大学深造 (Kyoto University)。",
]


def masked(text: str) -> str:
    """Han runs of ``text``, every other character a space (what the annotator segments)."""
    out = [" "] * len(text)
    for m in HAN_RUN_RE.finditer(text):
        out[m.start():m.end()] = m.group()
    return "".join(out)


def han_boundaries(seg: Segmenter, text: str) -> set[int]:
    return set(seg.word_starts(masked(text)).tolist())


@pytest.fixture(scope="module")
def zh_paragraphs(zh_docs) -> list[str]:
    """Paragraphs of the Lu Xun documents whose NFKC form has their length (NFKC expansions such
    as ⑴ -> (1) make the fast and offset paths count tokens of one character differently, in
    any language; that is not about segmentation)."""
    paras = [p for d in zh_docs for p in split_paragraphs(d)]
    return [p for p in paras if len(unicodedata.normalize("NFKC", p)) == len(p)]


def test_token_path_matches_offset_path(tokenizer_model, zh_paragraphs, monkeypatch):
    """Han words computed from token ids in one call per chunk give the same flags as the
    character-offset path (sentencepiece offsets, words on the original text), and no paragraph
    needs that path (an English paragraph puts the Han paragraphs' tokens apart)."""
    ann = Annotator(str(tokenizer_model), language="zh")
    assert ann.segmenter.backend == "rjieba"
    paragraphs = zh_paragraphs + ["No Han text in this paragraph."] + MIXED
    fallbacks = []
    precise = ann._precise
    monkeypatch.setattr(ann, "_precise", lambda para, ids: fallbacks.append(para) or precise(para, ids))
    batch, _ = ann.annotate(paragraphs)
    assert fallbacks == []
    sp = ann.sp
    ids_col, flags_col = batch.column("token_ids"), batch.column("word_starts")
    assert sum(sp.is_byte(int(i)) for i in ids_col.values.to_numpy()) >= 6  # 龘 and 靐 in bytes
    continued = 0
    for i, para in enumerate(paragraphs):
        ids = ids_col[i].values.to_numpy().astype(np.int32)
        flags, _ = ann._precise(para, ids)
        ann._attach_bare_whitespace(ids, flags)
        flags[0] = True
        got = flags_col[i].values.to_numpy()
        np.testing.assert_array_equal(flags.astype(np.uint8), got, err_msg=para)
        continued += int((got == 0).sum())
    assert continued > 1000  # words of several tokens do occur


def test_english_in_mixed_text_never_reaches_the_segmenter(tokenizer_model, monkeypatch):
    """Only Han runs, one space apart, are segmented: a long English paragraph with a Chinese
    name costs the segmenter five characters, on both paths."""
    ann = Annotator(str(tokenizer_model), language="zh")
    seen = []
    word_starts = ann.segmenter.word_starts
    monkeypatch.setattr(ann.segmenter, "word_starts", lambda text: seen.append(text) or word_starts(text))
    para = "The quick brown fox, " * 400 + "鲁迅先生说：" + " it jumps over the dog." * 400
    flags = ann.annotate([para])[0].column("word_starts").values.to_numpy()
    ids = np.asarray(ann.sp.encode(para), dtype=np.int32)
    slow, _ = ann._precise(para, ids)
    ann._attach_bare_whitespace(ids, slow)
    slow[0] = True
    assert [t.strip() for t in seen] == ["鲁迅先生说", "鲁迅先生说"] and max(map(len, seen)) <= 8
    np.testing.assert_array_equal(flags, slow.astype(np.uint8))


def test_paragraph_whose_pieces_do_not_add_up_takes_the_offset_path(tokenizer_model, monkeypatch):
    """Should a paragraph's pieces ever not add up to its normalized text, its offsets would be
    wrong: it goes to the offset path instead, and the other paragraphs keep theirs."""
    ann = Annotator(str(tokenizer_model), language="zh")
    paragraphs = MIXED[:1] + ["他说：“我们今天去北京大学看书。”"] + MIXED[2:]
    want = ann.annotate(paragraphs)[0]
    han_words = ann._load_han_words()
    tokens = ann.sp.encode(paragraphs[1])
    length = han_words.length.copy()
    length[tokens[3]] += 1
    monkeypatch.setattr(han_words, "length", length)
    slow = []
    precise = ann._precise
    monkeypatch.setattr(ann, "_precise", lambda para, ids: slow.append(para) or precise(para, ids))
    got = ann.annotate(paragraphs)[0]
    assert slow == [paragraphs[1]]
    assert got.column("word_starts").equals(want.column("word_starts"))


def test_agrees_with_pure_python_jieba(tokenizer_model):
    """Word boundaries of rjieba and jieba on real text: >= 99.9% the same (the bench measures
    the whole corpus), and the token flags of the two likewise."""
    fast, slow = Segmenter(backend="rjieba"), Segmenter(backend="jieba")
    text = corpus_path("zh_small.txt").read_text(encoding="utf-8")[:60_000].replace(SEP, "")
    a, b = han_boundaries(fast, text), han_boundaries(slow, text)
    assert len(a) > 25_000
    assert len(a & b) / len(a | b) >= 0.999, (len(a ^ b), len(a | b))
    flags = []
    for backend in ("rjieba", "jieba"):
        ann = Annotator(str(tokenizer_model), language="zh", segmenter_backend=backend)
        flags.append(ann.annotate([text])[0].column("word_starts").values.to_numpy())
    assert len(flags[0]) == len(flags[1]) > 20_000
    assert (flags[0] == flags[1]).mean() >= 0.999


@pytest.mark.parametrize("backend", ["rjieba", "jieba"])
def test_user_dictionary_makes_domain_words(tmp_path, backend):
    text = "我们研究深度学习模型和大语言模型的鲁棒性"
    plain = Segmenter(backend=backend)
    assert {4, 8} <= han_boundaries(plain, text)  # 深度|学习|模型 are separate words
    user = tmp_path / "user.txt"
    user.write_text("\ufeff深度学习模型\n\n大语言模型 1000 n\n", encoding="utf-8")
    seg = Segmenter(user_dict=str(user), backend=backend)
    starts = han_boundaries(seg, text)
    assert {4, 11} <= starts and not {5, 6, 7, 8, 9, 12, 13, 14} & starts
    assert seg.describe()["user_dict_sha256"] == segment.describe(backend, str(user))["user_dict_sha256"]


def test_bad_user_dictionaries_name_the_file_and_fix(tmp_path):
    zero = tmp_path / "zero.txt"
    zero.write_text("好词 5\n坏词 0\n", encoding="utf-8")
    with pytest.raises(UserDictError, match=r"zero.txt, line 2: frequency 0"):
        Segmenter(user_dict=str(zero))
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("café 3\n".encode("latin-1"))
    with pytest.raises(UserDictError, match="latin1.txt: not UTF-8.*save it as UTF-8"):
        segment.read_user_dict(str(latin))


def test_falls_back_to_jieba_and_says_so_once(tokenizer_model, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "rjieba", None)  # import rjieba now raises ImportError
    monkeypatch.setattr(segment, "_announced_fallback", False)
    with caplog.at_level(logging.WARNING, logger="data_prep.segment"):
        ann = Annotator(str(tokenizer_model), language="zh")
        assert segment.choose_backend() == "jieba"
    warnings = [r.message for r in caplog.records if "rjieba is not installed" in r.message]
    assert len(warnings) == 1 and "pure-Python jieba" in warnings[0]
    assert ann.segmenter.backend == "jieba" and ann.segmenter.describe()["name"] == "jieba"


def test_long_text_is_cut_in_pieces_at_spaces_only(zh_docs, monkeypatch):
    """Pieces end at a space, so the words are those of one call; a Han run longer than a piece
    is passed whole."""
    seg = Segmenter()
    text = masked("".join(zh_docs[:3]))[:60_000] + "中" * 3000 + " 好的"
    whole = seg.word_starts(text)
    monkeypatch.setattr(segment, "PIECE_CHARS", 1000)
    np.testing.assert_array_equal(seg.word_starts(text), whole)


def test_long_paragraph_in_sections_on_threads_matches_one_call(tokenizer_model, zh_paragraphs, monkeypatch):
    """A long paragraph (the bench's 12 MB case, smaller) is segmented in sections that end before
    a non-Han character, several at once on threads: its flags are those of one segmenter call
    over the whole text, and those of the character-offset path."""
    para = "".join(zh_paragraphs) + MIXED[0] + "中" * 3000 + "。好的"
    ann = Annotator(str(tokenizer_model), language="zh")
    monkeypatch.setattr(segment, "PIECE_CHARS", 10**9)  # one section, one call
    whole = ann.annotate([para])[0]
    han_words = ann._load_han_words()
    pools, sections = [], []
    pool_class = han_words_module.concurrent.futures.ThreadPoolExecutor
    monkeypatch.setattr(han_words_module.concurrent.futures, "ThreadPoolExecutor",
                        lambda n: pools.append(n) or pool_class(n))
    sections_of = han_words_module._sections
    monkeypatch.setattr(han_words_module, "_sections", lambda *a: sections.append(sections_of(*a)) or sections[-1])
    monkeypatch.setattr(han_words, "threads", 3)
    monkeypatch.setattr(segment, "PIECE_CHARS", 500)
    fallbacks = []
    precise = ann._precise
    monkeypatch.setattr(ann, "_precise", lambda para, ids: fallbacks.append(para) or precise(para, ids))
    got = ann.annotate([para])[0]
    assert pools == [3] and len(sections[0]) > 30 and fallbacks == []
    assert got.equals(whole)
    ids = got.column("token_ids").values.to_numpy().astype(np.int32)
    slow, _ = ann._precise(para, ids)
    ann._attach_bare_whitespace(ids, slow)
    slow[0] = True
    np.testing.assert_array_equal(got.column("word_starts").values.to_numpy(), slow.astype(np.uint8))


def test_cli_user_dict_in_manifest_and_errors(tokenizer_model, tmp_path):
    src = tmp_path / "zh.txt"
    src.write_text("我们研究深度学习模型。\n" + SEP + "\nEnglish only.\n", encoding="utf-8")
    user = tmp_path / "user.txt"
    user.write_text("深度学习模型\n", encoding="utf-8")
    base = ["encode", "--input", str(src), "--tokenizer", str(tokenizer_model), "--doc-separator", SEP,
            "--workers", "1"]
    run_data_prep(*base, "--output", str(tmp_path / "out"), "--language", "zh", "--user-dict", str(user))
    seg = json.loads((tmp_path / "out" / "manifest.json").read_text())["config"]["segmenter"]
    assert seg == segment.describe("rjieba", str(user))
    assert seg["version"] == "0.2.2" and len(seg["dictionary_sha256"]) == 64
    proc = run_data_prep(*base, "--output", str(tmp_path / "en"), "--language", "en", "--user-dict",
                         str(user), check=False)
    assert proc.returncode == 2 and "--user-dict needs --language zh or auto" in proc.stderr
