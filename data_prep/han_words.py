"""Whole-word flags for Han text from token ids, without character offsets.

The table rule of :mod:`data_prep.annotate` treats every Han character as a word. With a
segmenter, a Han token whose first character follows another Han character (``hi_first``)
begins a word only if a segmenter word starts inside it; every other flag stays as the table
rule set it. To find those words the chunk's Han paragraphs are rebuilt from their tokens, one
"slot" string per token: the piece's text with every non-Han character (and ``▁``) turned into a
space, a single space for a piece without Han, the character itself for the lead byte token of
a Han character spelled in byte-fallback pieces (its other byte tokens are empty). The result
has the Han runs of the normalized text, separated by spaces, and each token's slot offsets, so
one segmenter call per chunk gives every word start and a ``searchsorted`` maps them to tokens.
Memory is a few bytes per token and per character of Han paragraphs: no per-piece protobufs.

The text segmented is sentencepiece's normalized text (NFKC): Han characters keep their
identity except the CJK compatibility ideographs, which become their unified equivalents.
"""

from __future__ import annotations

import numpy as np

from data_prep import textutil as tu
from data_prep.segment import Segmenter

WS = "\u2581"


def slot_table(pieces: list[str], is_byte: np.ndarray) -> np.ndarray:
    """Object array: each piece's slot string (see the module docstring); byte pieces get a
    space, overridden per occurrence for the Han characters they spell."""
    kind = tu.char_kind
    slots = np.empty(len(pieces), dtype=object)
    for i, piece in enumerate(pieces):
        body = piece.replace(WS, " ")
        if is_byte[i] or not any(kind(c) == tu.KIND_HAN for c in body):
            slots[i] = " "
        else:
            slots[i] = "".join(c if kind(c) == tu.KIND_HAN else " " for c in body)
    return slots


class HanWords:
    """Applies a segmenter's words to the word flags of a chunk's Han paragraphs."""

    def __init__(self, segmenter: Segmenter, pieces: list[str], is_byte: np.ndarray, has_han: np.ndarray):
        self.segmenter = segmenter
        self.slots = slot_table(pieces, is_byte)
        self.slot_len = np.fromiter(map(len, self.slots), dtype=np.int64, count=len(self.slots))
        self.has_han = has_han  # per id: the slot holds a Han character

    def apply(self, ids, first_han, last_han, ws, word, tokens, paragraph_firsts, byte_han=None) -> None:
        """Rewrite ``word`` (flags of all tokens of the chunk) at ``tokens`` (sorted positions of
        the tokens of the Han paragraphs). ``first_han``/``last_han``: per token of the chunk,
        its first/last character is Han; ``ws``: starts with whitespace; ``paragraph_firsts``:
        the first token of each of those paragraphs; ``byte_han``: (lead token positions and code
        points of the Han characters spelled in bytes, continuation byte positions), or None."""
        sel_ids = ids[tokens]
        slots = self.slots[sel_ids]
        lengths = self.slot_len[sel_ids]
        has_han = self.has_han[sel_ids]
        if byte_han is not None:
            leads, cps, continuation = byte_han
            # Continuation bytes take no room, so a byte-spelled Han character stays in its run.
            at, hit = _positions_in(tokens, continuation)
            slots[at[hit]] = ""
            lengths[at[hit]] = 0
            at, hit = _positions_in(tokens, leads)
            slots[at[hit]] = [chr(c) for c in cps[hit].tolist()]
            has_han[at[hit]] = True
        # A space before each paragraph: runs never join across paragraphs.
        firsts = np.searchsorted(tokens, paragraph_firsts)
        slots[firsts] = [" " + s for s in slots[firsts].tolist()]
        lengths[firsts] += 1
        end = np.cumsum(lengths)
        text = "".join(slots.tolist())
        del slots
        starts = self.segmenter.word_starts(text)
        del text
        # The token holding each word start (a paragraph's leading space is never one: starts
        # holds Han words only).
        inside = np.zeros(len(tokens), dtype=bool)
        inside[np.searchsorted(end, starts, "right")] = True
        prev = np.maximum(tokens - 1, 0)
        hi_first = first_han[tokens] & last_han[prev] & (tokens > 0)
        word[tokens] = ws[tokens] | (word[tokens] & ~hi_first) | (has_han & inside)


def _positions_in(sorted_positions: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``wanted``: its index in ``sorted_positions`` and whether it is there."""
    at = np.searchsorted(sorted_positions, wanted)
    at_clipped = np.minimum(at, max(len(sorted_positions) - 1, 0))
    hit = (at < len(sorted_positions)) & (sorted_positions[at_clipped] == wanted) if len(sorted_positions) else np.zeros(len(wanted), bool)
    return at_clipped, hit
