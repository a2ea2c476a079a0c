"""Reading documents: separators, unit splitting, compression, globs, bad-input policies."""

from __future__ import annotations

import gzip
import json

import pytest
import zstandard

from data_prep.inputs import (
    Counters,
    InputOptions,
    Unit,
    expand_inputs,
    iter_documents,
    plan_units,
)


def read_all(path, options=InputOptions(), split_bytes=1 << 40):
    counters = Counters()
    docs = []
    for unit in plan_units([str(path)], split_bytes):
        docs.extend(iter_documents(unit, options, counters))
    return docs, counters


def test_blank_lines_separate_documents(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("\n\nfirst line\nsecond line\n\n \t\n\nnext doc\n\n\nlast\n")
    docs, c = read_all(p)
    assert docs == ["first line\nsecond line", "next doc", "last"]
    assert c["empty_documents"] == 0  # runs of blank lines are one separator


def test_byte_order_mark_and_crlf(tmp_path):
    p = tmp_path / "bom.txt"
    p.write_bytes(b"\xef\xbb\xbfFirst\r\nline\r\n\r\nSecond\r\n")
    for split in (1, 2, 5, 100):
        docs, _ = read_all(p, split_bytes=split)
        assert docs == ["First\nline", "Second"], split


def test_separator_line_keeps_paragraphs(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("a\n\nb\n<|endoftext|>\nc\n<|endoftext|>\n<|endoftext|>\n  \n<|endoftext|>\nd\n")
    docs, c = read_all(p, InputOptions(doc_separator="<|endoftext|>"))
    assert docs == ["a\n\nb", "c", "d"]
    assert c["empty_documents"] == 2  # the empty and the whitespace-only document
    assert c["documents_read"] == 5


def test_separator_only_as_a_whole_line(tmp_path):
    """A separator string inside a content line is content; padded with whitespace (or
    ending in CRLF) on its own line it separates, wherever the units are cut."""
    p = tmp_path / "a.txt"
    p.write_bytes(b"a <|endoftext|> b\n  <|endoftext|>\t\r\nc\n<|endoftext|><|endoftext|>\nd <|endoftext|>\n"
                  b"<|endoftext|>\ne\n")
    expected = ["a <|endoftext|> b", "c\n<|endoftext|><|endoftext|>\nd <|endoftext|>", "e"]
    for split in (1, 2, 3, 7, 19, 1000):
        docs, _ = read_all(p, InputOptions(doc_separator="<|endoftext|>"), split_bytes=split)
        assert docs == expected, split


@pytest.mark.parametrize("mode", ["blank", "blank-unicode", "sep", "jsonl"])
def test_any_split_size_yields_the_same_documents(tmp_path, mode):
    """Unit boundaries must neither lose nor duplicate documents, whatever the cut."""
    docs = [f"doc {i} " + "x" * (i % 7) + ("\nline two" if i % 3 else "") for i in range(60)]
    p = tmp_path / "in.txt"
    if mode == "blank":
        p.write_text("\n\n".join(docs) + "\n")
        options = InputOptions()
    elif mode == "blank-unicode":  # lines of Unicode whitespace are blank lines too
        seps = ["\n\u3000\u3000\n", "\n \xa0\t\n", "\n\u2003\r\n", "\n\n\n"]
        p.write_text("".join(d + seps[i % 4] for i, d in enumerate(docs)))
        options = InputOptions()
    elif mode == "sep":
        p.write_text("\n=====\n".join(docs) + "\n")
        options = InputOptions(doc_separator="=====")
    else:
        p.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
        options = InputOptions(format="jsonl")
    expected, _ = read_all(p, options)
    assert expected == docs
    for split in (1, 2, 3, 5, 8, 13, 17, 29, 64, 100, 333):
        got, _ = read_all(p, options, split_bytes=split)
        assert got == docs, f"split_bytes={split}"


WIKITEXT_TITLE = r" = [^=].* = "


def test_doc_regex_starts_documents_at_title_lines(tmp_path):
    """WikiText: `` = Title = `` lines open articles and stay their first line; `` = = Section
    = = `` lines and blank lines are content; any unit cut gives the same documents; a plain or
    gzip file reads the same way."""
    articles = [f" = Article {i} = \n\n Text of {i} @-@ here .\n\n = = Part = = \n\n More {i} .\n"
                for i in range(25)]
    text = " preamble before any title\n\n" + "".join(articles)
    p = tmp_path / "wiki.train.tokens"
    p.write_bytes(text.replace("\n", "\r\n", 3).encode())  # CRLF in the first lines too
    options = InputOptions(doc_regex=WIKITEXT_TITLE)
    # lines are kept verbatim up to the next title (a blank line before it included)
    expected = [" preamble before any title\n"] + [a.rstrip("\n") for a in articles]
    for split in (1, 2, 3, 7, 19, 64, 333, 1 << 40):
        docs, _ = read_all(p, options, split_bytes=split)
        assert docs == expected, split
    (tmp_path / "wiki.gz").write_bytes(gzip.compress(text.encode()))
    assert read_all(tmp_path / "wiki.gz", options)[0] == expected


@pytest.mark.parametrize("kwargs, words", [
    (dict(doc_regex="(unclosed"), "is not a regular expression"),
    (dict(doc_regex=" *"), "matches an empty line"),
    (dict(doc_regex="x", doc_separator="y"), "not both"),
])
def test_bad_doc_regex_is_refused(kwargs, words):
    with pytest.raises(ValueError, match=words):
        InputOptions(**kwargs)


def test_gzip_and_zstd_inputs(tmp_path):
    text = "one\n\ntwo\n\nthree\n"
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "b.zst").write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
    for name in ("a.txt.gz", "b.zst"):
        units = plan_units([str(tmp_path / name)], split_bytes=2)
        assert len(units) == 1 and units[0].compressed  # cannot seek: one unit per file
        docs, _ = read_all(tmp_path / name, split_bytes=2)
        assert docs == ["one", "two", "three"]


def test_globs_are_sorted_and_deduplicated(tmp_path):
    for name in ("b.txt", "a.txt", "c.jsonl"):
        (tmp_path / name).write_text("x\n")
    got = expand_inputs([str(tmp_path / "*.txt"), str(tmp_path / "a.txt")])
    assert [p.rsplit("/", 1)[1] for p in got] == ["a.txt", "b.txt"]
    with pytest.raises(FileNotFoundError, match="no input file matches"):
        expand_inputs([str(tmp_path / "*.nothing")])
    with pytest.raises(FileNotFoundError, match="not found"):
        expand_inputs([str(tmp_path / "missing.txt")])


def test_bad_bytes_are_repaired_and_counted(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(
        b"ok line\n\n"
        b"bad \xff\xfe utf8\n\n"
        b"nul\x00inside\n\n"
        b"surrogate \xed\xa0\x80 here\n\n"
        b"truncated \xe4\xb8\n"
    )
    docs, c = read_all(p)
    assert docs == ["ok line", "bad \ufffd\ufffd utf8", "nulinside", "surrogate \ufffd here",
                    "truncated \ufffd"]
    assert (c["invalid_utf8_lines"], c["nul_bytes"], c["lone_surrogates"]) == (2, 1, 1)


def test_long_lines_are_split_at_character_boundaries(tmp_path):
    p = tmp_path / "long.txt"
    long_line = "é" * 50 + "中" * 40 + "abc"  # 100 + 120 + 3 bytes
    p.write_text(f"short\n\n{long_line}\nnext\n")
    docs, c = read_all(p, InputOptions(max_line_bytes=16))
    assert c["long_lines_split"] == 1
    assert docs[0] == "short"
    pieces = docs[1].split("\n")
    assert "".join(pieces[:-1]) == long_line and pieces[-1] == "next"
    assert all(len(piece.encode()) <= 16 for piece in pieces)
    assert c["invalid_utf8_lines"] == 0  # no character was cut in half


def test_jsonl_bad_records_are_skipped_and_counted(tmp_path):
    p = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"text": "good one"}),
        "{not json",
        json.dumps(["a list"]),
        json.dumps({"body": "no text field"}),
        json.dumps({"text": 5}),
        json.dumps({"text": "   "}),
        '{"text": "lone \\ud800 surrogate"}',
        '{"text": "nul \\u0000 char"}',
        json.dumps({"text": "x" * 100}),  # longer than max_line_bytes
        "",
        json.dumps({"text": "good two", "id": 1}),
    ]
    p.write_text("\n".join(lines) + "\n")
    docs, c = read_all(p, InputOptions(format="jsonl", max_line_bytes=64))
    assert docs == ["good one", "lone \ufffd surrogate", "nul  char", "good two"]
    assert c["malformed_json"] == 2
    assert c["missing_text_field"] == 2
    assert c["empty_documents"] == 1
    assert c["lone_surrogates"] == 1 and c["nul_bytes"] == 1
    assert c["long_lines_skipped"] == 1


