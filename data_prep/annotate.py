"""Per-document annotation: token ids, sentence starts, word starts and gazetteer spans.

Everything is computed chunk-at-a-time with numpy over the concatenated token ids of all
paragraphs of a chunk, using per-vocabulary lookup tables built once from the piece
strings. Han paragraphs get their words from a segmenter in one call per chunk
(:mod:`data_prep.han_words`); only paragraphs with gazetteer matches take the slower
offset-based path.

Gazetteer spans come in two kinds, each from its own phrase list and stored in its own
column (:data:`SPAN_KINDS`): ERNIE 1.0's phrase-level and entity-level masking select
different units. Within a kind spans are sorted and disjoint; a phrase may overlap an
entity ("New York" inside "New York City").

Word starts follow the text-level definition in :mod:`data_prep.textutil`: a token
begins a word when it starts with whitespace (``▁``) or when a word starts inside it. For
text whose pieces carry no byte-fallback tokens this is equivalent to the table rule
``ws_start[t] | sep_start[t] | sep_end[t-1]`` because sentencepiece never puts letters and
punctuation in one piece (``split_by_unicode_script``).

Sentence starts: the first token of every paragraph, and a token that follows sentence
final punctuation (``. ! ? 。 ！ ？ …``, optionally followed by closing quotes/brackets)
when it starts with whitespace, starts with a Han character, or the punctuation is CJK.
A "." right after a common abbreviation (Mr, Dr, ...) does not end a sentence.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
import typing

import numpy as np
import pyarrow as pa
import sentencepiece as spm

from data_prep import textutil as tu
from data_prep.han_words import HanWords, han_word_starts, positions_in
from data_prep.hf_tokenizer import HFTokenizer, is_hf_tokenizer
from data_prep.segment import Segmenter

WS = "\u2581"  # sentencepiece's whitespace marker

SPAN_KINDS = ("phrase", "entity")
"""Kinds of gazetteer spans; kind ``k`` is stored in the column ``k_spans``."""

SCHEMA = pa.schema(
    [
        pa.field("token_ids", pa.list_(pa.int32())),
        pa.field("sentence_starts", pa.list_(pa.int32())),
        pa.field("word_starts", pa.list_(pa.uint8())),
        *(pa.field(f"{kind}_spans", pa.list_(pa.int32())) for kind in SPAN_KINDS),
    ]
)


# Bits of PieceTables.packed(): one gather per token instead of one per table.
B_WS, B_SEP_START, B_SEP_END, B_HAN_START, B_BYTE = 1, 2, 4, 8, 16
B_TERM, B_CJK_TERM, B_CLOSER, B_DOT, B_BARE, B_HAN_END = 32, 64, 128, 256, 512, 1024


@dataclasses.dataclass
class PieceTables:
    """Boolean lookup tables indexed by token id."""

    ws_start: np.ndarray  # piece starts with ▁
    sep_start: np.ndarray  # first character is punctuation/symbol/Han
    sep_end: np.ndarray  # last character is punctuation/symbol/Han
    bare_ws: np.ndarray  # the piece is a bare ▁ (whitespace that sentencepiece split off)
    han_start: np.ndarray  # first character is Han
    han_end: np.ndarray  # last character is Han
    is_byte: np.ndarray  # byte-fallback piece <0xNN>
    byte_value: np.ndarray  # int16: the byte of a byte-fallback piece, else -1
    term_end: np.ndarray  # ends with sentence-final punctuation (+ closers)
    cjk_term: np.ndarray  # ... and that punctuation is CJK
    closer: np.ndarray  # only closing quotes/brackets
    dot_only: np.ndarray  # exactly "."

    def packed(self) -> np.ndarray:
        """All boolean tables as one uint16 bit set per token id (B_* constants)."""
        bits = np.zeros(len(self.ws_start), dtype=np.uint16)
        for flag, table in (
            (B_WS, self.ws_start), (B_SEP_START, self.sep_start), (B_SEP_END, self.sep_end),
            (B_HAN_START, self.han_start), (B_BYTE, self.is_byte), (B_TERM, self.term_end),
            (B_CJK_TERM, self.cjk_term), (B_CLOSER, self.closer), (B_DOT, self.dot_only),
            (B_BARE, self.bare_ws), (B_HAN_END, self.han_end),
        ):
            bits[table] |= flag
        return bits

    @classmethod
    def build(cls, sp: spm.SentencePieceProcessor) -> "PieceTables":
        n = sp.get_piece_size()
        cols = {f.name: np.zeros(n, dtype=bool) for f in dataclasses.fields(cls)}
        cols["byte_value"] = np.full(n, -1, dtype=np.int16)
        closers = "".join(tu.CLOSERS)
        kind = tu.char_kind
        sepish = (tu.KIND_SEP, tu.KIND_HAN)
        # One batched call for the strings; the per-id type queries only for the few
        # pieces that can be special (this runs at every start-up, 32k+ pieces).
        pieces = sp.id_to_piece(list(range(n)))
        ws_start, bare_ws = cols["ws_start"], cols["bare_ws"]
        sep_start, sep_end, han_start = cols["sep_start"], cols["sep_end"], cols["han_start"]
        for i, piece in enumerate(pieces):
            if piece[0] in "<[" and piece[-1] in ">]":
                if sp.is_byte(i):
                    cols["is_byte"][i] = True
                    value = int(piece[1:-1], 16)  # "<0x22>"
                    cols["byte_value"][i] = value
                    if not 0x21 <= value < 0x7F:
                        continue
                    piece = chr(value)  # an ASCII byte piece stands for its character
                elif sp.is_control(i) or sp.is_unknown(i):
                    continue
            body = piece.lstrip(WS)
            if len(body) != len(piece):
                ws_start[i] = True
                if not body:
                    bare_ws[i] = True
                    continue
            first, last = kind(body[0]), kind(body[-1])
            sep_start[i] = first in sepish
            sep_end[i] = last in sepish
            han_start[i] = first == tu.KIND_HAN
            cols["han_end"][i] = last == tu.KIND_HAN
            if last == tu.KIND_SEP:  # only punctuation can end a sentence or close a quote
                core = body.rstrip(closers)
                if core and core[-1] in tu.SENTENCE_TERMINALS:
                    cols["term_end"][i] = True
                    cols["cjk_term"][i] = core[-1] in tu.CJK_TERMINALS
                cols["closer"][i] = not core
                cols["dot_only"][i] = body == "."
        return cls(**cols)


class Gazetteer:
    """Phrases to mark as spans of one kind (phrases or entities). File: one phrase per
    line, UTF-8; blank lines and lines starting with ``#`` are ignored. Matching is
    case-sensitive and non-overlapping, longest phrase first; a phrase that starts/ends
    with an ASCII letter or digit only matches at a word boundary there."""

    def __init__(self, phrases: list[str]):
        phrases = sorted({p for p in phrases if p}, key=lambda p: (-len(p), p))
        self.phrases = phrases
        alternatives = []
        for p in phrases:
            head = r"(?<!\w)" if p[0].isascii() and p[0].isalnum() else ""
            tail = r"(?!\w)" if p[-1].isascii() and p[-1].isalnum() else ""
            alternatives.append(head + re.escape(p) + tail)
        self.regex = re.compile("|".join(alternatives)) if alternatives else None

    @classmethod
    def load(cls, path: str) -> "Gazetteer":
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
        return cls([line for line in lines if line and not line.startswith("#")])

    def find(self, text: str) -> list[tuple[int, int]]:
        """Character spans [start, end) of phrase matches in ``text``."""
        if self.regex is None:
            return []
        return [m.span() for m in self.regex.finditer(text)]


def _any_match_regex(gazetteers) -> re.Pattern | None:
    """One regex matching wherever any of ``gazetteers`` matches (None without phrases): a
    paragraph with no match at all stays on the fast path after a single search."""
    patterns = [g.regex.pattern for g in gazetteers if g.regex is not None]
    return re.compile("|".join(patterns)) if patterns else None


def _token_spans(char_spans, char_bytes: np.ndarray, begins: np.ndarray) -> list[tuple[int, int]]:
    """Token ranges [start, end) of character spans [start, end): from the first token of the
    group holding the span's first byte to the last token that begins before its end.

    Two matches can share a token (no word boundary between them, e.g. Han text); the later
    one is then dropped so that the spans of one kind stay disjoint."""
    spans: list[tuple[int, int]] = []
    for cs, ce in char_spans:
        bs, be = int(char_bytes[cs]), int(char_bytes[ce])
        g = int(np.searchsorted(begins, bs, "right")) - 1
        s = int(np.searchsorted(begins, begins[max(g, 0)], "left"))
        e = int(np.searchsorted(begins, be, "left"))
        if e > s and (not spans or s >= spans[-1][1]):
            spans.append((s, e))
    return spans


class ByteChars(typing.NamedTuple):
    """Characters spelled in byte-fallback tokens: token positions of their continuation
    bytes, of their lead and last bytes, and their code points and character kinds."""

    continuation: np.ndarray
    leads: np.ndarray
    lasts: np.ndarray
    cps: np.ndarray
    kinds: np.ndarray


def _flat(id_arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of paragraphs as one array (one paragraph, a long one: its buffer as it is, not
    a copy) and the tokens per paragraph."""
    par_len = np.fromiter(map(len, id_arrays), dtype=np.int64, count=len(id_arrays))
    if len(id_arrays) == 1:
        return id_arrays[0], par_len
    return (np.concatenate(id_arrays) if id_arrays else np.zeros(0, dtype=np.int32)), par_len


