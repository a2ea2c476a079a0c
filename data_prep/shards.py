"""Arrow IPC shard files: writing parts, and the memory-mapped reader used by training.

A shard is an Arrow IPC *file* (random access, memory-mappable) with one row per
document and the columns of :data:`data_prep.annotate.SCHEMA`. The manifest
(``manifest.json``) lists every shard with its size and sha256; the reader checks them so
that a truncated or modified shard fails loudly instead of feeding garbage to training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pathlib

import numpy as np
import pyarrow as pa

from data_prep import SCHEMA_VERSION

MANIFEST = "manifest.json"


class ShardError(Exception):
    """A shard or manifest is missing, truncated, modified or unreadable."""


def sha256_file(path: str | os.PathLike, block: int = 8 << 20) -> str:
    """Hex sha256 of a file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            data = f.read(block)
            if not data:
                return h.hexdigest()
            h.update(data)


class _HashingFile(io.FileIO):
    """A file that hashes the bytes written to it: a finished part's sha256 without reading the
    file back (a 1 GB/s pass over every shard, at the end of the run for the last one)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.sha256 = hashlib.sha256()

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self.sha256.update(view)
        done = 0
        while done < len(view):  # raw writes may be partial
            done += super().write(view[done:])
        return done


class PartWriter:
    """Writes record batches to ``<path>.tmp`` and renames to ``path`` only on ``close``,
    so a crash never leaves a file that looks complete."""

    def __init__(self, path: str, schema: pa.Schema):
        self.path = path
        self.tmp = path + ".tmp"
        self._file = _HashingFile(self.tmp, "wb")
        self._sink = pa.PythonFile(self._file, mode="w")
        self._writer = pa.ipc.new_file(self._sink, schema)
        self.num_documents = 0
        self.num_tokens = 0

    def write(self, batch: pa.RecordBatch, num_tokens: int) -> None:
        self._writer.write_batch(batch)
        self.num_documents += batch.num_rows
        self.num_tokens += num_tokens

    @property
    def bytes_written(self) -> int:
        return self._sink.tell()

    def close(self) -> dict:
        """Finish the file; returns its manifest entry (without the final name)."""
        self._writer.close()
        self._sink.close()
        os.replace(self.tmp, self.path)
        return {
            "num_documents": self.num_documents,
            "num_tokens": self.num_tokens,
            "sha256": self._file.sha256.hexdigest(),
            "bytes": os.path.getsize(self.path),
        }

    def abort(self) -> None:
        """Drop the unfinished file."""
        try:
            self._writer.close()
        except Exception:
            pass
        try:
            self._sink.close()
        finally:
            if os.path.exists(self.tmp):
                os.remove(self.tmp)


@dataclasses.dataclass
class Document:
    """One document. Arrays are zero-copy views into the memory-mapped shard."""

    token_ids: np.ndarray  # int32
    sentence_starts: np.ndarray  # int32, token offsets, first is 0
    word_starts: np.ndarray  # uint8 0/1, same length as token_ids
    phrase_spans: np.ndarray  # int32, shape (k, 2): [start, end) token offsets, sorted, disjoint
    entity_spans: np.ndarray  # int32, shape (k, 2): likewise; may overlap phrase spans


def _list_parts(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, values) numpy views of a list column chunk, zero-copy."""
    offsets = column.offsets.to_numpy(zero_copy_only=True)
    values = column.values.to_numpy(zero_copy_only=True)
    return offsets, values


class _Batch:
    __slots__ = ("tok_off", "tok", "sent_off", "sent", "word", "phrase", "entity")

    def __init__(self, batch: pa.RecordBatch):
        self.tok_off, self.tok = _list_parts(batch.column("token_ids"))
        self.sent_off, self.sent = _list_parts(batch.column("sentence_starts"))
        # word_starts shares the token offsets: the writer packs them with the same ones.
        _, self.word = _list_parts(batch.column("word_starts"))
        self.phrase = _list_parts(batch.column("phrase_spans"))
        self.entity = _list_parts(batch.column("entity_spans"))


def _row_spans(parts: tuple[np.ndarray, np.ndarray], row: int) -> np.ndarray:
    """Row ``row`` of a flattened span column as a (k, 2) view."""
    offsets, values = parts
    return values[offsets[row]:offsets[row + 1]].reshape(-1, 2)