def test_jsonl_custom_field(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_text(json.dumps({"content": "hello"}) + "\n")
    docs, _ = read_all(p, InputOptions(format="jsonl", text_field="content"))
    assert docs == ["hello"]


def test_oversized_documents_are_split(tmp_path):
    p = tmp_path / "big.txt"
    p.write_text("\n".join(f"line {i:03d}" for i in range(100)) + "\n")  # one 900-byte doc
    docs, c = read_all(p, InputOptions(max_document_bytes=200))
    assert c["documents_split"] == len(docs) - 1 >= 4
    assert "\n".join(docs).split("\n") == [f"line {i:03d}" for i in range(100)]


def test_unit_ranges_cover_file(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("a" * 25)
    units = plan_units([str(p)], 10)
    assert [(u.start, u.end) for u in units] == [(0, 10), (10, 20), (20, 25)]
    assert units == [Unit(i, str(p), u.start, u.end) for i, u in enumerate(units)]


@pytest.mark.parametrize("block", [1, 7, 64])
def test_tiny_read_blocks_change_nothing(tmp_path, monkeypatch, block):
    """Lines are cut out of fixed-size read blocks; any block size must give the same result."""
    import data_prep.inputs as inputs

    p = tmp_path / "in.txt"
    docs = [f"doc {i}\r\nsecond é line {'中' * (i % 9)}" for i in range(40)] + ["x" * 70 + "é" * 30]
    p.write_bytes("\n<SEP>\n".join(docs).encode() + b"\n")
    options = InputOptions(doc_separator="<SEP>", max_line_bytes=50)
    expected, c1 = read_all(p, options)
    monkeypatch.setattr(inputs, "BLOCK_BYTES", block)
    for split in (1, 10, 97, 1 << 20):
        got, c2 = read_all(p, options, split_bytes=split)
        assert got == expected and c1 == c2, (block, split)
    assert expected[0] == "doc 0\nsecond é line " and c1["long_lines_split"] == 1


def test_cli_refuses_a_bad_doc_regex_without_a_traceback(tmp_path):
    from data_prep.cli import main
    with pytest.raises(SystemExit, match="--doc-regex '\\(' is not a regular expression"):
        main(["encode", "--input", __file__, "--doc-regex", "(", "--tokenizer", "x.model",
              "--output", str(tmp_path / "out")])
