"""Hugging Face tokenizers built locally with ``tokenizers`` on the bundled text (WordPiece as
BERT's, byte-level BPE as RoBERTa's or GPT-2's, Unigram with T5-style sentinels), and that text
written as a ``data_prep`` corpus: shared by the data_prep and the training/export tests."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "corpora" / "gothic_novels.txt"
SEP = "<|endoftext|>"
SPECIALS = {"wordpiece": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
            "bytelevel": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
            "gpt2": ["<|endoftext|>"],  # byte-level BPE with no mask token, as GPT-2's
            "unigram": ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]
            + [f"<extra_id_{i}>" for i in range(3)]}


def documents(limit: int = 120) -> list[str]:
    """The first ``limit`` non-empty documents of the bundled text."""
    docs = CORPUS.read_text(encoding="utf-8").split(f"\n{SEP}\n")
    return [d for d in docs if d.strip()][:limit]


def write_corpus(path: Path, limit: int = 120) -> Path:
    """``documents(limit)`` as a ``--doc-separator SEP`` corpus file."""
    path.write_text(f"\n{SEP}\n".join(documents(limit)) + "\n", encoding="utf-8")
    return path


def build_tokenizer(kind: str, path, vocab_size: int = 3000):
    """Train a ``kind`` tokenizer (a key of ``SPECIALS``) on the documents, save it to ``path``
    and return it as read back from the file (the file's tokenizer is the reference)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    from data_prep.textutil import split_paragraphs
    text = [p for d in documents() for p in split_paragraphs(d)]
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS[kind])
    elif kind in ("bytelevel", "gpt2"):
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS[kind],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIALS[kind],
                                          unk_token="<unk>")
    tok.train_from_iterator(text, trainer)
    tok.save(str(path))
    return Tokenizer.from_file(str(path))
