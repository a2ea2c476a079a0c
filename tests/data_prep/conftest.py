"""Fixtures for the data_prep tests: small real-text slices and a small tokenizer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for dp_support

from dp_support import SEP, corpus_path, run_data_prep  # noqa: E402


@pytest.fixture(scope="session")
def en_text() -> str:
    """About 150 KB of Tiny Shakespeare (blank-line separated speaker turns)."""
    return corpus_path("en_small.txt").read_text(encoding="utf-8")[:150_000]


@pytest.fixture(scope="session")
def zh_docs() -> list[str]:
    """The first 8 Lu Xun documents."""
    text = corpus_path("zh_small.txt").read_text(encoding="utf-8")
    return text.rstrip("\n").split(f"\n{SEP}\n")[:8]


@pytest.fixture(scope="session")
def mixed_corpus(tmp_path_factory, en_text, zh_docs) -> Path:
    """English and Chinese documents separated by <|endoftext|> lines."""
    path = tmp_path_factory.mktemp("corpus") / "mixed.txt"
    en_docs = [en_text[i : i + 20_000] for i in range(0, len(en_text), 20_000)]
    docs = [d.strip("\n") for d in en_docs] + zh_docs
    path.write_text(f"\n{SEP}\n".join(docs) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tokenizer_model(tmp_path_factory, mixed_corpus) -> Path:
    """Unigram tokenizer (vocab 3000) trained through the CLI on the mixed corpus."""
    out = tmp_path_factory.mktemp("tok") / "tok.model"
    run_data_prep(
        "train-tokenizer", "--input", str(mixed_corpus), "--output", str(out),
        "--vocab-size", "3000", "--doc-separator", SEP,
    )
    return out