def _in_thread(fn: typing.Callable[[], typing.Any]) -> typing.Callable[[], typing.Any]:
    """Start ``fn()`` in a daemon thread; the function returned waits for it and returns its
    result, or raises its exception in the caller's thread."""
    box: list = []

    def run():
        try:
            box.append((True, fn()))
        except BaseException as exc:
            box.append((False, exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join():
        thread.join()
        ok, value = box[0]
        if not ok:
            raise value
        return value

    return join


def _pack_ids(ids) -> int:
    code = 0
    for i in ids:
        code = (code << 21) | int(i)
    return code


def _pack_lists(values: np.ndarray, offsets: np.ndarray, value_type: pa.DataType) -> pa.Array:
    return pa.ListArray.from_arrays(_plain_array(offsets, pa.int32()), _plain_array(values, value_type))


def _plain_array(values: np.ndarray, value_type: pa.DataType) -> pa.Array:
    """``pa.array(values, type=value_type)`` without nulls, built on the numpy buffer: ``pa.array``
    on a numpy array imports numpy.ma (to check for a masked array), ~10 ms of every worker's
    first chunk, which for a long paragraph is on the path to its result."""
    values = np.ascontiguousarray(values, dtype=value_type.to_pandas_dtype())
    return pa.Array.from_buffers(value_type, len(values), [None, pa.py_buffer(values)])


class _Tokens(typing.NamedTuple):
    """What follows from a chunk's token ids alone (:meth:`Annotator._token_pass`): the ids of
    all paragraphs concatenated, tokens per paragraph, paragraph offsets (plus the end), the
    total, the packed table bits per token, "starts with whitespace" (None when the tokenizer
    gives its words), the word flags (by the table rule, or the tokenizer's), the byte-fallback
    characters (or None), each non-empty paragraph's first token and the sentence starts."""

    ids: np.ndarray
    par_len: np.ndarray
    par_start: np.ndarray
    total: int
    bits: np.ndarray
    ws: np.ndarray
    word: np.ndarray
    byte_chars: "ByteChars | None"
    first_tokens: np.ndarray
    sentence: np.ndarray


class Annotator:
    """Turns lists of document strings into Arrow record batches (one row per document).

    ``language``: ``"en"`` segments Han text one character per word (no segmenter);
    ``"zh"`` and ``"auto"`` segment Han runs with :class:`data_prep.segment.Segmenter`
    (loaded when a document first contains Han characters), with the
    jieba-format ``user_dict`` if given; ``segmenter_backend`` forces ``rjieba`` or
    ``jieba`` (None: rjieba when installed; ``announce``: warn once when falling back).
    ``phrase_gazetteer`` /
    ``entity_gazetteer``: the phrases marked in the ``phrase_spans`` / ``entity_spans``
    columns (empty without one). ``threads``: sentencepiece threads per chunk (-1: all
    cores; 1 when several worker processes already share the cores).
    """

    def __init__(
        self,
        model_path: str,
        language: str = "auto",
        phrase_gazetteer: Gazetteer | None = None,
        entity_gazetteer: Gazetteer | None = None,
        threads: int = -1,
        user_dict: str | None = None,
        segmenter_backend: str | None = None,
        announce: bool = True,
    ):
        if language not in ("en", "zh", "auto"):
            raise ValueError(f"language must be en, zh or auto, not {language!r}")
        self.hf = is_hf_tokenizer(model_path)
        if self.hf:
            # Its words are the tokenizer's own (pre-tokenizer), and spans need character
            # offsets of sentencepiece's kind: neither a segmenter nor gazetteers apply.
            if language == "zh" or phrase_gazetteer or entity_gazetteer:
                raise ValueError(f"{model_path} is a Hugging Face tokenizer: its whole words are "
                                 "its own; --language zh and gazetteers need a sentencepiece model")
            language = "en"
            self.sp = HFTokenizer(model_path, threads)
        else:
            self.sp = spm.SentencePieceProcessor(model_file=model_path, num_threads=threads)
        self.tables = PieceTables.build(self.sp)
        self.bits = self.tables.packed()
        self._abbreviations = self._abbreviation_codes()
        self.language = language
        given = {"phrase": phrase_gazetteer, "entity": entity_gazetteer}
        self.gazetteers = {kind: given[kind] for kind in SPAN_KINDS if given[kind] is not None}
        self._any_gazetteer_match = _any_match_regex(self.gazetteers.values())
        self._segmenter_args = (user_dict, segmenter_backend, announce)
        # Loaded on the first Han paragraph, also with ``zh``: rjieba's dictionary costs about
        # 0.1 s and 33 MB, which the encoder's main process (whose forked workers inherit its
        # annotator) and a worker that meets no Han text should not pay, and a worker that does
        # loads it while sentencepiece encodes (see ``_encode``).
        self._han_words: HanWords | None = None

    def _abbreviation_codes(self) -> dict[int, np.ndarray]:
        """Token sequences of the known abbreviations (as they are encoded after a space),
        packed into one int64 per sequence, grouped by length (1 to 3 tokens)."""
        codes: dict[int, list[int]] = {}
        for word in tu.ABBREVIATIONS:
            ids = self.sp.encode(word)
            if 1 <= len(ids) <= 3:
                codes.setdefault(len(ids), []).append(_pack_ids(ids))
        # sorted(set()) rather than np.unique: the latter imports numpy.ma (start-up time).
        return {k: np.asarray(sorted(set(v)), dtype=np.int64) for k, v in codes.items()}

    def _load_han_words(self) -> HanWords:
        if self._han_words is None:
            self._han_words = HanWords(Segmenter(*self._segmenter_args), self.sp, self.tables.is_byte)
        return self._han_words

    @property
    def segmenter(self) -> Segmenter:
        """The Han word segmenter (loaded on first use)."""
        return self._load_han_words().segmenter

    # ------------------------------------------------------------------ chunk level
    def annotate(self, docs: list[str]) -> tuple[pa.RecordBatch, dict]:
        """Annotate documents; returns the record batch and counters (tokens, characters)."""
        paragraphs: list[str] = []
        doc_npara = np.zeros(len(docs), dtype=np.int64)
        characters = 0
        for d, doc in enumerate(docs):
            paras = tu.split_paragraphs(doc)
            characters += len(doc)
            doc_npara[d] = len(paras)
            paragraphs.extend(paras)
        han_pars = []
        if self.language != "en":
            han_pars = [p for p, para in enumerate(paragraphs) if not para.isascii() and tu.has_han_character(para)]
        if self.hf:
            # The tokenizer's own words (data_prep.hf_tokenizer), flat: no tables, offsets or
            # segmenter, and no gazetteer spans (refused in __init__).
            ids, hf_word, par_len = self.sp.encode_with_words(paragraphs)
            tok, han_words, han_chars = self._token_pass(ids, par_len, hf_word), None, None
        else:
            tok, han_words, han_chars = self._encode(paragraphs, han_pars)
        ids, par_start, word, first_tokens = tok.ids, tok.par_start, tok.word, tok.first_tokens
        need_offsets = self._paragraphs_needing_offsets(paragraphs, ids, par_start, tok.par_len)
        if han_pars:
            disagree = self._load_han_words().apply(han_chars, tok.ws, word, han_words)
            need_offsets = sorted(set(need_offsets) | set(disagree.tolist()))

        # Per kind: paragraph index -> token spans (paragraph offsets) of that paragraph.
        spans_by_par: dict[str, dict[int, list[tuple[int, int]]]] = {kind: {} for kind in SPAN_KINDS}
        for p in need_offsets:
            lo, hi = int(par_start[p]), int(par_start[p + 1])
            flags, spans = self._precise(paragraphs[p], ids[lo:hi])
            word[lo:hi] = flags
            for kind, found in spans.items():
                if found:
                    spans_by_par[kind][p] = found
        if not self.hf:
            self._attach_bare_whitespace(ids, word, tok.bits)
        word[first_tokens] = True
        sentence = tok.sentence

        # Documents: paragraph ranges -> token ranges.
        doc_par_start = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum(doc_npara, out=doc_par_start[1:])
        doc_tok = par_start[doc_par_start]  # token offset of each document, plus end
        sent_pos = np.flatnonzero(sentence)
        sent_off = np.searchsorted(sent_pos, doc_tok)
        sent_doc = np.searchsorted(doc_tok, sent_pos, side="right") - 1
        sent_values = (sent_pos - doc_tok[sent_doc]).astype(np.int32)

        span_columns = []
        for kind in SPAN_KINDS:
            values, offsets = self._collect_spans(spans_by_par[kind], doc_par_start, par_start, doc_tok)
            span_columns.append(_pack_lists(values, offsets, pa.int32()))
        batch = pa.RecordBatch.from_arrays(
            [
                _pack_lists(ids, doc_tok, pa.int32()),
                _pack_lists(sent_values, sent_off, pa.int32()),
                _pack_lists(word.view(np.uint8), doc_tok, pa.uint8()),
                *span_columns,
            ],
            schema=SCHEMA,
        )
        return batch, {"tokens": tok.total, "characters": characters, "documents_written": len(docs)}

    def _token_pass(self, ids: np.ndarray, par_len: np.ndarray, word: np.ndarray | None = None) -> _Tokens:
        """Everything that follows from the token ids alone (see :class:`_Tokens`): ``ids`` of all
        paragraphs, ``par_len`` tokens per paragraph. ``word``: the word flags when the tokenizer
        gives its own (Hugging Face); else they come from the tables."""
        total = int(par_len.sum())
        par_start = np.zeros(len(par_len) + 1, dtype=np.int64)
        np.cumsum(par_len, out=par_start[1:])
        bits = self.bits[ids]
        ws = byte_chars = None
        if word is None:
            # Word starts by table; paragraphs needing offsets are redone later.
            starts_sep, ends_sep = (bits & B_SEP_START) != 0, (bits & B_SEP_END) != 0
            byte_chars = self._byte_characters(ids, bits, starts_sep, ends_sep)
            ws = (bits & B_WS) != 0
            word = ws | starts_sep
            if total > 1:
                word[1:] |= ends_sep[:-1]
            if byte_chars is not None:
                word[byte_chars.continuation] = False
        first_tokens = par_start[:-1][par_len > 0]
        sentence = self._sentence_starts(ids, first_tokens, bits)
        return _Tokens(ids, par_len, par_start, total, bits, ws, word, byte_chars, first_tokens, sentence)

    def _encode(self, paragraphs: list[str], han_pars: list[int]):
        """The :class:`_Tokens` of the paragraphs (sentencepiece's ids come as numpy int32 buffers
        straight from C++, no Python int per token) and, for the Han paragraphs, the segmenter's
        words and the tokens' characters (:meth:`HanWords.token_chars`).

        With Han paragraphs, sentencepiece (which releases the GIL) encodes in another thread,
        which then goes on with the table rules, the sentence starts and the token characters,
        all numpy that releases the GIL too, while this thread segments: on a long paragraph both
        sides take about as long, and the table work no longer waits for the segmenter."""
        if not han_pars:
            ids = self.sp.encode(paragraphs, out_type="numpy") if paragraphs else []
            return self._token_pass(*_flat(ids)), None, None
        loaded = threading.Event()

        def encode():
            tok = self._token_pass(*_flat(self.sp.encode(paragraphs, out_type="numpy")))
            loaded.wait()  # the tokens' characters need the piece tables of HanWords
            return tok, self._han_token_chars(tok, np.asarray(han_pars))

        texts = [paragraphs[p] for p in han_pars]
        encoded = _in_thread(encode)
        # Normalizing also releases the GIL: it runs while this thread loads the segmenter.
        normalized = _in_thread(lambda: self.sp.normalize(texts))
        try:
            try:
                han_words = self._load_han_words()
            finally:
                loaded.set()  # also on failure, so that the thread never waits forever
            words = han_words.word_starts(texts, normalized())
        except BaseException:
            with contextlib.suppress(BaseException):  # this thread's error is the one to report
                encoded()
            raise
        tok, han_chars = encoded()
        return tok, words, han_chars

    def _han_token_chars(self, tok: _Tokens, han_pars: np.ndarray):
        """The characters of the tokens of the Han paragraphs ``han_pars`` (see
        :mod:`data_prep.han_words`), a byte-fallback Han character counting as Han."""
        bits, byte_chars = tok.bits, tok.byte_chars
        first_han, last_han = (bits & B_HAN_START) != 0, (bits & B_HAN_END) != 0
        byte_han = None
        if byte_chars is not None:
            han = byte_chars.kinds == tu.KIND_HAN
            first_han[byte_chars.leads[han]] = True
            last_han[byte_chars.lasts[han]] = True
            byte_han = (byte_chars.leads[han], byte_chars.continuation)
        return self._han_words.token_chars(tok.ids, first_han, last_han, tok.par_start, han_pars, byte_han)

    def _byte_characters(self, ids, bits, starts_sep, ends_sep) -> "ByteChars | None":
        """Give byte-fallback tokens the word properties of the characters they spell.

        sentencepiece spells an out-of-vocabulary character as the consecutive byte
        pieces of its UTF-8 encoding. The lead byte's token takes the character's
        "starts a word" property, the last byte's token its "ends a word" property;
        the other (continuation) byte tokens never start a word. Updates
        ``starts_sep``/``ends_sep`` in place; returns the positions and characters.
        """
        pos = np.flatnonzero(bits & B_BYTE)
        if len(pos) == 0:
            return None
        v = self.tables.byte_value[ids[pos]].astype(np.int64)
        lead = (v & 0xC0) != 0x80
        size = np.where(v < 0x80, 1, np.where(v < 0xE0, 2, np.where(v < 0xF0, 3, 4)))
        padded = np.concatenate([v, np.zeros(3, dtype=np.int64)])
        li = np.flatnonzero(lead)
        n = size[li]
        b = [padded[li + k] & 0x3F for k in range(4)]
        cp = np.where(n == 1, v[li],
             np.where(n == 2, ((v[li] & 0x1F) << 6) | b[1],
             np.where(n == 3, ((v[li] & 0x0F) << 12) | (b[1] << 6) | b[2],
                      ((v[li] & 0x07) << 18) | (b[1] << 12) | (b[2] << 6) | b[3])))
        kinds = tu.kinds_of_code_points(cp)
        sepish = (kinds == tu.KIND_SEP) | (kinds == tu.KIND_HAN)
        # Lead token: starts the character. Last token of the character: ends it.
        starts_sep[pos] = False
        ends_sep[pos] = False
        starts_sep[pos[li]] = sepish
        last = np.minimum(li + n - 1, len(pos) - 1)
        ends_sep[pos[last]] = sepish
        return ByteChars(continuation=pos[~lead], leads=pos[li], lasts=pos[last], cps=cp, kinds=kinds)

    def _paragraphs_needing_offsets(self, paragraphs, ids, par_start, par_len) -> list[int]:
        gazetteer = self._any_gazetteer_match
        if gazetteer is None:
            return []
        return [p for p, para in enumerate(paragraphs) if gazetteer.search(para)]

    def _attach_bare_whitespace(self, ids: np.ndarray, word: np.ndarray, bits=None) -> None:
        """A bare ▁ piece starts the word that follows it ("▁" "Speak", "▁" "("): the
        whitespace token begins the word and the next token continues it."""
        if len(ids) > 1:
            bits = self.bits[ids] if bits is None else bits
            word[1:] &= (bits[:-1] & B_BARE) == 0

    def _sentence_starts(self, ids: np.ndarray, first_tokens: np.ndarray, bits: np.ndarray) -> np.ndarray:
        """Sentence starts: the first token of every paragraph, and the first non-closer
        token ``i`` after a token ``j`` that ends with sentence-final punctuation (only
        closing quotes/brackets between them, no paragraph start) when ``i`` begins with
        whitespace or a Han character, or ``j``'s punctuation is CJK (which needs no space
        after it). Work is proportional to the number of punctuation tokens."""
        n = len(ids)
        starts = np.zeros(n, dtype=bool)
        if n == 0:
            return starts
        starts[first_tokens] = True
        term = np.flatnonzero((bits & B_TERM) != 0)
        term = term[term < n - 1]
        if len(term) == 0:
            return starts
        # Walk each candidate past closing quotes/brackets (rare, so few rounds).
        nxt = term + 1
        live = np.ones(len(term), dtype=bool)
        while True:
            at_closer = live & ((bits[nxt] & B_CLOSER) != 0) & ~starts[nxt]
            if not at_closer.any():
                break
            nxt[at_closer] += 1
            live &= nxt < n
            nxt[~live] = n - 1
        bj, bi = bits[term], bits[nxt]
        brk = live & ~starts[nxt]  # a paragraph start is a start already
        brk &= ((bi & (B_WS | B_HAN_START)) != 0) | ((bj & B_CJK_TERM) != 0)
        # "Mr. Smith": a lone "." right after a known abbreviation ends nothing.
        dot = np.flatnonzero(brk & ((bj & B_DOT) != 0))
        if len(dot):
            dots = term[dot]
            for k, codes in self._abbreviations.items():
                code = np.zeros(len(dots), dtype=np.int64)
                for back in range(k, 0, -1):
                    code = (code << 21) | ids[np.maximum(dots - back, 0)].astype(np.int64)
                # codes are sorted and unique; np.isin would import numpy.ma (start-up time)
                brk[dot[(dots >= k) & positions_in(codes, code)[1]]] = False
        starts[nxt[brk]] = True
        return starts

    def _collect_spans(self, spans_by_par, doc_par_start, par_start, doc_tok):
        """One kind's spans as a flattened list column: (values in document token offsets,
        list offsets per document)."""
        ndocs = len(doc_tok) - 1
        counts = np.zeros(ndocs, dtype=np.int64)
        values: list[int] = []
        if spans_by_par:
            par_doc = np.searchsorted(doc_par_start, np.arange(doc_par_start[-1]), side="right") - 1
            for p in sorted(spans_by_par):
                d = int(par_doc[p])
                base = int(par_start[p] - doc_tok[d])
                for s, e in spans_by_par[p]:
                    values.extend((base + s, base + e))
                counts[d] += 2 * len(spans_by_par[p])
        off = np.zeros(ndocs + 1, dtype=np.int64)
        np.cumsum(counts, out=off[1:])
        return np.asarray(values, dtype=np.int32), off

    # ------------------------------------------------------------- paragraph level
    def _precise(self, para: str, ids: np.ndarray) -> tuple[np.ndarray, dict[str, list[tuple[int, int]]]]:
        """Word flags and the gazetteer spans of each kind from character offsets (slow path)."""
        proto = self.sp.encode(para, out_type="proto")
        pieces = proto.pieces
        n = len(pieces)
        begins = np.fromiter((p.begin for p in pieces), dtype=np.int64, count=n)
        ends = np.fromiter((p.end for p in pieces), dtype=np.int64, count=n)
        proto_ids = np.fromiter((p.id for p in pieces), dtype=np.int32, count=n)
        if not np.array_equal(proto_ids, ids):
            raise RuntimeError("sentencepiece returned different ids for encode and proto")
        char_bytes = tu.utf8_char_offsets(para)
        word_chars = self.word_start_chars(para)
        word_bytes = char_bytes[word_chars]
        # Tokens that share a begin offset (byte pieces of one character, expansions from
        # normalization) form a group; the group's first token carries the flag.
        first = np.ones(n, dtype=bool)
        first[1:] = begins[1:] != begins[:-1]
        gstart = np.flatnonzero(first)
        gend = np.maximum.reduceat(ends, gstart) if n else ends
        inside = np.searchsorted(word_bytes, gend, "left") - np.searchsorted(
            word_bytes, begins[gstart], "left"
        )
        flags = self.tables.ws_start[ids].copy()
        flags[gstart] |= inside > 0
        spans = {
            kind: _token_spans(gazetteer.find(para), char_bytes, begins)
            for kind, gazetteer in self.gazetteers.items()
        }
        return flags, spans

    def word_start_chars(self, text: str) -> np.ndarray:
        """Indices of the characters of ``text`` that begin a word (see textutil)."""
        kinds = tu.char_kinds(text)
        n = len(kinds)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        prev = np.empty(n, dtype=np.uint8)
        prev[0] = tu.KIND_SPACE
        prev[1:] = kinds[:-1]
        start = kinds != tu.KIND_SPACE
        boundary = (prev == tu.KIND_SPACE) | (kinds == tu.KIND_SEP) | (prev == tu.KIND_SEP)
        boundary |= (kinds == tu.KIND_HAN) != (prev == tu.KIND_HAN)
        han = kinds == tu.KIND_HAN
        if self.language == "en":
            boundary |= han  # character-level fallback
        elif han.any():
            cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
            boundary[han_word_starts(self.segmenter, cps)] = True
        return np.flatnonzero(start & boundary)
