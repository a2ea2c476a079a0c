"""Benchmark of ``data_prep encode`` with Hugging Face tokenizers (``tokenizer.json``).

For a WordPiece and a byte-level BPE tokenizer (trained here with ``tokenizers`` on the corpus,
vocab 32000), in one run, interleaved ``--repeats`` times:

* raw: a subprocess that loads the tokenizer, reads the corpus, cuts it into the paragraphs
  ``encode`` encodes (``split_paragraphs`` of each document: the same tokens) and calls
  ``Tokenizer.encode_batch(paragraphs, add_special_tokens=False)`` with ``RAYON_NUM_THREADS=T``;
* end to end: ``python -m data_prep encode --workers T --tokenizer tokenizer.json`` (T worker
  processes of one thread each; raw's ``RAYON_NUM_THREADS`` is not passed on to them).

Both timed from process start to exit and as the encode call (raw: ``encode_batch`` only; end to
end: what the tool reports). Target: end to end >= 0.85 of raw. Usage::

    python bench/data_prep_hf.py [--corpus ...] [--threads 2] [--repeats 3] [--record bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and its data_prep.py would hide the
# data_prep package: the repository root comes first instead.
HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]


def _load_bench():
    """bench/data_prep.py (the shared measuring helpers), under another name than the
    ``data_prep`` package it measures."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_data_prep", Path(__file__).with_name("data_prep.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_bench()

SECTION = "## Data preprocessing with Hugging Face tokenizers (bench/data_prep_hf.py)"

RAW_SCRIPT = (
    "import json, sys, time; from tokenizers import Tokenizer;"
    "from data_prep.textutil import split_paragraphs;"
    "tok = Tokenizer.from_file(sys.argv[1]);"
    "docs = open(sys.argv[2], encoding='utf-8').read().split('\\n' + sys.argv[3] + '\\n');"
    "paras = [p for d in docs for p in split_paragraphs(d)];"
    "t = time.perf_counter(); out = tok.encode_batch(paras, add_special_tokens=False);"
    "s = time.perf_counter() - t;"
    "print(json.dumps({'encode_s': s, 'tokens': sum(len(e.ids) for e in out)}))"
)


def build(kind: str, corpus: Path, path: Path, vocab: int) -> Path:
    """Train the tokenizer once per corpus and kind (cached in the workdir)."""
    if path.exists():
        return path
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    from data_prep.textutil import split_paragraphs
    docs = corpus.read_text(encoding="utf-8").split(f"\n{bench.SEP}\n")
    text = [p for d in docs for p in split_paragraphs(d)]
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab,
                                      special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(text, trainer)
    tok.save(str(path))
    return path


def measure(kind: str, tokenizer: Path, args) -> dict:
    raws, e2es = [], []
    # Same threads on both sides: raw's pool has T threads; end to end runs T worker processes,
    # each single-threaded (the encoder's choice), so it must not inherit raw's setting.
    for name in ("RAYON_NUM_THREADS", "TOKENIZERS_PARALLELISM"):
        os.environ.pop(name, None)
    for _ in range(args.repeats):
        os.environ["RAYON_NUM_THREADS"] = str(args.threads)  # raw's threads (the subprocess inherits)
        raw = bench.run_measured([sys.executable, "-c", RAW_SCRIPT, str(tokenizer), str(args.corpus),
                                  bench.SEP])
        del os.environ["RAYON_NUM_THREADS"]
        raw.update(json.loads(raw["stdout"]))
        raws.append(raw)
        e2es.append(bench.run_end_to_end(args.corpus, tokenizer, args.workdir / f"out-{kind}",
                                         args.threads))
        print(f"{kind}: raw {raw['tokens'] / raw['encode_s']:,.0f} tok/s (call), end to end "
              f"{e2es[-1]['encode_tokens_per_s']:,.0f} (call)", file=sys.stderr)
    med = lambda xs, f: statistics.median(map(f, xs))  # noqa: E731
    return {
        "tokens": [raws[0]["tokens"], e2es[0]["tokens"]],
        "raw_wall_s": [round(x["wall_s"], 2) for x in raws],
        "e2e_wall_s": [round(x["wall_s"], 2) for x in e2es],
        "raw_encode_s": [round(x["encode_s"], 2) for x in raws],
        "e2e_encode_s": [round(x["encode_s"], 2) for x in e2es],
        "ratio_start_to_exit": round(med(raws, lambda x: x["wall_s"]) / med(e2es, lambda x: x["wall_s"]), 3),
        "ratio_encode_call": round(med(raws, lambda x: x["encode_s"]) / med(e2es, lambda x: x["encode_s"]), 3),
        "cpu_s_per_mtok": [round(med(raws, lambda x: x["cpu_s"] / x["tokens"] * 1e6), 3),
                           round(med(e2es, lambda x: x["cpu_s"] / x["tokens"] * 1e6), 3)],
    }


def record(path: Path, r: dict) -> None:
    lines = [SECTION, "",
             f"Date: {r['date_utc']}. Machine: {r['machine']} (load average at end "
             f"{', '.join(f'{x:.1f}' for x in r['load_average_at_end'])}; shared with other jobs).",
             f"Command: `{r['command']}`. Corpus `{r['corpus']}`; {r['threads']} workers vs "
             f"{r['threads']} threads; tokenizers trained here, vocab {r['vocab_size']}.", "",
             "| tokenizer | tokens raw / e2e | raw wall s | e2e wall s | raw call s | e2e call s | "
             "e2e/raw start to exit | **e2e/raw encode call** (target >= 0.85) | CPU-s per Mtok raw / e2e |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for kind, m in r["results"].items():
        lines.append(f"| {kind} | {m['tokens'][0]:,} / {m['tokens'][1]:,} | {m['raw_wall_s']} | "
                     f"{m['e2e_wall_s']} | {m['raw_encode_s']} | {m['e2e_encode_s']} | "
                     f"{m['ratio_start_to_exit']} | **{m['ratio_encode_call']}** | "
                     f"{m['cpu_s_per_mtok'][0]} / {m['cpu_s_per_mtok'][1]} |")
    bench.replace_section(path, SECTION, "\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=Path("/work/shared/corpora/en_medium.txt"))
    p.add_argument("--workdir", type=Path, default=Path("/tmp/plmscale-bench-data-prep-hf"))
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--vocab-size", type=int, default=32000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--record", type=Path, default=None)
    args = p.parse_args(argv)
    bench_corpus = bench.CORPORA / args.corpus.name
    args.corpus = bench_corpus if bench_corpus.is_file() else args.corpus
    args.workdir.mkdir(parents=True, exist_ok=True)
    result = {"date_utc": bench.now_utc(), "machine": bench.machine(), "corpus": str(args.corpus),
              "threads": args.threads, "vocab_size": args.vocab_size,
              "command": " ".join(["python", "bench/data_prep_hf.py", *(argv or sys.argv[1:])]),
              "results": {}}
    for kind in ("wordpiece", "byte-level BPE"):
        name = kind.split()[0].replace("-", "")
        tokenizer = build(name, args.corpus, args.workdir / f"{name}-{args.vocab_size}.json",
                          args.vocab_size)
        result["results"][kind] = measure(name, tokenizer, args)
    result["load_average_at_end"] = os.getloadavg()
    print(json.dumps(result, indent=1))
    if args.record:
        record(args.record, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
