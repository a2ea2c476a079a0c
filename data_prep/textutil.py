"""Character classes and paragraph handling shared by the tokenizer trainer and the encoder.

Words, for whole-word masking, are defined on the text and not on the tokenizer:

* whitespace separates words;
* every punctuation or symbol character (Unicode categories P* and S*) is a word of its own;
* a run of Han characters is split into words by jieba, or one word per character
  (the character-level fallback, used with ``--language en``);
* any other run of characters (letters, digits, marks, kana, ...) is one word.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

# Character kinds used by the word and sentence rules.
KIND_SPACE, KIND_WORD, KIND_SEP, KIND_HAN = 0, 1, 2, 3

_KIND_CACHE: dict[int, int] = {}
HAN_RANGES = (
    (0x3400, 0x4DBF),  # CJK Unified Ideographs Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0x20000, 0x3FFFF),  # Extensions B and later (supplementary planes 2 and 3)
)
HAN_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
HAN_RE = re.compile(f"[{HAN_CLASS}]")
HAN_RUN_RE = re.compile(f"[{HAN_CLASS}]+")
# Characters after/before which a hard line break is dropped rather than turned into a
# space: Han, CJK punctuation, full-width forms.
_CJK_CLASS = HAN_CLASS + "\u3000-\u303f\uff00-\uffef"
_CJK_NEWLINE_RE = re.compile(f"(?<=[{_CJK_CLASS}])[ \\t]*\\n[ \\t\\u3000]*(?=[{_CJK_CLASS}])")
# A paragraph break is a line that is empty or holds only whitespace.
_PARAGRAPH_SPLIT_RE = re.compile(r"\n[^\S\n]*\n")

# Sentence-final punctuation, CJK sentence-final punctuation, and closing quotes or
# brackets that may follow sentence-final punctuation ("Stop." / 他说：“走。”).
SENTENCE_TERMINALS = frozenset(".!?。！？｡…‼⁇⁈⁉")
CJK_TERMINALS = frozenset("。！？｡")
CLOSERS = frozenset("\"'”’)]}»」』）】〕〉》")
# Abbreviations after which a single "." does not end a sentence.
ABBREVIATIONS = frozenset(
    "Mr Mrs Ms Dr St Mt Jr Sr Prof Gen Col Capt Lt Sgt Rev Hon vs etc e.g i.e No Vol".split()
)


def is_han(cp: int) -> bool:
    """True if code point ``cp`` is a Han (Chinese) character."""
    return any(lo <= cp <= hi for lo, hi in HAN_RANGES)


def char_kind(ch: str) -> int:
    """Kind of one character: KIND_SPACE, KIND_WORD, KIND_SEP or KIND_HAN (cached)."""
    kind = _KIND_CACHE.get(ord(ch))
    if kind is None:
        kind = _KIND_CACHE[ord(ch)] = _char_kind(ch)
    return kind


def _char_kind(ch: str) -> int:
    cp = ord(ch)
    if is_han(cp):
        return KIND_HAN
    if ch.isspace():
        return KIND_SPACE
    cat = unicodedata.category(ch)
    if cat[0] in "PS":
        return KIND_SEP
    if cat in ("Cc", "Cf", "Zs", "Zl", "Zp"):
        return KIND_SPACE
    return KIND_WORD


def kinds_of_code_points(cps: np.ndarray) -> np.ndarray:
    """Character kinds (uint8) for an array of code points (cached per code point)."""
    uniq, inverse = np.unique(cps, return_inverse=True)
    values = np.empty(len(uniq), dtype=np.uint8)
    cache = _KIND_CACHE
    for i, cp in enumerate(uniq.tolist()):
        kind = cache.get(cp)
        if kind is None:
            # Surrogates and out-of-range values cannot be characters of clean text.
            valid = cp <= 0x10FFFF and not 0xD800 <= cp <= 0xDFFF
            kind = cache[cp] = _char_kind(chr(cp)) if valid else KIND_WORD
        values[i] = kind
    return values[inverse.reshape(-1)]


def char_kinds(text: str) -> np.ndarray:
    """Vector of character kinds for ``text`` (uint8, one per code point)."""
    return kinds_of_code_points(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32))


def utf8_char_offsets(text: str) -> np.ndarray:
    """Byte offset in UTF-8 of every character of ``text``, plus the total length at the end."""
    cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    lens = 1 + (cps >= 0x80).astype(np.int64) + (cps >= 0x800) + (cps >= 0x10000)
    out = np.zeros(len(cps) + 1, dtype=np.int64)
    np.cumsum(lens, out=out[1:])
    return out


def _drop_cjk_newlines(para: str) -> str:
    """``_CJK_NEWLINE_RE.sub("", para)``, trying the pattern only where a match can start: at the
    spaces or tabs right before each line break (the character before a match's start must be
    CJK, so no other position in that run can start one). A long paragraph with few line breaks
    (an over-long line cut in pieces) is then not scanned character by character."""
    out, cursor = [], 0
    nl = para.find("\n")
    while nl >= 0:
        start = nl
        while start > cursor and para[start - 1] in " \t":
            start -= 1
        match = _CJK_NEWLINE_RE.match(para, start)
        if match:
            out.append(para[cursor:start])
            cursor = match.end()
        nl = para.find("\n", max(nl + 1, cursor))
    out.append(para[cursor:])
    return "".join(out)


_HAN_MIN = min(lo for lo, _ in HAN_RANGES)
_BLOCK_CHARS = 1 << 20


def has_han_character(text: str) -> bool:
    """``HAN_RE.search(text) is not None``, fast on text without Han characters: Chinese text shows
    one near its start; elsewhere, text whose UTF-16 code units all lie below the first Han range
    (Latin, Cyrillic, curly quotes...) cannot hold one, which numpy tells ~10x faster than the
    regex scans all of it (1 MB blocks bound the copy)."""
    if HAN_RE.search(text, 0, 1024):
        return True
    for lo in range(1024, len(text), _BLOCK_CHARS):
        block = text[lo:lo + _BLOCK_CHARS]
        units = np.frombuffer(block.encode("utf-16-le", "surrogatepass"), dtype=np.uint16)
        if (units >= _HAN_MIN).any() and HAN_RE.search(block):
            return True
    return False


def split_paragraphs(text: str) -> list[str]:
    """Split a document into paragraphs (blank-line separated) and unwrap hard line breaks.

    A line break inside a paragraph becomes a space, except between two CJK characters,
    where it is dropped (Chinese text hard-wrapped mid-sentence must join with nothing).
    """
    out = []
    # One search for the whole document spares most documents a search per paragraph.
    has_han = not text.isascii() and has_han_character(text)
    for para in _PARAGRAPH_SPLIT_RE.split(text):
        para = para.strip()
        if not para:
            continue
        if "\n" in para:
            if has_han and not para.isascii() and HAN_RE.search(para):
                para = _drop_cjk_newlines(para)
            para = para.replace("\n", " ")
        out.append(para)
    return out
