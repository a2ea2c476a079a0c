"""Input discovery, splitting into work units, and streaming documents with bad-input policies.

Formats: plain text (documents separated by blank lines, or by a separator line such as
``<|endoftext|>``) and JSONL (one JSON object per line, text in a named field). Files may
be gzip or zstd compressed; compression is detected from the magic bytes.

A *unit* is the piece of work that is assigned to an MPI rank and resumed as a whole.
Uncompressed files are cut into byte ranges of ``split_bytes``; compressed files cannot be
seeked, so each is one unit. A document belongs to the unit in which the separator line
that precedes it starts (the first document of a file belongs to the unit at offset 0);
a JSONL record belongs to the unit where its line starts. Unit boundaries therefore
depend on the input bytes only, which keeps output identical for any number of ranks.

Bad-input policies (every case is counted in :class:`Counters` and ends in the manifest):

=====================  ======================================================================
invalid_utf8_lines     repair: undecodable bytes become U+FFFD
lone_surrogates        repair: UTF-16 surrogates (CESU-8 bytes in text, ``\\ud800`` escapes
                       in JSON) become U+FFFD; counted per line or record
nul_bytes              repair: NUL characters are removed; counted per line or record
empty_documents        skip: documents that are empty or whitespace-only
long_lines_split       split (text): a line over ``max_line_bytes`` is cut into pieces at
                       character boundaries, each piece handled like a line
long_lines_skipped     skip (JSONL): a record over ``max_line_bytes`` cannot be split, and
                       is skipped without being held in memory
malformed_json         skip: a line that is not a JSON object
missing_text_field     skip: a JSON object without a string in the text field
documents_split        split: a document over ``max_document_bytes`` is cut at line
                       boundaries into several documents (bounds memory per document)
=====================  ======================================================================
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import io
import json
import os
import re
import zlib
from typing import Callable, Iterator

import numpy as np
import zstandard

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MB = 1 << 20
_SURROGATE_RE = re.compile("[\ud800-\udfff]")

COUNTER_NAMES = (
    "input_files",
    "input_bytes",
    "documents_read",
    "documents_written",
    "tokens",
    "characters",
    "invalid_utf8_lines",
    "lone_surrogates",
    "nul_bytes",
    "empty_documents",
    "long_lines_split",
    "long_lines_skipped",
    "malformed_json",
    "missing_text_field",
    "documents_split",
)


class Counters(dict):
    """Named integer counters; adding two Counters sums them key by key."""

    def __init__(self, values: dict | None = None):
        super().__init__({name: 0 for name in COUNTER_NAMES})
        if values:
            for key, value in values.items():
                self[key] = self.get(key, 0) + int(value)

    def add(self, other: dict) -> None:
        for key, value in other.items():
            self[key] = self.get(key, 0) + int(value)


@dataclasses.dataclass(frozen=True)
class InputOptions:
    """How to read documents out of the input files."""

    format: str = "text"  # "text" or "jsonl"
    text_field: str = "text"
    doc_separator: str | None = None  # None: blank lines separate documents
    max_line_bytes: int = 10 * MB
    max_document_bytes: int = 64 * MB
    doc_regex: str | None = None
    """A line that fully matches this regular expression starts a document and stays in it as
    its first line (WikiText's `` = Title = `` lines); None: ``doc_separator`` / blank lines."""

    def __post_init__(self):
        if self.format not in ("text", "jsonl"):
            raise ValueError(f"format must be 'text' or 'jsonl', not {self.format!r}")
        if self.doc_separator is not None and not self.doc_separator.strip():
            raise ValueError("doc_separator must contain a non-whitespace character")
        if self.doc_regex is not None:
            if self.doc_separator is not None:
                raise ValueError("give --doc-separator or --doc-regex, not both")
            try:
                pattern = re.compile(self.doc_regex.encode("utf-8"))
            except re.error as error:
                raise ValueError(f"--doc-regex {self.doc_regex!r} is not a regular expression: "
                                 f"{error}") from None
            if pattern.fullmatch(b""):
                raise ValueError(f"--doc-regex {self.doc_regex!r} matches an empty line: every "
                                 f"blank line would start a document; make it need a character")


@dataclasses.dataclass(frozen=True)
class Unit:
    """A byte range [start, end) of one input file; end is None for a whole compressed file."""

    index: int
    path: str
    start: int
    end: int | None

    @property
    def compressed(self) -> bool:
        return self.end is None


def expand_inputs(patterns: list[str]) -> list[str]:
    """Expand files and globs in the order given; each glob sorted; duplicates dropped."""
    paths: list[str] = []
    seen = set()
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
            if not matches:
                raise FileNotFoundError(f"no input file matches {pattern!r}")
        elif os.path.isfile(pattern):
            matches = [pattern]
        else:
            raise FileNotFoundError(f"input file not found: {pattern!r}")
        for path in matches:
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                paths.append(path)
    return paths


def compression_of(path: str) -> str | None:
    """'gzip', 'zstd' or None, from the first bytes of the file."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


def plan_units(paths: list[str], split_bytes: int) -> list[Unit]:
    """Cut the inputs into units, deterministically from file sizes and compression."""
    units: list[Unit] = []
    for path in paths:
        size = os.path.getsize(path)
        if size == 0:
            continue
        if compression_of(path) is not None:
            units.append(Unit(len(units), path, 0, None))
            continue
        for start in range(0, size, split_bytes):
            units.append(Unit(len(units), path, start, min(start + split_bytes, size)))
    return units


class InputError(ValueError):
    """An input file that cannot be read to its end (e.g. a truncated .gz); names the file."""


class _Decompressing:
    """A compressed input's stream whose decompression errors name the file (gzip raises a bare
    EOFError on a truncated file)."""

    def __init__(self, path: str, stream):
        self.path, self.stream = path, stream

    def read(self, size: int = -1) -> bytes:
        try:
            return self.stream.read(size)
        except (EOFError, OSError, zlib.error, zstandard.ZstdError) as error:
            raise InputError(f"{self.path}: the compressed input is truncated or corrupt "
                             f"({type(error).__name__}: {error}); re-download or re-compress it, "
                             f"or leave it out of --input") from None

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.stream.seek(offset, whence)

    def close(self) -> None:
        self.stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_binary(path: str) -> io.BufferedIOBase:
    """Open a file for binary reading, transparently decompressing gzip and zstd."""
    kind = compression_of(path)
    if kind == "gzip":
        return _Decompressing(path, gzip.open(path, "rb"))
    if kind == "zstd":
        raw = open(path, "rb")
        reader = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
        return _Decompressing(path, io.BufferedReader(reader, buffer_size=1 * MB))
    return open(path, "rb", buffering=1 * MB)


def decode_line(raw: bytes, counters: Counters) -> str:
    """Decode one line of bytes, repairing NUL bytes, surrogates and invalid UTF-8."""
    if b"\x00" in raw:
        counters["nul_bytes"] += 1
        raw = raw.replace(b"\x00", b"")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        # Surrogates encoded as 3-byte sequences (CESU-8 / WTF-8) decode with surrogatepass.
        text = raw.decode("utf-8", "surrogatepass")
        counters["lone_surrogates"] += 1
        return _SURROGATE_RE.sub("\ufffd", text)
    except UnicodeDecodeError:
        counters["invalid_utf8_lines"] += 1
        return raw.decode("utf-8", "replace")


def clean_string(text: str, counters: Counters) -> str:
    """Repair a str that came from JSON: NUL characters and lone surrogates."""
    if text.isascii():
        if "\x00" in text:
            counters["nul_bytes"] += 1
            text = text.replace("\x00", "")
        return text
    if "\x00" in text:
        counters["nul_bytes"] += 1
        text = text.replace("\x00", "")
    if _SURROGATE_RE.search(text):
        counters["lone_surrogates"] += 1
        text = _SURROGATE_RE.sub("\ufffd", text)
    return text


def _cut_utf8(piece: bytes) -> int:
    """Largest cut position <= len(piece) that does not split a UTF-8 character."""
    cut = len(piece)
    for back in range(1, 4):
        if cut - back < 0:
            break
        byte = piece[cut - back]
        if byte & 0xC0 == 0x80:
            continue  # continuation byte: keep looking for the lead byte
        if byte >= 0xC0:
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            if back < need:
                return cut - back  # the lead byte's character is incomplete: cut before it
        return cut
    return cut


BLOCK_BYTES = 4 * MB  # read size; lines are split out of blocks in C, not line by line

WHOLE, FIRST_PIECE, LATER_PIECE = 0, 1, 2  # kinds of yielded lines


def _pieces(pos: int, line: bytes, max_line: int, continuing: bool):
    """Cut an over-long line into pieces of at most ``max_line`` bytes at character
    boundaries."""
    kind = LATER_PIECE if continuing else FIRST_PIECE
    while line:
        cut = _cut_utf8(line[:max_line]) if len(line) > max_line else len(line)
        cut = cut or min(max_line, len(line))  # garbage with no character boundary
        yield pos, line[:cut], kind
        kind = LATER_PIECE
        pos += cut
        line = line[cut:]


def _text_start(stream: io.BufferedIOBase, pos: int, buf: bytes) -> tuple[int, bytes]:
    """Where text starts and the bytes already read from there: at the start of a file a
    UTF-8 byte order mark is skipped (it is not text); elsewhere ``(pos, buf)`` as given."""
    if pos != 0:
        return pos, buf
    head = stream.read(3)
    if head == b"\xef\xbb\xbf":
        return 3, b""
    return 0, head


def _blocks(stream: io.BufferedIOBase, pending: bytes) -> Iterator[bytes]:
    """``pending`` (if any), then the rest of the stream in blocks of BLOCK_BYTES."""
    if pending:
        yield pending
    while data := stream.read(BLOCK_BYTES):
        yield data


def _lines(
    stream: io.BufferedIOBase, pos: int, max_line: int, buf: bytes = b""
) -> Iterator[tuple[int, bytes, int]]:
    """Yield ``(position, raw_line, kind)`` for the lines of ``stream`` starting at byte
    ``pos``, without line endings. A line longer than ``max_line`` comes as pieces (kind
    FIRST_PIECE, then LATER_PIECE), each at most ``max_line`` bytes, and is never held
    whole in memory. ``buf``: bytes at ``pos`` already read from the stream."""
    buf_pos, pending = _text_start(stream, pos, buf)
    buf = b""
    continuing = False  # pieces of the current (over-long) line were already yielded
    for data in _blocks(stream, pending):
        buf += data
        strip_cr = b"\r" in buf
        lines = buf.split(b"\n")
        buf = lines.pop()
        p = buf_pos
        for line in lines:
            n = len(line) + 1
            if strip_cr and line.endswith(b"\r"):
                line = line[:-1]
            if continuing or len(line) > max_line:
                yield from _pieces(p, line, max_line, continuing)
                continuing = False
            else:
                yield p, line, WHOLE
            p += n
        buf_pos = p
        while len(buf) > max_line:  # the line goes on: emit what we have, keep memory bounded
            cut = _cut_utf8(buf[:max_line]) or max_line
            yield buf_pos, buf[:cut], LATER_PIECE if continuing else FIRST_PIECE
            continuing = True
            buf_pos += cut
            buf = buf[cut:]
    if buf.endswith(b"\r"):
        buf = buf[:-1]
    if continuing or len(buf) > max_line:
        yield from _pieces(buf_pos, buf, max_line, continuing)
    elif buf:
        yield buf_pos, buf, WHOLE


def _unit_lines(unit: Unit, max_line: int):
    """Open a unit; returns (stream, lines) where lines start at the first line that
    starts at or after ``unit.start`` (a partial line belongs to the unit before)."""
    stream = open_binary(unit.path)
    if unit.start == 0:
        return stream, _lines(stream, 0, max_line)
    stream.seek(unit.start - 1)
    at_line_start = stream.read(1) == b"\n"
    lines = _lines(stream, unit.start, max_line)
    if at_line_start:
        return stream, lines

    def skip_partial():
        first = True
        for item in lines:
            if first or item[2] == LATER_PIECE:
                first = False
                continue
            yield item
            break
        yield from lines

    return stream, skip_partial()


# Candidate finders: cheap supersets of the separator predicates, to find separator
# lines in whole blocks instead of line by line (each candidate is then checked exactly).
# A finder maps (buffer, lo, hi) to the [start, end) byte ranges of candidate lines
# inside buf[lo:hi], where lo is a line start and hi a line end.
# Blank: ASCII whitespace plus the UTF-8 encodings of every other str.isspace character.
_BLANK_CANDIDATE = re.compile(
    rb"(?m)^(?:[ \t\r\x0b\x0c\x1c-\x1f]|\xc2[\x85\xa0]|\xe1\x9a\x80|\xe2\x80[\x80-\x8a\xa8\xa9\xaf]"
    rb"|\xe2\x81\x9f|\xe3\x80\x80)*$"
)


def _blank_candidates(buf: bytes, lo: int, hi: int) -> Iterator[tuple[int, int]]:
    for m in _BLANK_CANDIDATE.finditer(buf, lo, hi):
        yield m.span()


def _separator_candidates(sep: bytes):
    """Lines that contain ``sep``. ``bytes.find`` skips the text between separators at
    memory speed; a multi-line regex would try to match at every line start."""

    def candidates(buf: bytes, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        at = buf.find(sep, lo, hi)
        while at >= 0:
            start = buf.rfind(b"\n", lo, at) + 1 or lo
            end = buf.find(b"\n", at, hi)
            if end < 0:
                end = hi
            yield start, end
            at = buf.find(sep, end + 1, hi) if end < hi else -1

    return candidates


def _regex_candidates(pattern: re.Pattern):
    """Whole lines that fully match ``pattern`` (one multi-line search over the buffer)."""
    lines = re.compile(rb"^(?:" + pattern.pattern + rb")\r?$", re.MULTILINE)

    def candidates(buf: bytes, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        for m in lines.finditer(buf, lo, hi):
            yield m.span()

    return candidates


@dataclasses.dataclass(frozen=True)
class _Boundary:
    """How documents are delimited in text input: candidate lines, the exact test, and whether
    a boundary line is kept as the first line of the document it opens (``--doc-regex``)."""

    candidates: Callable
    is_sep: Callable[[bytes], bool]
    blank: bool
    keeps_line: bool

    @classmethod
    def of(cls, options: InputOptions) -> "_Boundary":
        if options.doc_regex is not None:
            pattern = re.compile(options.doc_regex.encode("utf-8"))
            return cls(_regex_candidates(pattern),
                       lambda raw: pattern.fullmatch(raw[:-1] if raw.endswith(b"\r") else raw)
                       is not None, False, True)
        if options.doc_separator is None:
            return cls(_blank_candidates, _is_blank, True, False)
        sep = options.doc_separator.strip().encode("utf-8")
        return cls(_separator_candidates(sep), lambda raw: raw.strip() == sep, False, False)


def _find_separator(stream, pos: int, at_line_start: bool, candidates, is_sep, max_line: int):
    """Scan forward from ``pos`` for the first separator line that starts at or after
    it (after the end of a partial line when ``pos`` is not at a line start).

    Returns ``(position, bytes read from that position on)``, or None at end of file.
    Reads in blocks and searches with a regex, so skipping the tail of a document owned
    by the previous unit costs about as much as reading it.
    """
    buf, buf_pos = b"", pos
    need_newline = not at_line_start
    while True:
        data = stream.read(BLOCK_BYTES)
        if not data:
            if not need_newline and buf and len(buf) <= max_line:
                line = buf[:-1] if buf.endswith(b"\r") else buf
                if is_sep(line):
                    return buf_pos, buf
            return None
        buf += data
        if need_newline:
            nl = buf.find(b"\n")
            if nl < 0:
                buf_pos, buf = buf_pos + len(buf), b""
                continue
            buf_pos, buf, need_newline = buf_pos + nl + 1, buf[nl + 1 :], False
        last_nl = buf.rfind(b"\n")
        if last_nl >= 0:
            for start, end in candidates(buf, 0, last_nl):
                if is_sep(buf[start:end]):
                    return buf_pos + start, buf[start:]
            buf_pos, buf = buf_pos + last_nl + 1, buf[last_nl + 1 :]
        if len(buf) > max_line:  # an over-long line is never a separator: skip it
            buf_pos, buf, need_newline = buf_pos + len(buf), b"", True


def _decode_document(lines: list[bytes], counters: Counters) -> str:
    """Decode a document's lines at once; only a document with problems is decoded
    line by line (to repair and count per line)."""
    data = b"\n".join(lines)
    if b"\x00" not in data:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return "\n".join(decode_line(line, counters) for line in data.split(b"\n"))


def iter_documents(unit: Unit, options: InputOptions, counters: Counters) -> Iterator[str]:
    """Yield the documents of one unit as strings, in input order.

    Text documents come back as their lines joined with ``\\n`` (paragraphs separated
    by blank lines, as in the input). Empty and whitespace-only documents are counted
    and not yielded.
    """
    source = _jsonl_documents if options.format == "jsonl" else _text_documents
    for text in source(unit, options, counters):
        counters["documents_read"] += 1
        if not text.strip():
            counters["empty_documents"] += 1
            continue
        yield text


def _jsonl_documents(unit: Unit, options: InputOptions, counters: Counters) -> Iterator[str]:
    stream, lines = _unit_lines(unit, options.max_line_bytes)
    field = options.text_field
    with stream:
        for pos, raw, kind in lines:
            if unit.end is not None and pos >= unit.end and kind != LATER_PIECE:
                return
            if kind != WHOLE:
                # An over-long record cannot be parsed in bounded memory: skip it whole.
                counters["long_lines_skipped"] += kind == FIRST_PIECE
                continue
            if not raw.strip():
                continue  # blank lines between records are not documents
            line = decode_line(raw, counters)
            try:
                record = json.loads(line)
            except ValueError:
                counters["malformed_json"] += 1
                continue
            if not isinstance(record, dict):
                counters["malformed_json"] += 1
                continue
            text = record.get(field)
            if not isinstance(text, str):
                counters["missing_text_field"] += 1
                continue
            yield clean_string(text, counters)


def _is_blank(raw: bytes) -> bool:
    stripped = raw.strip()
    if not stripped:
        return True
    # Only lines that start with a non-ASCII byte can be Unicode whitespace (U+3000 ...).
    return stripped[0] >= 0x80 and not raw.decode("utf-8", "replace").strip()


REGION = 3  # kind of _regions() items: complete lines, none over-long


def _regions(stream, pos: int, max_line: int, buf: bytes = b""):
    """Like :func:`_lines`, but complete lines come in bulk: yields ``(position, bytes,
    REGION)`` for runs of whole lines (ending with ``\\n``, except a last line without
    one), none longer than ``max_line``; over-long lines come as pieces, as in _lines."""
    buf_pos, pending = _text_start(stream, pos, buf)
    buf = b""
    continuing = False
    for data in _blocks(stream, pending):
        buf += data
        last_nl = buf.rfind(b"\n")
        if last_nl >= 0:
            region, buf = buf[: last_nl + 1], buf[last_nl + 1 :]
            if continuing:  # the region starts with the rest of an over-long line
                nl = region.find(b"\n")
                rest = region[:nl]
                yield from _pieces(buf_pos, rest[:-1] if rest.endswith(b"\r") else rest, max_line, True)
                continuing = False
                buf_pos += nl + 1
                region = region[nl + 1 :]
            yield from _split_long_lines(buf_pos, region, max_line)
            buf_pos += len(region)
        while len(buf) > max_line:  # the line goes on: emit what we have, keep memory bounded
            cut = _cut_utf8(buf[:max_line]) or max_line
            yield buf_pos, buf[:cut], LATER_PIECE if continuing else FIRST_PIECE
            continuing = True
            buf_pos += cut
            buf = buf[cut:]
    if continuing or len(buf) - buf.endswith(b"\r") > max_line:
        yield from _pieces(buf_pos, buf[:-1] if buf.endswith(b"\r") else buf, max_line, continuing)
    elif buf:
        yield buf_pos, buf, REGION


def _split_long_lines(pos: int, region: bytes, max_line: int):
    """Yield the region as REGION runs, with its over-long lines cut into pieces."""
    if len(region) <= max_line:  # cannot hold an over-long line (the usual case)
        if region:
            yield pos, region, REGION
        return
    arr = np.frombuffer(region, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts
    has_cr = np.zeros(len(ends), dtype=bool)
    nonempty = lengths > 0
    has_cr[nonempty] = arr[ends[nonempty] - 1] == 13
    cursor = 0
    for i in np.flatnonzero(lengths - has_cr > max_line).tolist():
        s, e = int(starts[i]), int(ends[i]) - int(has_cr[i])
        if s > cursor:
            yield pos + cursor, region[cursor:s], REGION
        yield from _pieces(pos + s, region[s:e], max_line, False)
        cursor = int(ends[i]) + 1
    if cursor < len(region):
        yield pos + cursor, region[cursor:], REGION


class _TextAssembler:
    """Collects the lines that follow a unit's first separator into documents.

    Equivalent to going line by line (a separator line ends the current document; an
    empty document between two separator lines counts as one in separator mode; runs of
    blank lines are one separator in blank-line mode), but regions of whole lines are
    handled with a regex over the bytes, so the cost per line is C, not Python.
    """

    def __init__(self, options: InputOptions, counters: Counters, end: int | None, opened_by_sep: bool):
        boundary = _Boundary.of(options)
        self.blank = boundary.blank
        self.keeps_line = boundary.keeps_line
        self.candidates = boundary.candidates
        self.is_sep = boundary.is_sep
        self.counters = counters
        self.max_doc = options.max_document_bytes
        self.end = end
        self.opened_by_sep = opened_by_sep
        self.doc: list[bytes] = []  # segments: one or more lines joined by \n
        self.doc_bytes = 0

    def region(self, pos: int, chunk: bytes, out: list[str]) -> bool:
        """Add whole lines; finished documents go to ``out``. True: the unit is done."""
        body = chunk[:-1] if chunk.endswith(b"\n") else chunk
        cursor = 0
        for s, e in self.candidates(body, 0, len(body)):
            if not self.is_sep(body[s:e]):
                continue
            if s > cursor:  # content lines chunk[cursor : s - 1] (s - 1 is their last \n)
                self._content(chunk[cursor : s - 1], out)
            if self.separator(pos + s, out):
                return True
            cursor = s if self.keeps_line else e + 1
        if cursor < len(chunk):
            self._content(chunk[cursor : len(body)], out)
        return False

    def piece(self, raw: bytes, kind: int, out: list[str]) -> None:
        """Add a piece of an over-long line (always content)."""
        self.counters["long_lines_split"] += kind == FIRST_PIECE
        self._line(raw, out)

    def separator(self, pos: int, out: list[str]) -> bool:
        # A kept boundary line makes every document non-empty: none between two of them.
        if self.doc or (self.opened_by_sep and not self.blank and not self.keeps_line):
            out.append(_decode_document(self.doc, self.counters))
        self.doc, self.doc_bytes = [], 0
        self.opened_by_sep = True
        return self.end is not None and pos >= self.end

    def finish(self, out: list[str]) -> None:
        if self.doc:
            out.append(_decode_document(self.doc, self.counters))

    def _content(self, segment: bytes, out: list[str]) -> None:
        if b"\r" in segment:  # CRLF: drop one \r at the end of every line
            segment = segment.replace(b"\r\n", b"\n")
            if segment.endswith(b"\r"):
                segment = segment[:-1]
        if self.doc_bytes + len(segment) > self.max_doc:
            for line in segment.split(b"\n"):  # rare: split exactly as line by line would
                self._line(line, out)
            return
        self.doc.append(segment)
        self.doc_bytes += len(segment) + 1

    def _line(self, raw: bytes, out: list[str]) -> None:
        if self.doc_bytes + len(raw) > self.max_doc and self.doc:
            self.counters["documents_split"] += 1
            out.append(_decode_document(self.doc, self.counters))
            self.doc, self.doc_bytes = [], 0
        self.doc.append(raw)
        self.doc_bytes += len(raw) + 1


def _text_documents(unit: Unit, options: InputOptions, counters: Counters) -> Iterator[str]:
    boundary = _Boundary.of(options)
    max_line = options.max_line_bytes
    stream = open_binary(unit.path)
    with stream:
        if unit.start == 0:
            regions = _regions(stream, 0, max_line)
        else:
            # Skip to the first separator at or after the unit start: what comes before
            # it belongs to a document of the previous unit.
            stream.seek(unit.start - 1)
            at_line_start = stream.read(1) == b"\n"
            found = _find_separator(stream, unit.start, at_line_start, boundary.candidates,
                                    boundary.is_sep, max_line)
            if found is None:
                return
            regions = _regions(stream, found[0], max_line, found[1])
        assembler = _TextAssembler(options, counters, unit.end, opened_by_sep=False)
        out: list[str] = []
        for pos, data, kind in regions:
            done = assembler.region(pos, data, out) if kind == REGION else assembler.piece(data, kind, out)
            yield from out
            out.clear()
            if done:
                return
        assembler.finish(out)
        yield from out
