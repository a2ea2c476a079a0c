"""Fixtures for the data_prep tests: small real-text slices and a small tokenizer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# CI has shared/ beside the checkout; on the dev box it is /work/shared.
_CANDIDATES = [REPO.parent / "shared" / "corpora", Path("/work/shared/corpora")]
CORPORA = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0])
SEP = "<|endoftext|>"


def corpus_path(name: str) -> Path:
    path = CORPORA / name
    if not path.is_file():
        pytest.skip(f"shared corpus {path} is not available")
    return path


def run_data_prep(*args: str, env: dict | None = None, check: bool = True, timeout: float = 120):
    """Run ``python -m data_prep ARGS`` from the repo root; returns CompletedProcess."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "data_prep", *args],
        cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"data_prep {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


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
