"""Command line: ``python -m data_prep`` / ``plmscale-data``.

Subcommands::

    train-tokenizer --input FILE_OR_GLOB [...] --output PATH.model --vocab-size N
    encode --input FILE_OR_GLOB [...] --tokenizer PATH.model --output DIR [--workers N]
           [--phrase-gazetteer FILE] [--entity-gazetteer FILE] [--language en|zh|auto]
           [--user-dict FILE]

Run under ``mpiexec -n N`` to spread ``encode`` over ranks (a shared output directory is
required across nodes). Each subcommand prints a JSON summary on stdout (rank 0 only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures.process import BrokenProcessPool

# Set before numpy is imported; a user's own settings are kept. (1) numpy's OpenBLAS starts a
# thread per core that spins (sched_yield) for a while after start-up: data_prep calls no BLAS
# routine, and on a small machine that thread takes a core from the encode threads. (2) numpy asks
# for transparent huge pages on large arrays, whose first touch can wait for the kernel to compact
# memory: data_prep's arrays are read once, the first touch is most of their cost. Measured on a
# 12 MB Han paragraph, 2 cores, with the in-place word-start pass (bench/RESULTS.md): 2.08 ->
# 1.81 CPU-s.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

from data_prep.inputs import MB, InputOptions  # noqa: E402 (after the setting above)


def _add_input_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", nargs="+", required=True, metavar="FILE_OR_GLOB",
                   help="input files or globs (quote globs); gzip/zstd detected automatically")
    p.add_argument("--format", choices=("text", "jsonl"), default="text")
    p.add_argument("--text-field", default="text", help="JSONL field holding the text")
    p.add_argument("--doc-separator", default=None, metavar="LINE",
                   help="a line that separates documents in text input (default: blank lines)")
    p.add_argument("--doc-regex", default=None, metavar="REGEX",
                   help="a line fully matching REGEX starts a document and stays its first line "
                        "(no ^ or $ needed; e.g. WikiText titles: ' = [^=].* = '); instead of "
                        "--doc-separator")
    p.add_argument("--max-line-mb", type=float, default=10.0,
                   help="longer text lines are split, longer JSONL records skipped (default 10)")
    p.add_argument("--max-document-mb", type=float, default=64.0,
                   help="longer documents are split at line boundaries (default 64)")


def _input_options(args) -> InputOptions:
    try:
        return InputOptions(
            format=args.format,
            text_field=args.text_field,
            doc_separator=args.doc_separator,
            doc_regex=args.doc_regex,
            max_line_bytes=int(args.max_line_mb * MB),
            max_document_bytes=int(args.max_document_mb * MB),
        )
    except ValueError as error:  # a bad option: say which, no traceback
        raise SystemExit(f"error: {error}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plmscale-data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train-tokenizer", help="train a sentencepiece model on a corpus sample")
    _add_input_arguments(t)
    t.add_argument("--output", required=True, metavar="PATH.model")
    t.add_argument("--vocab-size", type=int, required=True)
    t.add_argument("--model-type", choices=("unigram", "bpe"), default="unigram")
    t.add_argument("--sample-documents", type=int, default=1_000_000,
                   help="at most this many documents in the training sample (default 1M)")
    t.add_argument("--sample-bytes", type=int, default=1 << 30,
                   help="at most about this many bytes in the training sample (default 1 GiB)")
    t.add_argument("--character-coverage", type=float, default=0.9995)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=None, help="training threads (default: all cores)")

    e = sub.add_parser("encode", help="encode a corpus into Arrow shards + manifest.json")
    _add_input_arguments(e)
    e.add_argument("--tokenizer", required=True, metavar="PATH.model|tokenizer.json",
                   help="sentencepiece model, or a Hugging Face tokenizer.json (WordPiece, "
                        "byte-level BPE, Unigram)")
    e.add_argument("--output", required=True, metavar="DIR")
    e.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes per rank (default: all cores)")
    e.add_argument("--language", choices=("en", "zh", "auto"), default="auto",
                   help="en: Han text one word per character; zh/auto: jieba words (rjieba, the "
                        "Rust jieba; pure-Python jieba if it is not installed)")
    e.add_argument("--user-dict", default=None, metavar="FILE",
                   help="jieba-format user dictionary for Han words: 'word [frequency] [tag]' per line")
    e.add_argument("--phrase-gazetteer", default=None, metavar="FILE",
                   help="phrases (one per line) to store as token spans in the phrase_spans column "
                        "(ERNIE phrase masking)")
    e.add_argument("--entity-gazetteer", default=None, metavar="FILE",
                   help="entities (one per line) to store as token spans in the entity_spans column "
                        "(ERNIE entity masking)")
    e.add_argument("--shard-size-mb", type=float, default=512.0,
                   help="start a new output shard once one reaches this size (default 512; "
                        "a default 256 MB unit of text makes one shard of about 280 MB)")
    e.add_argument("--split-size-mb", type=float, default=256.0,
                   help="input bytes per work unit: MPI distribution and resume granularity")
    e.add_argument("--chunk-size-mb", type=float, default=1.0,
                   help="input per task sent to a worker (default 1)")
    bar = e.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="show the progress bar even when stderr is not a terminal")
    bar.add_argument("--no-progress", dest="progress", action="store_false")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``plmscale-data`` / ``python -m data_prep``; returns the exit code."""
    from data_prep.inputs import InputError
    try:
        return _run(build_parser().parse_args(argv))
    except InputError as error:  # a user's file, not a bug: the message says which and why
        print(f"error: {error}", file=sys.stderr)
        return 1


