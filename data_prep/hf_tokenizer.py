"""A Hugging Face ``tokenizer.json`` (the ``tokenizers`` library: WordPiece, byte-level BPE,
Unigram) behind the part of sentencepiece's interface that the annotator uses.

Ids are the tokenizer's own (``encode_batch`` without special tokens, on every paragraph).
Whole-word flags are the tokenizer's own words: a token starts a word when its ``word_ids`` entry
(the pre-tokenizer's word) differs from the previous token's, which is what WordPiece's ``##`` and
byte-level BPE's ``Ġ`` conventions encode. ``id_to_piece`` spells pieces in sentencepiece's
convention (``▁`` = starts after whitespace: WordPiece pieces without ``##``, byte-level pieces
whose first byte is a space, Metaspace pieces as they are), so the annotator's tables for
sentence starts read them as they read sentencepiece pieces. Special tokens (the tokenizer's
added tokens marked special) are control pieces.
"""

from __future__ import annotations

import os
from itertools import chain

import numpy as np

WS = "\u2581"


def is_hf_tokenizer(path: str) -> bool:
    """A ``tokenizer.json`` (by suffix) rather than a sentencepiece model."""
    return str(path).endswith(".json")


def _byte_decoder() -> dict[str, int]:
    """Byte-level BPE's printable alphabet (GPT-2's) -> the byte each character stands for."""
    from tokenizers.pre_tokenizers import ByteLevel
    alphabet = ByteLevel.alphabet()
    # GPT-2's map: printable Latin-1 bytes stand for themselves, the others shifted to 256 + n.
    printable = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
    table, extra = {chr(b): b for b in printable}, 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + extra)] = b
            extra += 1
    if set(table) != set(alphabet):
        raise ValueError("this tokenizers version's byte-level alphabet is not GPT-2's")
    return table


class HFTokenizer:
    """``tokenizers.Tokenizer`` from ``path`` with sentencepiece-like methods (see module doc)."""

    def __init__(self, path: str, num_threads: int = -1):
        if num_threads > 0:  # before the first parallel call: the pool is made once per process
            os.environ.setdefault("RAYON_NUM_THREADS", str(num_threads))
        from tokenizers import Tokenizer
        self.tokenizer = Tokenizer.from_file(path)
        self.path = path
        vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        size = max(vocab.values()) + 1
        raw = [""] * size
        for piece, token_id in vocab.items():
            raw[token_id] = piece
        self.special = {t.content for t in self.tokenizer.get_added_tokens_decoder().values()
                        if t.special}
        model = type(self.tokenizer.model).__name__
        self.kind = "byte-level BPE" if model == "BPE" and self._byte_level() else model
        self.pieces = [p if p in self.special else self._sp_spelling(p) for p in raw]
        unk = getattr(self.tokenizer.model, "unk_token", None)
        self.unk = vocab.get(unk, -1) if unk else -1

    def _byte_level(self) -> bool:
        """The pre-tokenizer maps bytes to GPT-2's alphabet (alone or in a Sequence)."""
        import json
        pre = json.loads(self.tokenizer.to_str()).get("pre_tokenizer") or {}
        return pre.get("type") == "ByteLevel" or any(
            p.get("type") == "ByteLevel" for p in pre.get("pretokenizers", []))

    def _sp_spelling(self, piece: str) -> str:
        if self.kind == "WordPiece":
            prefix = self.tokenizer.model.continuing_subword_prefix
            return piece[len(prefix):] if piece.startswith(prefix) else WS + piece
        if self.kind == "byte-level BPE":
            if not hasattr(self, "_bytes"):
                self._bytes = _byte_decoder()
            data = bytes(self._bytes.get(c, 0x3F) for c in piece)
            text = data.decode("utf-8", errors="replace")
            return WS + text[1:] if text.startswith(" ") else text
        return piece  # Unigram / BPE with Metaspace: already ▁-spelled

    # -- the sentencepiece methods the annotator calls -------------------------------------
    def get_piece_size(self) -> int:
        return len(self.pieces)

    def id_to_piece(self, ids):
        return [self.pieces[i] for i in ids] if isinstance(ids, list) else self.pieces[ids]

    def piece_to_id(self, piece: str) -> int:
        found = self.tokenizer.token_to_id(piece)
        return self.unk if found is None else found

    def is_byte(self, token_id: int) -> bool:
        return False  # byte-level pieces are spelled as text (module doc)

    def is_control(self, token_id: int) -> bool:
        return self.pieces[token_id] in self.special

    def is_unknown(self, token_id: int) -> bool:
        return token_id == self.unk

    def encode(self, text, out_type=int):
        """One text -> list of ids; a list of texts -> list of int32 arrays (``out_type`` numpy)."""
        if isinstance(text, str):
            return self.tokenizer.encode(text, add_special_tokens=False).ids
        return self.encode_with_words(text)[0]

    def encode_with_words(self, texts: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(ids, word-start flags) per text, in one batch call. Built as two flat arrays, then
        cut into views: no numpy call per paragraph (thousands per chunk)."""
        if not texts:
            return [], []
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        lengths = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
        total = int(lengths.sum())
        ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int32,
                          count=total)
        word = np.array(list(chain.from_iterable(e.word_ids for e in encodings)),
                        dtype=np.float64)  # None (no word) -> nan
        starts = np.ones(total, dtype=bool)
        starts[1:] = word[1:] != word[:-1]  # nan != anything: a start
        cuts = np.cumsum(lengths)[:-1]
        starts[cuts[cuts < total]] = True  # each text's first token
        return np.split(ids, cuts), np.split(starts, cuts)