class ShardedCorpus:
    """Random access to the documents of an encoded corpus directory.

    Every shard is memory-mapped; ``document(i)`` is O(log #batches) with zero-copy numpy
    views. With ``verify=True`` (default) each shard's size and sha256 are checked against
    the manifest first (reads every byte once); with ``verify=False`` only sizes are
    checked. Problems raise :class:`ShardError` naming the file.
    """

    def __init__(self, directory: str | os.PathLike, verify: bool = True):
        self.directory = pathlib.Path(directory)
        manifest_path = self.directory / MANIFEST
        try:
            with open(manifest_path, encoding="utf-8") as f:
                self.manifest: dict = json.load(f)
        except FileNotFoundError:
            raise ShardError(
                f"{manifest_path}: no manifest; the encode run did not finish. "
                "Re-run `python -m data_prep encode` with the same arguments."
            ) from None
        except ValueError as exc:
            raise ShardError(f"{manifest_path}: unreadable manifest ({exc}); re-run encode") from None
        if not isinstance(self.manifest, dict):
            raise ShardError(f"{manifest_path}: not a manifest (a JSON object); re-run encode")
        self._check_schema_version()
        try:
            tokenizer = self.manifest["tokenizer"]
            self.tokenizer_path = self.directory / tokenizer["file"]
            self._batches: list[_Batch] = []
            starts = [0]
            self.num_tokens = 0
            self._maps = []
            for entry in self.manifest["shards"]:
                for rb in self._open_shard(entry, verify):
                    self._batches.append(_Batch(rb))
                    starts.append(starts[-1] + rb.num_rows)
                self.num_tokens += int(entry["num_tokens"])
        except (KeyError, TypeError, ValueError, AttributeError, pa.ArrowException) as exc:
            # A manifest or shard that parses but does not have the expected structure.
            raise ShardError(f"{manifest_path}: malformed manifest or shard ({type(exc).__name__}: "
                             f"{exc}); re-run `python -m data_prep encode` into {self.directory}") from None
        self._starts = np.asarray(starts, dtype=np.int64)
        if verify and tokenizer.get("sha256") and self.tokenizer_path.is_file() \
                and sha256_file(self.tokenizer_path) != tokenizer["sha256"]:
            raise ShardError(f"{self.tokenizer_path}: not the tokenizer these shards were encoded "
                             f"with (sha256 differs from the manifest); copy the original back or "
                             f"re-run `python -m data_prep encode`")

    def max_token_id(self) -> int:
        """The largest token id in the corpus (-1 when empty): must be below the tokenizer's size."""
        return max((int(b.tok.max()) for b in self._batches if b.tok.size), default=-1)

    def _check_schema_version(self) -> None:
        """Refuse shards written with another column layout: reading them would fail later, or
        worse, silently lose the gazetteer spans."""
        found = self.manifest.get("schema_version")
        if found != SCHEMA_VERSION:
            raise ShardError(
                f"{self.directory}: shards have schema version {found}, this reader needs version "
                f"{SCHEMA_VERSION} (version 2 replaced the `spans` column by `phrase_spans` and "
                "`entity_spans`). Re-run `python -m data_prep encode` into this directory to rebuild "
                "them (gazetteers now go in --phrase-gazetteer / --entity-gazetteer)."
            )

    def _open_shard(self, entry: dict, verify: bool) -> list[pa.RecordBatch]:
        path = self.directory / entry["file"]
        advice = "re-run `python -m data_prep encode` with the same arguments to rebuild it"
        if not path.is_file():
            raise ShardError(f"{path}: shard missing; {advice}")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise ShardError(
                f"{path}: shard is {size} bytes, manifest says {entry['bytes']} "
                f"(truncated or modified); {advice}"
            )
        if verify and sha256_file(path) != entry["sha256"]:
            raise ShardError(f"{path}: sha256 does not match the manifest (modified or corrupt); {advice}")
        try:
            source = pa.memory_map(str(path), "r")
            reader = pa.ipc.open_file(source)
            batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
        except (pa.ArrowException, OSError) as exc:
            raise ShardError(f"{path}: not a readable Arrow IPC file ({exc}); {advice}") from None
        rows = sum(b.num_rows for b in batches)
        if rows != entry["num_documents"]:
            raise ShardError(f"{path}: {rows} documents, manifest says {entry['num_documents']}; {advice}")
        self._maps.append(source)
        return batches

    def __len__(self) -> int:
        return int(self._starts[-1])

    def document(self, index: int) -> Document:
        """Document ``index`` (global, in shard order); negative indices count from the end."""
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"document index {index} out of range for {n} documents")
        b = int(np.searchsorted(self._starts, index, side="right")) - 1
        batch = self._batches[b]
        r = index - int(self._starts[b])
        lo, hi = batch.tok_off[r], batch.tok_off[r + 1]
        s_lo, s_hi = batch.sent_off[r], batch.sent_off[r + 1]
        return Document(
            token_ids=batch.tok[lo:hi],
            sentence_starts=batch.sent[s_lo:s_hi],
            word_starts=batch.word[lo:hi],
            phrase_spans=_row_spans(batch.phrase, r),
            entity_spans=_row_spans(batch.entity, r),
        )

    def __getitem__(self, index: int) -> Document:
        return self.document(index)

    def __iter__(self):
        for i in range(len(self)):
            yield self.document(i)
