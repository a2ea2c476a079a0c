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
from itertools import accumulate, chain
from operator import attrgetter

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


class _ToLatin1(dict):
    """``str.translate`` table: a byte-level character -> the Latin-1 character of its byte, any
    other character (a non-special added token's) -> "?". Translating and then encoding as Latin-1
    gives a piece's bytes in C, not in a Python loop per character (32k+ pieces at start-up)."""

    def __init__(self):
        super().__init__({ord(c): chr(b) for c, b in _byte_decoder().items()})

    def __missing__(self, code_point: int) -> str:
        return "?"


class HFTokenizer:
    """``tokenizers.Tokenizer`` from ``path`` with sentencepiece-like methods (see module doc)."""

    def __init__(self, path: str, num_threads: int = -1):
        if num_threads > 0:
            # Before the first parallel call (the pool is made once per process), and set, not
            # defaulted: the encoder runs one single-threaded worker per core, and workers that
            # inherited a larger RAYON_NUM_THREADS would oversubscribe the cores (15-25 % more CPU
            # per token measured with 2 workers x 2 threads on 2 cores).
            os.environ["RAYON_NUM_THREADS"] = str(num_threads)
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
        special = self.special
        self.pieces = [p if p in special else s for p, s in zip(raw, self._sp_spellings(raw))]
        unk = getattr(self.tokenizer.model, "unk_token", None)
        self.unk = vocab.get(unk, -1) if unk else -1

    def _byte_level(self) -> bool:
        """The pre-tokenizer maps bytes to GPT-2's alphabet (alone or in a Sequence)."""
        import json
        pre_tokenizer = self.tokenizer.pre_tokenizer
        # Its own state only: the whole tokenizer's JSON (vocab, merges) takes 40 ms to parse.
        pre = json.loads(pre_tokenizer.__getstate__()) if pre_tokenizer is not None else {}
        return pre.get("type") == "ByteLevel" or any(
            p.get("type") == "ByteLevel" for p in pre.get("pretokenizers", []))

    def _sp_spellings(self, pieces: list[str]) -> list[str]:
        """``pieces`` spelled in sentencepiece's convention (module doc); one list comprehension
        each, not a method call per piece (this runs at every start-up)."""
        if self.kind == "WordPiece":
            prefix = self.tokenizer.model.continuing_subword_prefix
            cut = len(prefix)
            return [p[cut:] if p.startswith(prefix) else WS + p for p in pieces]
        if self.kind == "byte-level BPE":
            # One character per byte: the pieces' bytes lie at the pieces' character offsets.
            data = "".join(pieces).translate(_ToLatin1()).encode("latin-1")
            ends = list(accumulate(map(len, pieces)))
            texts = [data[a:b].decode("utf-8", errors="replace") for a, b in zip([0] + ends, ends)]
            return [WS + t[1:] if t.startswith(" ") else t for t in texts]
        return pieces  # Unigram / BPE with Metaspace: already ▁-spelled

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
        ids, _, lengths = self.encode_with_words(text)
        return np.split(ids, np.cumsum(lengths)[:-1]) if len(lengths) else []

    def encode_with_words(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The texts' ids (int32) and word-start flags (bool), concatenated, and each text's
        number of tokens (int64), from one batch call. Flat, as the annotator uses them: no numpy
        call per text (thousands per chunk)."""
        if not texts:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        lengths = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
        total = int(lengths.sum())
        ids = np.fromiter(chain.from_iterable(map(attrgetter("ids"), encodings)), dtype=np.int32,
                          count=total)
        words = chain.from_iterable(map(attrgetter("word_ids"), encodings))
        try:
            word = np.fromiter(words, dtype=np.int64, count=total)
        except TypeError:  # a token of no word (None): nan, which differs from every neighbour
            word = np.array([np.nan if w is None else w for e in encodings for w in e.word_ids])
        starts = np.ones(total, dtype=bool)
        np.not_equal(word[1:], word[:-1], out=starts[1:])
        starts[np.cumsum(lengths[lengths > 0])[:-1]] = True  # each text's first token
        return ids, starts, lengths