def _run(args) -> int:
    if args.command == "train-tokenizer":
        from data_prep.tokenizer import train_tokenizer

        summary = train_tokenizer(
            args.input,
            args.output,
            vocab_size=args.vocab_size,
            model_type=args.model_type,
            input_options=_input_options(args),
            sample_documents_max=args.sample_documents,
            sample_bytes_max=args.sample_bytes,
            character_coverage=args.character_coverage,
            seed=args.seed,
            num_threads=args.threads,
        )
        print(json.dumps(summary, indent=1))
        return 0

    from data_prep.encode import EncodeConfig, encode
    from data_prep.parallel import get_comm
    from data_prep.segment import UserDictError

    if args.workers < 1:
        raise SystemExit("--workers must be >= 1")
    from data_prep.hf_tokenizer import is_hf_tokenizer
    if is_hf_tokenizer(args.tokenizer) and (args.language == "zh" or args.user_dict
                                            or args.phrase_gazetteer or args.entity_gazetteer):
        raise SystemExit(f"error: {args.tokenizer} is a Hugging Face tokenizer, whose whole words "
                         "are its own: --language zh, --user-dict and gazetteers need a "
                         "sentencepiece model (use --language en or auto)")
    cfg = EncodeConfig(
        inputs=args.input,
        tokenizer=args.tokenizer,
        output=args.output,
        input_options=_input_options(args),
        workers=args.workers,
        language=args.language,
        phrase_gazetteer=args.phrase_gazetteer,
        entity_gazetteer=args.entity_gazetteer,
        user_dict=args.user_dict,
        shard_bytes=int(args.shard_size_mb * MB),
        split_bytes=max(1, int(args.split_size_mb * MB)),
        chunk_bytes=max(1, int(args.chunk_size_mb * MB)),
        progress=args.progress,
    )
    comm = get_comm()
    # Timed from here: after interpreter start-up and imports (a fixed ~0.2-0.3 s that
    # does not grow with the corpus), including tokenizer loading, reading, annotation,
    # writing, checksums and the manifest.
    started = time.perf_counter()
    try:
        manifest = encode(cfg, comm)
    except UserDictError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenProcessPool:
        # The traceback alone does not tell the user what happened or what to do.
        print(
            "error: a worker process died (killed, or out of memory); no manifest was written. "
            "Re-run the same command to resume: finished units are kept.",
            file=sys.stderr,
        )
        return 1
    if comm.rank == 0:
        summary = {
            "output": args.output,
            "num_documents": manifest["num_documents"],
            "num_tokens": manifest["num_tokens"],
            "shards": len(manifest["shards"]),
            "resumed_units": manifest.get("resumed_units", 0),
            "bad_input": manifest["bad_input"],
            "seconds": round(time.perf_counter() - started, 3),
        }
        summary["tokens_per_second"] = round(manifest["num_tokens"] / max(summary["seconds"], 1e-9))
        print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
