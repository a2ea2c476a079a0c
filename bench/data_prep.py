"""Benchmark of the offline preprocessing pipeline (``python -m data_prep encode``).

Measures, in one run on the same machine:

* raw: ``SentencePieceProcessor.encode(lines, num_threads=T)`` over the lines of the
  corpus (reading the file is not timed), tokens/s;
* end to end: ``python -m data_prep encode --workers T`` as a subprocess (reading,
  sentence/word annotation, Arrow writing, sha256, manifest), tokens/s timed two ways:
  from process start to exit, and the encode time the tool reports (after interpreter
  start-up and imports, a fixed ~0.2-0.3 s, like raw's, which is timed after its imports
  and model load); and peak RSS of the whole process tree (sampled every 50 ms);
* optionally, a large input (the corpus repeated to ``--big-gb``) for peak RSS at scale.

Raw and end-to-end runs are interleaved ``--repeats`` times and medians are reported,
because other jobs may share the machine. Usage::

    python bench/data_prep.py                         # en_medium, all cores, 3 repeats
    python bench/data_prep.py --big-gb 2              # also the 2 GB streaming run
    python bench/data_prep.py --record bench/RESULTS.md
    python bench/data_prep.py --language zh --repeat-mb 50 --record bench/RESULTS.md

With ``--language zh`` (corpus zh_small, vocab 8000 by default) it also measures, in
:mod:`data_prep_zh` beside this file: the corpus repeated to ``--repeat-mb`` (raw and end to
end interleaved again), the segmenter's own rate, its agreement with pure-Python jieba, and a
12 MB one-paragraph input against raw sentencepiece in time and memory.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import hashlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO.parent / "shared" / "corpora"
DEFAULT_CORPUS = {"en": CORPORA / "en_medium.txt", "zh": CORPORA / "zh_small.txt"}
DEFAULT_VOCAB = {"en": 32000, "zh": 8000}
SEP = "<|endoftext|>"
SECTION = "## Data preprocessing (bench/data_prep.py)"


def tree_rss_bytes(root: int, hwm: dict[int, int] | None = None) -> int:
    """Sum of VmRSS over ``root`` and all its descendants (Linux /proc). With ``hwm``, also keeps
    each process's own peak (VmHWM, the kernel's high-water mark, which no sampling misses)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:") and hwm is not None:
                        hwm[pid] = max(hwm.get(pid, 0), int(line.split()[1]) * 1024)
                    elif line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


def run_measured(cmd: list[str]) -> dict:
    """Run ``cmd``; wall time, peak process-tree RSS (sampled every 50 ms) and the sum over the
    tree of each process's own peak RSS (exact for one process; for several, an upper bound of the
    tree's peak, since their peaks need not coincide)."""
    import resource

    env = dict(os.environ, PYTHONPATH=str(REPO))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    hwm: dict[int, int] = {}
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_bytes(proc.pid, hwm))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_bytes": peak, "peak_hwm_sum_bytes": sum(hwm.values()),
            "stdout": out}


def ensure_tokenizer(corpus: Path, workdir: Path, vocab: int) -> Path:
    key = hashlib.sha256(f"{corpus.resolve()}:{corpus.stat().st_size}:{vocab}".encode()).hexdigest()[:12]
    model = workdir / f"tokenizer-{vocab}-{key}.model"
    if not model.exists():
        run_measured([sys.executable, "-m", "data_prep", "train-tokenizer", "--input", str(corpus),
                      "--doc-separator", SEP, "--output", str(model), "--vocab-size", str(vocab)])
    return model


def encode_cmd(corpus: Path, model: Path, out: Path, workers: int, language: str = "en") -> list[str]:
    return [sys.executable, "-m", "data_prep", "encode", "--input", str(corpus), "--doc-separator", SEP,
            "--tokenizer", str(model), "--output", str(out), "--workers", str(workers), "--language", language,
            "--no-progress"]


def run_end_to_end(corpus: Path, model: Path, out: Path, workers: int, language: str = "en") -> dict:
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    result = run_measured(encode_cmd(corpus, model, out, workers, language))
    manifest = json.loads((out / "manifest.json").read_text())
    result["tokens"] = manifest["num_tokens"]
    result["tokens_per_s"] = manifest["num_tokens"] / result["wall_s"]
    result["encode_s"] = json.loads(result["stdout"])["seconds"]
    result["encode_tokens_per_s"] = manifest["num_tokens"] / result["encode_s"]
    return result


def run_raw(lines: list[str], model: Path, threads: int) -> dict:
    import sentencepiece as spm

    import resource

    sp = spm.SentencePieceProcessor(model_file=str(model))
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    ids = sp.encode(lines, num_threads=threads)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    tokens = sum(map(len, ids))
    return {"wall_s": wall, "cpu_s": cpu, "tokens": tokens, "tokens_per_s": tokens / wall}


