"""Whole-word flags for Han text from a segmenter, without per-piece character offsets.

The table rule of :mod:`data_prep.annotate` treats every Han character as a word. With a
segmenter, a Han token whose first character follows another Han character (``hi_first``)
begins a word only if a segmenter word starts inside it; every other flag stays as the table
rule set it.

The words are found on sentencepiece's normalized text (``normalize``: NFKC, spaces as ``▁``),
which is exactly the concatenation of the paragraph's pieces, a byte-fallback character counting
once. So a token's character offsets there are running sums of per-piece lengths: numbers from a
table, no protobuf per piece. The Han paragraphs of a chunk are normalized, joined by spaces, every
non-Han run turned into a space (so each Han run is cut on its own) and segmented in one call
(:meth:`data_prep.segment.Segmenter.word_starts`), while sentencepiece encodes the chunk in another
thread: both sides take about as long, and sentencepiece releases the GIL. A paragraph whose pieces
do not add up to its normalized length (not seen in practice) is left to the offset path.

Han characters keep their identity under NFKC except the CJK compatibility ideographs, which become
their unified equivalents, and a few symbols that expand to Han text (㈣ -> (四)); words are those
of the normalized text.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import typing

import numpy as np

from data_prep import segment
from data_prep import textutil as tu
from data_prep.segment import Segmenter

_NOT_HAN_RE = re.compile(f"[^{tu.HAN_CLASS}]")
# Text of at least this many sections is cut on several threads (see HanWords.word_starts).
PARALLEL_SECTIONS = 4


def han_mask(cps: np.ndarray) -> np.ndarray:
    """Which code points are Han (textutil's ranges), vectorized."""
    mask = np.zeros(len(cps), dtype=bool)
    for lo, hi in tu.HAN_RANGES:
        mask |= (cps >= lo) & (cps <= hi)
    return mask


def han_word_starts(segmenter: Segmenter, cps: np.ndarray) -> np.ndarray:
    """Positions in the code points ``cps`` where the segmenter's words start, Han runs only.

    The segmenter sees the Han runs with one space between two runs: every other character is
    dropped (a space is enough to cut each run alone, and mixed Chinese-English text then costs
    the segmenter nothing for its English)."""
    if len(cps) == 0:
        return np.zeros(0, dtype=np.int64)
    han = han_mask(cps)
    keep = han.copy()
    keep[1:] |= han[:-1]  # the first character after a run, as its space
    keep[0] = True
    kept = np.flatnonzero(keep)
    text = np.where(han[kept], cps[kept], np.uint32(32)).astype("<u4", copy=False).tobytes().decode("utf-32-le")
    return kept[segmenter.word_starts(text)]


class TokenChars(typing.NamedTuple):
    """Characters of the tokens of some Han paragraphs (:meth:`HanWords.token_chars`): the
    paragraphs, their token positions in the chunk (an index: a slice or positions, see
    ``_index``), tokens per paragraph, normalized characters
    per token, whether a token holds a Han character, the running sum of the characters (the
    end of each token, counted from the first paragraph's first token), the characters before
    each paragraph and in it, and whether a token's first character follows a Han character."""

    han_pars: np.ndarray
    tokens: slice | np.ndarray
    counts: np.ndarray
    lengths: np.ndarray
    has_han: np.ndarray
    end: np.ndarray
    before: np.ndarray
    par_chars: np.ndarray
    hi_first: np.ndarray


class HanWords:
    """The segmenter and the per-piece tables for one tokenizer."""

    def __init__(self, segmenter: Segmenter, sp, is_byte: np.ndarray):
        self.segmenter = segmenter
        self.sp = sp
        self.threads = len(os.sched_getaffinity(0))  # for the sections of a long text
        pieces = sp.id_to_piece(list(range(sp.get_piece_size())))
        # Normalized characters per piece; a byte piece is one character for its lead byte (its
        # continuation bytes are set to zero per occurrence).
        self.length = np.fromiter(map(len, pieces), dtype=np.int32, count=len(pieces))
        self.length[is_byte] = 1
        self.has_han = np.array([tu.HAN_RE.search(p) is not None for p in pieces]) & ~is_byte
        self.longest = int(self.length.max(initial=1))

    def word_starts(self, paragraphs: list[str], norms: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Segment ``paragraphs``: (word starts, offset and length of each normalized paragraph)
        in the text " " + " ".join(normalized paragraphs). ``norms``: the normalized paragraphs
        when the caller has them already (``sp.normalize(paragraphs)``).

        The text is segmented in sections of about ``segment.PIECE_CHARS`` characters, each
        ending before a non-Han character (so no Han run is split and the words are those of one
        call), which bounds the memory of the per-character arrays. Text of at least
        ``PARALLEL_SECTIONS`` sections is more than a chunk of many documents holds: it is a
        long document, and the other workers, whose byte ranges fall inside it, are idle; its
        sections are then cut on one thread per core (the segmenter releases the GIL)."""
        if norms is None:
            norms = self.sp.normalize(paragraphs)
        sizes = np.fromiter(map(len, norms), dtype=np.int64, count=len(norms))
        bases = np.cumsum(sizes + 1) - sizes
        text = " " + " ".join(norms)
        del norms
        sections = _sections(text, segment.PIECE_CHARS)

        def section_starts(bounds: tuple[int, int]) -> np.ndarray:
            lo, hi = bounds
            cps = np.frombuffer(text[lo:hi].encode("utf-32-le"), dtype=np.uint32)
            return han_word_starts(self.segmenter, cps) + lo

        threads = min(len(sections), self.threads)
        if len(sections) < PARALLEL_SECTIONS or threads < 2:
            parts = list(map(section_starts, sections))
        else:
            with concurrent.futures.ThreadPoolExecutor(threads) as pool:
                parts = list(pool.map(section_starts, sections))
        starts = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return starts, bases, sizes

    def token_chars(self, ids, first_han, last_han, par_start, han_pars, byte_han) -> TokenChars:
        """The character counts of the tokens of the paragraphs ``han_pars`` (everything
        :meth:`apply` needs from the tokens, none of it from the segmenter, so it can be computed
        while the segmenter runs). ``first_han``/``last_han``: per token of the chunk, its
        first/last character is Han; ``byte_han``: (lead positions of the Han characters spelled
        in bytes, continuation byte positions) or None."""
        # Per-token arrays are int32 (a chunk holds far fewer than 2**31 tokens and characters):
        # a long paragraph has millions of tokens.
        counts = (par_start[han_pars + 1] - par_start[han_pars]).astype(np.int32)
        firsts = np.cumsum(counts) - counts  # index in ``tokens`` of each paragraph's first token
        # Token positions of the paragraphs, ascending, without a Python loop per paragraph.
        tokens = np.repeat((par_start[han_pars] - firsts).astype(np.int32), counts)
        tokens += np.arange(len(tokens), dtype=np.int32)
        at = _index(tokens)
        sel_ids = ids[at]
        lengths = self.length[sel_ids]
        has_han = self.has_han[sel_ids]
        del sel_ids
        if byte_han is not None:
            leads, continuation = byte_han
            where, hit = positions_in(tokens, continuation)
            lengths[where[hit]] = 0
            where, hit = positions_in(tokens, leads)
            has_han[where[hit]] = True
        # int32 sums while they cannot overflow: a fresh int64 array per step costs page faults
        end = np.cumsum(lengths, dtype=np.int32 if len(lengths) * self.longest < 2**31 else np.int64)
        before = end[firsts] - lengths[firsts]  # characters of the earlier paragraphs' tokens
        par_chars = np.append(before[1:], end[-1]) - before if len(end) else before
        after_han = np.zeros_like(last_han)  # the token before ends with a Han character
        after_han[1:] = last_han[:-1]
        hi_first = first_han[at] & after_han[at]
        return TokenChars(han_pars, at, counts, lengths, has_han, end, before, par_chars, hi_first)

    def apply(self, chars: TokenChars, ws, word, words) -> np.ndarray:
        """Rewrite ``word`` (flags of all tokens of the chunk) for the tokens of the paragraphs
        ``chars.han_pars``, given ``words`` from :meth:`word_starts` on those paragraphs and
        ``chars`` from :meth:`token_chars`. ``ws``: per token, it starts with whitespace.
        Returns the paragraphs whose lengths disagree."""
        starts, bases, sizes = words
        at, lengths, end = chars.tokens, chars.lengths, chars.end
        bad = chars.par_chars != sizes
        shift = (bases - chars.before).astype(end.dtype)
        end += shift[0] if len(shift) == 1 else np.repeat(shift, chars.counts)
        # A token holds a word start when one lies in its characters [end - length, end): a
        # running count of the starts over the characters, read at both ends of every token
        # (linear in the text; zero-length tokens hold none). Only a paragraph returned as bad
        # can reach outside the text, and the offset path redoes it. Every step works in place
        # on arrays of the sums' type (this runs after both threads: it is the serial tail).
        size = int(bases[-1] + sizes[-1]) + 1 if len(bases) else 1
        below = np.zeros(size + 1, dtype=end.dtype)  # below[k]: word starts before character k
        below[starts + 1] = 1
        np.cumsum(below, out=below)
        np.minimum(end, size, out=end)
        first = end - lengths
        np.maximum(first, 0, out=first)
        inside = below[end] > below[first]
        del below, first
        inside &= chars.has_han
        inside |= ws[at] | (word[at] & ~chars.hi_first)
        word[at] = inside
        return chars.han_pars[bad]


def _index(tokens: np.ndarray):
    """``tokens`` (ascending positions) as an index: a slice when they are consecutive (one long
    paragraph: no gather, no int64 copy of the positions), else the positions."""
    if len(tokens) and int(tokens[-1]) - int(tokens[0]) + 1 == len(tokens):
        return slice(int(tokens[0]), int(tokens[-1]) + 1)
    return tokens.astype(np.intp)


def positions_in(sorted_positions: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``wanted``: its index in ``sorted_positions`` and whether it is there."""
    if len(sorted_positions) == 0:
        return np.zeros(len(wanted), dtype=np.int64), np.zeros(len(wanted), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_positions, wanted), len(sorted_positions) - 1)
    return at, sorted_positions[at] == wanted


def _sections(text: str, size: int) -> list[tuple[int, int]]:
    """Bounds [lo, hi) cutting ``text`` into sections of at least ``size`` characters (the last
    one shorter), each ending right before a non-Han character: no Han run is cut."""
    bounds, lo = [], 0
    while lo < len(text):
        found = _NOT_HAN_RE.search(text, lo + size)
        hi = found.start() if found else len(text)
        bounds.append((lo, hi))
        lo = hi
    return bounds
