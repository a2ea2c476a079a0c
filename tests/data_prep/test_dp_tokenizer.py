"""Tokenizer training: special-piece layout, byte fallback, model types, bounded sampling."""

from __future__ import annotations

import json

import sentencepiece as spm

from data_prep.tokenizer import USER_DEFINED_SYMBOLS, sample_documents

from dp_support import run_data_prep


def test_special_pieces_and_byte_fallback(tokenizer_model):
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    assert [sp.id_to_piece(i) for i in range(4)] == ["[PAD]", "<unk>", "<s>", "</s>"]
    assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (0, 1, 2, 3)
    expected = (["[CLS]", "[SEP]", "[MASK]", "[START]"] + [f"<extra_id_{i}>" for i in range(100)]
                + ["[gMASK]", "[sMASK]"])
    assert USER_DEFINED_SYMBOLS == expected
    assert [sp.piece_to_id(p) for p in expected] == list(range(4, 110))
    assert sp.get_piece_size() == 3000
    # Byte fallback: characters never seen in training round-trip and never become <unk>.
    text = "☃ Ωμέγα 😀"
    ids = sp.encode(text)
    assert sp.unk_id() not in ids and sp.decode(ids) == text


def test_bpe_jsonl_and_sample_bounds(tmp_path, en_text):
    paragraphs = [p for p in en_text.split("\n\n") if p.strip()]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"body": p}) + "\n" for p in paragraphs))
    out = tmp_path / "bpe.model"
    proc = run_data_prep("train-tokenizer", "--input", str(src), "--format", "jsonl", "--text-field", "body",
                         "--output", str(out), "--vocab-size", "600", "--model-type", "bpe",
                         "--sample-documents", "400", "--sample-bytes", "60000")
    summary = json.loads(proc.stdout)
    assert summary["sampled_documents"] <= 400 and summary["sampled_bytes"] <= 60000
    assert summary["input_counters"]["documents_read"] == len(paragraphs)
    sp = spm.SentencePieceProcessor(model_file=str(out))
    assert sp.piece_to_id("[MASK]") == 6 and sp.piece_to_id("<extra_id_99>") == 107
    # Training is deterministic: same input and seed give the same model bytes.
    out2 = tmp_path / "bpe2.model"
    run_data_prep("train-tokenizer", "--input", str(src), "--format", "jsonl", "--text-field", "body",
                  "--output", str(out2), "--vocab-size", "600", "--model-type", "bpe",
                  "--sample-documents", "400", "--sample-bytes", "60000")
    assert out.read_bytes() == out2.read_bytes()


def test_sample_is_bounded_uniform_and_deterministic():
    docs = [f"document number {i}" for i in range(5000)]
    a = sample_documents(iter(docs), max_documents=500, max_bytes=10**9, seed=1)
    assert len(a) == 500 and a == sample_documents(iter(docs), 500, 10**9, seed=1)
    assert a != sample_documents(iter(docs), 500, 10**9, seed=2)
    picked = [int(d.rsplit(" ", 1)[1]) for d in a]
    assert picked == sorted(picked)  # input order is kept
    # Roughly uniform: each fifth of the input contributes about a fifth of the sample.
    fifths = [sum(lo <= i < lo + 1000 for i in picked) for lo in range(0, 5000, 1000)]
    assert all(60 <= f <= 140 for f in fifths), fifths
    b = sample_documents(iter(docs), max_documents=10**9, max_bytes=2000, seed=1)
    assert 0 < sum(len(d) for d in b) <= 2000


def test_empty_input_is_an_error(tmp_path):
    src = tmp_path / "empty.txt"
    src.write_text("\n\n   \n")
    proc = run_data_prep("train-tokenizer", "--input", str(src), "--output", str(tmp_path / "m.model"),
                         "--vocab-size", "300", check=False)
    assert proc.returncode != 0 and "no non-empty documents" in proc.stderr