def make_big(corpus: Path, path: Path, gigabytes: float) -> Path:
    target = int(gigabytes * (1 << 30))
    if path.exists() and path.stat().st_size >= target:
        return path
    data = corpus.read_bytes().rstrip(b"\n")
    with open(path, "wb") as f:
        written = 0
        while written < target:
            if written:
                f.write(f"\n{SEP}\n".encode())
            f.write(data)
            written += len(data) + len(SEP) + 2
        f.write(b"\n")
    return path


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--language", choices=("en", "zh"), default="en",
                   help="zh: Chinese (whole-word boundaries from the segmenter), see the module docstring")
    p.add_argument("--corpus", type=Path, default=None, help="default: en_medium.txt, zh_small.txt for zh")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/plmscale-bench-data-prep"))
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--vocab-size", type=int, default=None, help="default 32000, 8000 for zh")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--big-gb", type=float, default=0.0, help="also encode the corpus repeated to this size")
    p.add_argument("--repeat-mb", type=float, default=50.0,
                   help="zh: also raw vs end to end on the corpus repeated to this many MB (0: skip)")
    p.add_argument("--paragraph-mb", type=float, default=12.0,
                   help="zh: size of the one-paragraph input (0: skip)")
    p.add_argument("--record", type=Path, default=None, help="write the results section into this markdown file")
    args = p.parse_args(argv)
    args.corpus = args.corpus or DEFAULT_CORPUS[args.language]
    args.vocab_size = args.vocab_size or DEFAULT_VOCAB[args.language]
    if not args.corpus.is_file():
        alt = Path("/work/shared/corpora") / args.corpus.name
        args.corpus = alt if alt.is_file() else args.corpus
    args.workdir.mkdir(parents=True, exist_ok=True)
    # Bytecode for data_prep, as an installed package has: with PYTHONDONTWRITEBYTECODE set (as on
    # the shared box) every end-to-end run would otherwise compile its sources again (~0.1 s of
    # start-up that raw sentencepiece, compiled at install, never pays). Existing .pyc files are
    # read whatever that variable says.
    compileall.compile_dir(str(REPO / "data_prep"), quiet=1)
    model = ensure_tokenizer(args.corpus, args.workdir, args.vocab_size)
    if args.language == "zh":
        import data_prep_zh

        return data_prep_zh.main(args, model, argv)
    result = measure(args.corpus, model, args, "en")
    result["command"] = command_line(argv)
    result["encode_command"] = " ".join(encode_cmd(args.corpus, model, args.workdir / "out", args.threads)[1:])
    if args.big_gb > 0:
        big = make_big(args.corpus, args.workdir / f"big-{args.big_gb:g}gb.txt", args.big_gb)
        res = run_end_to_end(big, model, args.workdir / "out-big", args.threads)
        result["big"] = {
            "date_utc": now_utc(),
            "command": result["command"],
            "encode_command": " ".join(encode_cmd(big, model, args.workdir / "out-big", args.threads)[1:]),
            "input_bytes": big.stat().st_size,
            "tokens": res["tokens"],
            "wall_s": round(res["wall_s"], 1),
            "tokens_per_s": round(res["tokens_per_s"]),
            "cpu_s": round(res["cpu_s"], 1),
            "peak_rss_mib": round(res["peak_rss_bytes"] / 2**20),
        }
    print(json.dumps(result, indent=1))
    if args.record:
        record(args.record, result)
    return 0


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def command_line(argv) -> str:
    return " ".join(["python", "bench/data_prep.py", *(argv if argv is not None else sys.argv[1:])])


def measure(corpus: Path, model: Path, args, language: str) -> dict:
    """Raw sentencepiece and end-to-end encode of ``corpus``, interleaved ``args.repeats`` times."""
    lines = corpus.read_text(encoding="utf-8").split("\n")
    raws, e2es = [], []
    for r in range(args.repeats):
        raws.append(run_raw(lines, model, args.threads))
        e2es.append(run_end_to_end(corpus, model, args.workdir / "out", args.threads, language))
        print(f"{corpus.name} repeat {r}: raw {raws[-1]['tokens_per_s']:,.0f} tok/s, end-to-end "
              f"{e2es[-1]['tokens_per_s']:,.0f} tok/s (encode call {e2es[-1]['encode_tokens_per_s']:,.0f}), peak RSS {e2es[-1]['peak_rss_bytes'] / 2**20:,.0f} MiB",
              file=sys.stderr)
    del lines
    raw_med = statistics.median(x["tokens_per_s"] for x in raws)
    e2e_med = statistics.median(x["tokens_per_s"] for x in e2es)
    encode_med = statistics.median(x["encode_tokens_per_s"] for x in e2es)
    return {
        "date_utc": now_utc(),
        "machine": machine(),
        "load_average_at_end": os.getloadavg(),
        "corpus": str(corpus),
        "corpus_bytes": corpus.stat().st_size,
        "threads": args.threads,
        "vocab_size": args.vocab_size,
        "raw_tokens": raws[0]["tokens"],
        "raw_tokens_per_s": [round(x["tokens_per_s"]) for x in raws],
        "e2e_tokens": e2es[0]["tokens"],
        "e2e_tokens_per_s": [round(x["tokens_per_s"]) for x in e2es],
        "e2e_wall_s": [round(x["wall_s"], 2) for x in e2es],
        "encode_tokens_per_s": [round(x["encode_tokens_per_s"]) for x in e2es],
        "encode_s": [round(x["encode_s"], 2) for x in e2es],
        "encode_ratio_of_medians": round(encode_med / raw_med, 3),
        "e2e_peak_rss_mib": [round(x["peak_rss_bytes"] / 2**20) for x in e2es],
        "ratio_of_medians": round(e2e_med / raw_med, 3),
        # Load-insensitive companion: CPU-seconds per million tokens (user + sys, all
        # threads/processes), and raw/e2e of that (above 1: e2e needs less CPU per token).
        "raw_cpu_s_per_mtok": round(statistics.median(x["cpu_s"] / x["tokens"] * 1e6 for x in raws), 3),
        "e2e_cpu_s_per_mtok": round(statistics.median(x["cpu_s"] / x["tokens"] * 1e6 for x in e2es), 3),
    }


