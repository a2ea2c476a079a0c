"""Encode a corpus into Arrow shards plus ``manifest.json``: the orchestration.

Flow, per MPI rank (one rank without MPI):

1. Every rank expands the inputs and cuts them into units the same way
   (:func:`data_prep.inputs.plan_units`); unit ``i`` goes to rank ``i % size``.
2. Rank 0 prepares the output directory; a complete earlier run with the same
   fingerprint is verified and kept.
3. Each rank streams its units: the main process reads documents and groups them into
   chunks, a process pool annotates chunks, and results are written back *in input
   order* into ``parts/uNNNNN-pNNN.arrow`` (a new part when ``shard_bytes`` is reached).
   A finished unit gets ``parts/uNNNNN.json`` listing its parts with sha256. On a re-run,
   units whose record and parts verify are skipped (resume).
4. Rank 0 gathers the unit records, renames parts to ``shard-00000.arrow``, ... in unit
   order, writes the manifest atomically and removes ``parts/``.

Since chunk and shard boundaries depend only on the input bytes, the output is
byte-identical for any number of workers and ranks.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa

from data_prep import SCHEMA_VERSION, parallel, segment, worker
from data_prep.annotate import SCHEMA
from data_prep.hf_tokenizer import is_hf_tokenizer
from data_prep.inputs import (
    MB,
    Counters,
    InputOptions,
    Unit,
    expand_inputs,
    iter_documents,
    plan_units,
)
from data_prep.shards import MANIFEST, PartWriter, ShardedCorpus, ShardError, sha256_file

TOKENIZER_FILE = "tokenizer.model"
HF_TOKENIZER_FILE = "tokenizer.json"
PARTS_DIR = "parts"

POLICIES = {
    "invalid_utf8_lines": "repair: undecodable bytes replaced by U+FFFD (count of lines)",
    "lone_surrogates": "repair: lone UTF-16 surrogates replaced by U+FFFD (count of lines/records)",
    "nul_bytes": "repair: NUL characters removed (count of lines/records)",
    "empty_documents": "skip: empty or whitespace-only documents",
    "long_lines_split": "split: text lines over max_line_bytes cut at character boundaries",
    "long_lines_skipped": "skip: JSONL records over max_line_bytes",
    "malformed_json": "skip: JSONL lines that are not a JSON object",
    "missing_text_field": "skip: JSON objects without a string text field",
    "documents_split": "split: documents over max_document_bytes cut at line boundaries",
}
STATISTICS = ("input_files", "input_bytes", "documents_read", "documents_written", "tokens", "characters")


@dataclasses.dataclass
class EncodeConfig:
    """Everything an encode run needs. Sizes are in bytes."""

    inputs: list[str]
    tokenizer: str
    output: str
    input_options: InputOptions = dataclasses.field(default_factory=InputOptions)
    workers: int = 1
    language: str = "auto"
    phrase_gazetteer: str | None = None  # phrase list for the phrase_spans column
    entity_gazetteer: str | None = None  # entity list for the entity_spans column
    user_dict: str | None = None  # jieba-format user dictionary for Han words
    shard_bytes: int = 512 * MB  # output: start a new shard once a part reaches this
    split_bytes: int = 256 * MB  # input: size of the byte ranges that are units
    chunk_bytes: int = 1 * MB  # input characters per chunk sent to a worker
    window: int = 0  # chunks in flight; 0 means 2 * workers + 1
    progress: bool | None = None  # None: only when stderr is a terminal


def _segmenter_record(cfg: EncodeConfig, announce: bool) -> dict | None:
    """The Han segmenter the run uses (None with ``--language en``), as in the manifest."""
    if cfg.language == "en" or is_hf_tokenizer(cfg.tokenizer):  # HF: its own words (hf_tokenizer)
        if cfg.user_dict:
            raise segment.UserDictError("--user-dict needs --language zh or auto: with en, Han text is one word per character")
        return None
    if cfg.user_dict:
        segment.read_user_dict(cfg.user_dict)  # a bad file fails here, before any work starts
    return segment.describe(segment.choose_backend(announce), cfg.user_dict)


def _fingerprint(cfg: EncodeConfig, paths: list[str], tokenizer_sha: str, gazetteer_shas: dict,
                 segmenter: dict | None) -> str:
    """Hash of everything that determines the output bytes (not workers or ranks)."""
    files = []
    for p in paths:
        st = os.stat(p)
        files.append([p, st.st_size, st.st_mtime_ns])
    spec = {
        "schema_version": SCHEMA_VERSION,
        "tokenizer_sha256": tokenizer_sha,
        "files": files,
        "input_options": dataclasses.asdict(cfg.input_options),
        "language": cfg.language,
        **gazetteer_shas,
        "segmenter": segmenter,
        "shard_bytes": cfg.shard_bytes,
        "split_bytes": cfg.split_bytes,
        "chunk_bytes": cfg.chunk_bytes,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _gazetteer_shas(cfg: EncodeConfig) -> dict[str, str | None]:
    """sha256 of each gazetteer file (None where not given), keyed as in the manifest config."""
    files = {"phrase": cfg.phrase_gazetteer, "entity": cfg.entity_gazetteer}
    return {f"{kind}_gazetteer_sha256": sha256_file(path) if path else None for kind, path in files.items()}


def _chunks(docs: Iterable[str], chunk_chars: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    size = 0
    for doc in docs:
        chunk.append(doc)
        size += len(doc)
        if size >= chunk_chars:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


class _InProcess:
    """Executor stand-in for workers=1: annotate in the main process."""

    def submit(self, fn, *args):
        future = concurrent.futures.Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, **_):
        pass


# The last ``workers`` byte ranges of a unit are each cut into ``workers`` sub-ranges (none
# smaller than this), so that the workers finish the unit together rather than one of them
# annotating the last whole chunk while the others wait (with 1 MB chunks of byte-level BPE on
# 2 cores, a chunk is ~0.13 s of one worker).
MIN_SUBRANGE_BYTES = 4096


def _subranges(sub: Unit, pieces: int) -> list[Unit]:
    """``sub`` cut into up to ``pieces`` byte ranges of equal size (at least MIN_SUBRANGE_BYTES)."""
    size = max(-(-(sub.end - sub.start) // pieces), MIN_SUBRANGE_BYTES)
    return [Unit(sub.index, sub.path, s, min(s + size, sub.end)) for s in range(sub.start, sub.end, size)]


def _tasks(unit: Unit, cfg: EncodeConfig, counters: Counters):
    """The unit's tasks in input order, each a list of (function, argument) whose results, merged
    (:func:`_merge`), are one record batch of the output.

    An uncompressed unit is cut into byte ranges of ``chunk_bytes`` that workers read
    themselves (the ownership rule of :mod:`data_prep.inputs` gives every document to
    exactly one range), so the main process does no parsing. A range's batch is that of the
    documents it owns, so sub-ranges of it give the same documents and, merged, the same batch:
    the last ranges are split that way to balance the end of the unit (MIN_SUBRANGE_BYTES); the
    output bytes depend on the ranges alone. A compressed unit can only be read sequentially: the
    main process reads it and sends documents in chunks.
    """
    if not unit.compressed:
        starts = range(unit.start, unit.end, cfg.chunk_bytes)
        split_from = len(starts) - cfg.workers if cfg.workers > 1 else len(starts)
        for k, start in enumerate(starts):
            sub = Unit(unit.index, unit.path, start, min(start + cfg.chunk_bytes, unit.end))
            pieces = _subranges(sub, cfg.workers) if k >= split_from else [sub]
            yield [(worker.annotate_range, (piece, cfg.input_options)) for piece in pieces]
    else:
        for chunk in _chunks(iter_documents(unit, cfg.input_options, counters), cfg.chunk_bytes):
            yield [(worker.annotate, (chunk,))]


def _merge(results: list[tuple]) -> tuple:
    """One task's (record batch or None, counters) from its parts' results, in order."""
    if len(results) == 1:
        return results[0]
    batches = [batch for batch, _ in results if batch is not None]
    counters = Counters()
    for _, stats in results:
        counters.add(stats)
    batch = pa.concat_batches(batches) if len(batches) > 1 else (batches[0] if batches else None)
    return batch, dict(counters)


def _ordered_results(executor, tasks, window: int):
    """Submit the tasks' parts, at most ``window`` in flight, and yield each task's merged result
    in submission order."""
    pending: collections.deque = collections.deque()  # (futures of one task)
    in_flight = 0
    for parts in tasks:
        pending.append([executor.submit(fn, *args) for fn, args in parts])
        in_flight += len(parts)
        while in_flight >= window:
            futures = pending.popleft()
            in_flight -= len(futures)
            yield _merge([f.result() for f in futures])
    while pending:
        yield _merge([f.result() for f in pending.popleft()])


class _Progress:
    """tqdm bar over units with documents, tokens and tokens/s; does nothing when disabled
    (and then never imports tqdm, which is a measurable part of a short run's start-up)."""

    def __init__(self, total_units: int, enabled: bool | None):
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total_units, unit="unit", dynamic_ncols=True)
        self.docs = 0
        self.tokens = 0
        self.start = time.monotonic()

    def chunk(self, docs: int, tokens: int) -> None:
        if self.bar is None:
            return
        self.docs += docs
        self.tokens += tokens
        rate = self.tokens / max(time.monotonic() - self.start, 1e-9)
        self.bar.set_postfix_str(f"docs={self.docs:,} tokens={self.tokens:,} {rate:,.0f} tok/s", refresh=False)
        self.bar.update(0)

    def units_done(self, count: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Encoder:
    """One rank's view of an encode run; use :func:`encode` to run it."""

    def __init__(self, cfg: EncodeConfig, comm):
        self.cfg = cfg
        self.comm = comm
        self.out = Path(cfg.output)
        self.parts = self.out / PARTS_DIR
        self.paths = expand_inputs(cfg.inputs)
        self.units = plan_units(self.paths, cfg.split_bytes)
        self.tokenizer_sha = sha256_file(cfg.tokenizer)
        # A Hugging Face tokenizer keeps its name, so that readers know which kind it is.
        self.tokenizer_file = HF_TOKENIZER_FILE if is_hf_tokenizer(cfg.tokenizer) else TOKENIZER_FILE
        self.gazetteer_shas = _gazetteer_shas(cfg)
        self.segmenter = _segmenter_record(cfg, announce=comm.rank == 0)
        self.fingerprint = _fingerprint(cfg, self.paths, self.tokenizer_sha, self.gazetteer_shas, self.segmenter)
        self.skipped_units = 0

    # ------------------------------------------------------------ rank 0: setup/finish
    def prepare(self) -> dict | None:
        """Rank 0: make the output dir; return the existing manifest if already complete."""
        self.out.mkdir(parents=True, exist_ok=True)
        manifest_path = self.out / MANIFEST
        if manifest_path.exists():
            try:
                corpus = ShardedCorpus(self.out, verify=True)
                if corpus.manifest.get("fingerprint") == self.fingerprint:
                    return corpus.manifest
            except (ShardError, KeyError, TypeError):
                pass
            # Stale or broken: remove it first so that a half-finished run never looks done.
            manifest_path.unlink()
        self.parts.mkdir(exist_ok=True)
        tmp = self.out / (self.tokenizer_file + ".tmp")
        shutil.copyfile(self.cfg.tokenizer, tmp)
        os.replace(tmp, self.out / self.tokenizer_file)
        return None

    def finish(self, records: dict[int, dict]) -> dict:
        """Rank 0: move parts to their final shard names and write the manifest."""
        counters = Counters()
        counters["input_files"] = len(self.paths)
        counters["input_bytes"] = sum(os.path.getsize(p) for p in self.paths)
        shards = []
        for unit in self.units:
            record = records[unit.index]
            counters.add(record["counters"])
            for part in record["parts"]:
                name = f"shard-{len(shards):05d}.arrow"
                os.replace(self.parts / part["file"], self.out / name)
                shards.append({"file": name, **{k: part[k] for k in ("num_documents", "num_tokens", "sha256", "bytes")}})
        names = {s["file"] for s in shards}
        for stale in self.out.glob("shard-*.arrow"):
            if stale.name not in names:
                stale.unlink()
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "tokenizer": {"file": self.tokenizer_file, "sha256": self.tokenizer_sha},
            "columns": {
                "token_ids": "list<int32>: sentencepiece ids",
                "sentence_starts": "list<int32>: token offsets where sentences start, first is 0",
                "word_starts": "list<uint8>: 1 where a token begins a word",
                "phrase_spans": "list<int32>: flattened [start, end) token offsets of phrase "
                "gazetteer matches, sorted and disjoint",
                "entity_spans": "list<int32>: flattened [start, end) token offsets of entity "
                "gazetteer matches, sorted and disjoint (may overlap phrase spans)",
            },
            "num_documents": sum(s["num_documents"] for s in shards),
            "num_tokens": sum(s["num_tokens"] for s in shards),
            "shards": shards,
            "statistics": {k: counters[k] for k in STATISTICS},
            "bad_input": {k: counters[k] for k in POLICIES},
            "policies": POLICIES,
            "config": {
                "inputs": self.paths,
                "input_options": dataclasses.asdict(self.cfg.input_options),
                "language": self.cfg.language,
                **self.gazetteer_shas,
                "segmenter": self.segmenter,
                "shard_bytes": self.cfg.shard_bytes,
                "split_bytes": self.cfg.split_bytes,
                "chunk_bytes": self.cfg.chunk_bytes,
            },
            "fingerprint": self.fingerprint,
        }
        tmp = self.out / (MANIFEST + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, self.out / MANIFEST)
        shutil.rmtree(self.parts, ignore_errors=True)
        return manifest

    # ------------------------------------------------------------ every rank: units
    def my_units(self) -> list[Unit]:
        return [u for u in self.units if u.index % self.comm.size == self.comm.rank]

    def _record_path(self, unit: Unit) -> Path:
        return self.parts / f"u{unit.index:05d}.json"

    def _completed(self, unit: Unit) -> dict | None:
        """The unit's record if it finished earlier with this fingerprint and its parts verify."""
        try:
            with open(self._record_path(unit), encoding="utf-8") as f:
                record = json.load(f)
        except (FileNotFoundError, ValueError):
            return None
        if record.get("fingerprint") != self.fingerprint:
            return None
        for part in record["parts"]:
            path = self.parts / part["file"]
            if not path.is_file() or path.stat().st_size != part["bytes"] or sha256_file(path) != part["sha256"]:
                return None
        return record

    def run_units(self) -> dict[int, dict]:
        cfg = self.cfg
        mine = self.my_units()
        fault = os.environ.get(worker.FAULT_ENV, "")
        records: dict[int, dict] = {}
        todo = []
        for unit in mine:
            record = self._completed(unit)
            if record is not None:
                records[unit.index] = record
                self.skipped_units += 1
            else:
                todo.append(unit)
        if fault == f"rank-fail:{self.comm.rank}":
            raise RuntimeError(f"{worker.FAULT_ENV}: injected failure on rank {self.comm.rank}")
        progress = _Progress(len(mine), cfg.progress if self.comm.rank == 0 else False)
        progress.units_done(len(mine) - len(todo))
        executor = self._executor() if todo else None
        try:
            for done, unit in enumerate(todo, 1):
                records[unit.index] = self._encode_unit(unit, executor, progress)
                progress.units_done()
                if fault.startswith("main-kill-after-units:") and done == int(fault.split(":")[1]):
                    os.kill(os.getpid(), signal.SIGKILL)
        finally:
            progress.close()
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
        return records

    def _executor(self):
        cfg = self.cfg
        # One process per core: each encodes single-threaded (more threads would only
        # oversubscribe the cores); a lone process lets sentencepiece use them all.
        threads = 1 if cfg.workers > 1 else -1
        # Every worker of every rank uses the segmenter named in the manifest.
        backend = self.segmenter["name"] if self.segmenter else None
        init_args = (cfg.tokenizer, cfg.language, cfg.phrase_gazetteer, cfg.entity_gazetteer, threads,
                     cfg.user_dict, backend)
        worker.init(*init_args)  # in this process: workers=1 uses it, forked workers inherit it
        if cfg.workers == 1:
            return _InProcess()
        # fork starts workers instantly with the tables already built; under MPI, forking
        # an initialised MPI process is unsafe, so spawn fresh interpreters there.
        method = "spawn" if self.comm.size > 1 or parallel.launched_by_mpi() else "fork"
        return concurrent.futures.ProcessPoolExecutor(
            max_workers=cfg.workers,
            mp_context=multiprocessing.get_context(method),
            initializer=worker.init,
            initargs=init_args,
        )

    def _encode_unit(self, unit: Unit, executor, progress: _Progress) -> dict:
        cfg = self.cfg
        counters = Counters()
        window = cfg.window or 2 * cfg.workers + 1
        parts: list[dict] = []
        writer: PartWriter | None = None
        try:
            for batch, stats in _ordered_results(executor, _tasks(unit, cfg, counters), window):
                counters.add(stats)
                if batch is None:
                    continue  # a byte range inside one long document owns no document
                progress.chunk(batch.num_rows, stats["tokens"])
                if writer is None:
                    name = f"u{unit.index:05d}-p{len(parts):03d}.arrow"
                    writer = PartWriter(str(self.parts / name), SCHEMA)
                writer.write(batch, stats["tokens"])
                if writer.bytes_written >= cfg.shard_bytes:
                    parts.append({"file": Path(writer.path).name, **writer.close()})
                    writer = None
            if writer is not None:
                parts.append({"file": Path(writer.path).name, **writer.close()})
                writer = None
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        record = {
            "fingerprint": self.fingerprint,
            "unit": dataclasses.asdict(unit),
            "parts": parts,
            "counters": dict(counters),
        }
        tmp = self._record_path(unit).with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, self._record_path(unit))
        return record


def encode(cfg: EncodeConfig, comm=None) -> dict:
    """Run an encode job (all ranks call this); returns the manifest on every rank.

    On any failure the process exits non-zero; under MPI every rank is aborted so that
    nobody waits forever, and no manifest is written.
    """
    comm = comm or parallel.get_comm()
    try:
        encoder = Encoder(cfg, comm)
        existing = encoder.prepare() if comm.rank == 0 else None
        existing = comm.bcast(existing)
        if existing is not None:
            if comm.rank == 0:
                print(f"{cfg.output}: already complete, verified against manifest", file=sys.stderr)
            return existing
        comm.barrier()
        records = encoder.run_units()
        skipped = comm.gather(encoder.skipped_units)
        gathered = comm.gather(records)
        manifest = None
        if comm.rank == 0:
            merged: dict[int, dict] = {}
            for part in gathered:
                merged.update(part)
            manifest = encoder.finish(merged)
            # Reported to the caller only: the file must not depend on how the run went.
            manifest = dict(manifest, resumed_units=sum(skipped))
        manifest = comm.bcast(manifest)
        return manifest
    except BaseException:
        if comm.size > 1:
            traceback.print_exc()
            comm.abort(1)
        raise