def record(path: Path, r: dict) -> None:
    """Replace (or append) this benchmark's section of a markdown results file."""
    lines = [
        SECTION, "",
        f"Date: {r['date_utc']}. Machine: {r['machine']} (load average at end "
        f"{', '.join(f'{x:.1f}' for x in r['load_average_at_end'])}; the box is shared with other jobs).",
        f"Command: `{r['command']}`; the end-to-end step runs `python {r['encode_command']}`.",
        f"Corpus: `{r['corpus']}` ({r['corpus_bytes']:,} bytes), sentencepiece unigram vocab "
        f"{r['vocab_size']} trained by `python -m data_prep train-tokenizer` on the same corpus.", "",
        "| measurement | per repeat | median |", "| --- | --- | --- |",
        f"| raw `SentencePieceProcessor.encode(lines, num_threads={r['threads']})` tokens/s | "
        f"{', '.join(f'{x:,}' for x in r['raw_tokens_per_s'])} | {statistics.median(r['raw_tokens_per_s']):,.0f} |",
        f"| end-to-end `encode --workers {r['threads']}` tokens/s (process start to exit) | "
        f"{', '.join(f'{x:,}' for x in r['e2e_tokens_per_s'])} | {statistics.median(r['e2e_tokens_per_s']):,.0f} |",
        f"| end-to-end wall s | {', '.join(map(str, r['e2e_wall_s']))} | {statistics.median(r['e2e_wall_s'])} |",
        f"| end-to-end tokens/s, encode call as reported by the tool (after start-up and imports) | "
        f"{', '.join(f'{x:,}' for x in r['encode_tokens_per_s'])} | {statistics.median(r['encode_tokens_per_s']):,.0f} |",
        f"| encode call s | {', '.join(map(str, r['encode_s']))} | {statistics.median(r['encode_s'])} |",
        f"| end-to-end peak RSS, whole process tree (MiB) | {', '.join(map(str, r['e2e_peak_rss_mib']))} | "
        f"{statistics.median(r['e2e_peak_rss_mib'])} |",
        f"| end-to-end / raw, process start to exit (ratio of medians) | | {r['ratio_of_medians']} |",
        f"| **end-to-end / raw, encode call** (ratio of medians; target >= 0.85) | | **{r['encode_ratio_of_medians']}** |",
        f"| CPU-seconds per million tokens, raw / end-to-end (user+sys, all threads and processes) | | "
        f"{r['raw_cpu_s_per_mtok']} / {r['e2e_cpu_s_per_mtok']} |", "",
        f"Tokens: raw {r['raw_tokens']:,} (one sequence per line), end-to-end {r['e2e_tokens']:,} "
        "(one per paragraph; hard-wrapped lines are joined, so fewer dummy-prefix tokens).",
    ]
    if "big" in r:
        b = r["big"]
        lines += ["",
                  f"Large input, {b.get('date_utc', r['date_utc'])}, `{b.get('command', r['command'])}` "
                  f"(runs `python {b.get('encode_command', '...')}`), the corpus repeated to "
                  f"{b['input_bytes']:,} bytes: {b['tokens']:,} tokens in "
                  f"{b['wall_s']} s = {b['tokens_per_s']:,} tokens/s ({b.get('cpu_s', 'not measured')} CPU-s); **peak RSS of the whole process tree "
                  f"{b['peak_rss_mib']:,} MiB** (limit 1.5 GB)."]
    replace_section(path, SECTION, "\n".join(lines) + "\n")


def replace_section(path: Path, heading: str, section: str) -> None:
    """Put ``section`` (starting with the line ``heading``) in place of the markdown section with
    that heading, up to the next ``## `` heading, or append it. Notes written by hand after the
    generated part of a section are replaced too: keep them in a section of their own."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(heading) + r"\n.*?(?=\n## |\Z)", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip("\n") + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
