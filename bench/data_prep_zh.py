"""Chinese measurements of ``bench/data_prep.py --language zh`` (run that script, not this file).

In one run: raw sentencepiece vs ``encode --language zh`` on the corpus and on the corpus repeated
to ``--repeat-mb`` (each interleaved ``--repeats`` times); the segmenter's own rate (rjieba and
pure-Python jieba, one core, on the corpus's Han runs); their agreement on word boundaries and on
the token flags of the annotator; and one paragraph of ``--paragraph-mb`` against raw
sentencepiece on the same paragraph, in time and peak memory (both as subprocesses).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# bench/ is first on sys.path when bench/data_prep.py runs, and its data_prep.py would hide the
# data_prep package.
sys.path.insert(0, str(REPO))

SECTION = "## Chinese preprocessing (bench/data_prep.py --language zh)"
RAW_SCRIPT = (
    "import json, sys, time; import sentencepiece as spm;"
    "sp = spm.SentencePieceProcessor(model_file=sys.argv[1]);"
    "text = open(sys.argv[2], encoding='utf-8').read().rstrip('\\n');"
    "t = time.perf_counter(); ids = sp.encode([text], num_threads=int(sys.argv[3]), out_type='numpy');"
    "print(json.dumps({'encode_s': time.perf_counter() - t, 'tokens': len(ids[0])}))"
)


def han_text(text: str) -> str:
    """The Han runs of ``text``, every other character a space (what the annotator segments)."""
    from data_prep.textutil import HAN_CLASS

    return re.sub(f"[^{HAN_CLASS}]", " ", text)


def segmenter_rates(corpus: Path) -> dict:
    from data_prep.segment import Segmenter

    text = han_text(corpus.read_text(encoding="utf-8"))
    out, starts = {"characters": len(text), "han_characters": len(text) - text.count(" ")}, {}
    for backend, runs in (("rjieba", 3), ("jieba", 1)):
        seg = Segmenter(backend=backend)
        times = []
        for _ in range(runs):
            start = time.process_time()  # one core: CPU time is less disturbed by other jobs
            starts[backend] = set(seg.word_starts(text).tolist())
            times.append(time.process_time() - start)
        out[f"{backend}_chars_per_cpu_s"] = round(len(text) / statistics.median(times))
        out[f"{backend}_words"] = len(starts[backend])
    a, b = starts["rjieba"], starts["jieba"]
    out["speedup"] = round(out["rjieba_chars_per_cpu_s"] / out["jieba_chars_per_cpu_s"], 1)
    out["boundaries_both"], out["boundaries_either"] = len(a & b), len(a | b)
    out["boundary_agreement"] = round(len(a & b) / len(a | b), 6)
    return out


def flag_agreement(corpus: Path, model: Path) -> dict:
    """Token whole-word flags of the annotator with rjieba vs with jieba, on every document."""
    from data_prep.annotate import Annotator

    docs = corpus.read_text(encoding="utf-8").rstrip("\n").split("\n<|endoftext|>\n")
    flags = {}
    for backend in ("rjieba", "jieba"):
        ann = Annotator(str(model), language="zh", segmenter_backend=backend)
        flags[backend] = ann.annotate(docs)[0].column("word_starts").values.to_numpy().astype(bool)
    a, b = flags["rjieba"], flags["jieba"]
    return {"tokens": len(a), "tokens_same_flag": int((a == b).sum()),
            "flag_agreement": round(float((a == b).mean()), 6),
            "word_starts_agreement": round(float((a & b).sum() / (a | b).sum()), 6)}


def make_paragraph(corpus: Path, path: Path, megabytes: float) -> Path:
    """The corpus as one paragraph (separators and line breaks dropped), repeated to the size."""
    text = corpus.read_text(encoding="utf-8").replace("<|endoftext|>", "")
    para = re.sub(r"\s+", "", text).encode()
    target = int(megabytes * (1 << 20))
    data = (para * (target // len(para) + 1))[:target].decode("utf-8", errors="ignore")
    path.write_text(data + "\n", encoding="utf-8")
    return path


def paragraph(bench, corpus: Path, model: Path, args) -> dict:
    path = make_paragraph(corpus, args.workdir / f"paragraph-{args.paragraph_mb:g}mb.txt", args.paragraph_mb)
    raws, e2es = [], []
    for _ in range(max(1, args.repeats - 1)):
        raw = bench.run_measured([sys.executable, "-c", RAW_SCRIPT, str(model), str(path), str(args.threads)])
        raw.update(json.loads(raw["stdout"]))
        raws.append(raw)
        e2es.append(bench.run_end_to_end(path, model, args.workdir / "out-paragraph", args.threads, "zh"))
        print(f"paragraph: raw {raw['wall_s']:.2f} s {raw['peak_rss_bytes'] / 2**20:.0f} MiB, end-to-end "
              f"{e2es[-1]['wall_s']:.2f} s {e2es[-1]['peak_rss_bytes'] / 2**20:.0f} MiB", file=sys.stderr)
    med = lambda xs, k: statistics.median(x[k] for x in xs)  # noqa: E731
    return {
        "input_bytes": path.stat().st_size,
        "raw_tokens": raws[0]["tokens"], "e2e_tokens": e2es[0]["tokens"],
        "raw_wall_s": [round(x["wall_s"], 2) for x in raws], "e2e_wall_s": [round(x["wall_s"], 2) for x in e2es],
        "raw_encode_s": [round(x["encode_s"], 2) for x in raws], "e2e_encode_s": [round(x["encode_s"], 2) for x in e2es],
        "raw_peak_mib": [round(x["peak_rss_bytes"] / 2**20) for x in raws],
        "e2e_peak_mib": [round(x["peak_rss_bytes"] / 2**20) for x in e2es],
        "time_ratio": round(med(e2es, "wall_s") / med(raws, "wall_s"), 2),
        "encode_time_ratio": round(med(e2es, "encode_s") / med(raws, "encode_s"), 2),
        "memory_ratio": round(med(e2es, "peak_rss_bytes") / med(raws, "peak_rss_bytes"), 2),
        "raw_hwm_mib": [round(x["peak_hwm_sum_bytes"] / 2**20) for x in raws],
        "e2e_hwm_mib": [round(x["peak_hwm_sum_bytes"] / 2**20) for x in e2es],
        "hwm_ratio": round(med(e2es, "peak_hwm_sum_bytes") / med(raws, "peak_hwm_sum_bytes"), 2),
        "encode_command": " ".join(bench.encode_cmd(path, model, args.workdir / "out-paragraph", args.threads, "zh")[1:]),
    }


def main(args, model: Path, argv) -> int:
    bench = sys.modules["__main__"]
    result = {"command": bench.command_line(argv), "machine": bench.machine(), "date_utc": bench.now_utc(),
              "encode_command": " ".join(bench.encode_cmd(args.corpus, model, args.workdir / "out", args.threads, "zh")[1:])}
    result["small"] = bench.measure(args.corpus, model, args, "zh")
    if args.repeat_mb > 0:
        big = bench.make_big(args.corpus, args.workdir / f"zh-{args.repeat_mb:g}mb.txt", args.repeat_mb / 1024)
        result["repeated"] = bench.measure(big, model, args, "zh")
    if args.paragraph_mb > 0:
        result["paragraph"] = paragraph(bench, args.corpus, model, args)
    result["segmenter"] = segmenter_rates(args.corpus)
    result["flags"] = flag_agreement(args.corpus, model)
    result["load_average_at_end"] = bench.os.getloadavg()
    print(json.dumps(result, indent=1))
    if args.record:
        record(bench, args.record, result)
    return 0


def _row(label: str, values, fmt="{:,.0f}") -> str:
    return f"| {label} | {', '.join(fmt.format(v) for v in values)} | {fmt.format(statistics.median(values))} |"


def record(bench, path: Path, r: dict) -> None:
    """Replace (or append) this benchmark's section of a markdown results file."""
    lines = [
        SECTION, "",
        f"Date: {r['date_utc']}. Machine: {r['machine']}; shared with other jobs while measured (load "
        f"average at end {', '.join(f'{x:.1f}' for x in r['load_average_at_end'])}), so every ratio below "
        "comes from raw and end-to-end runs interleaved in this one invocation.",
        f"Command: `{r['command']}`; end to end runs `python {r['encode_command']}` (and the same on the "
        "other inputs). Raw is `SentencePieceProcessor.encode(lines, num_threads=2)` in the bench process, "
        "timed after its imports and model load; end to end is timed from process start to exit, and as "
        "the encode call the tool reports.", "",
    ]
    for key, title in (("small", "zh_small"), ("repeated", "zh_small repeated")):
        if key not in r:
            continue
        m = r[key]
        lines += [
            f"{title}: `{m['corpus']}` ({m['corpus_bytes']:,} bytes), unigram vocab {m['vocab_size']}; "
            f"tokens raw {m['raw_tokens']:,}, end to end {m['e2e_tokens']:,}.", "",
            "| measurement | per repeat | median |", "| --- | --- | --- |",
            _row(f"raw tokens/s ({m['threads']} threads)", m["raw_tokens_per_s"]),
            _row(f"end-to-end tokens/s, process start to exit ({m['threads']} workers)", m["e2e_tokens_per_s"]),
            _row("end-to-end tokens/s, encode call", m["encode_tokens_per_s"]),
            _row("end-to-end wall s", m["e2e_wall_s"], "{}"),
            _row("end-to-end peak RSS MiB", m["e2e_peak_rss_mib"]),
            f"| **end-to-end / raw, process start to exit** | | **{m['ratio_of_medians']}** |",
            f"| **end-to-end / raw, encode call** | | **{m['encode_ratio_of_medians']}** |",
            f"| CPU-s per million tokens, raw / end to end | | {m['raw_cpu_s_per_mtok']} / {m['e2e_cpu_s_per_mtok']} |",
            "",
        ]
    if "paragraph" in r:
        p = r["paragraph"]
        lines += [
            f"One paragraph of {p['input_bytes']:,} bytes (zh_small without separators and line breaks, "
            f"repeated; runs `python {p['encode_command']}`), raw = a subprocess that loads the model, reads "
            f"the file and calls `encode([paragraph], num_threads=2)`; tokens raw {p['raw_tokens']:,}, end to "
            f"end {p['e2e_tokens']:,}.", "",
            "| measurement | raw | end to end | end to end / raw (medians) |", "| --- | --- | --- | --- |",
            f"| wall s, process start to exit | {p['raw_wall_s']} | {p['e2e_wall_s']} | **{p['time_ratio']}** |",
            f"| encode call s | {p['raw_encode_s']} | {p['e2e_encode_s']} | {p['encode_time_ratio']} |",
            f"| peak RSS of the process tree MiB (sampled every 50 ms) | {p['raw_peak_mib']} | {p['e2e_peak_mib']} | {p['memory_ratio']} |",
            f"| sum of each process's own peak RSS (VmHWM) MiB | {p['raw_hwm_mib']} | {p['e2e_hwm_mib']} | **{p['hwm_ratio']}** |",
            "",
        ]
    s, f = r["segmenter"], r["flags"]
    lines += [
        f"Segmenter alone, one core, on the Han runs of zh_small ({s['characters']:,} characters, "
        f"{s['han_characters']:,} Han): rjieba {s['rjieba_chars_per_cpu_s']:,} characters per CPU-second, "
        f"pure-Python jieba {s['jieba_chars_per_cpu_s']:,} ({s['speedup']}x). Words: rjieba "
        f"{s['rjieba_words']:,}, jieba {s['jieba_words']:,}.",
        "",
        f"Agreement with jieba on zh_small: word starts (character positions) **{s['boundary_agreement']:.4%}** "
        f"({s['boundaries_both']:,} in both of {s['boundaries_either']:,} in either); whole-word flags of "
        f"the annotator, rjieba vs jieba: {f['flag_agreement']:.4%} of {f['tokens']:,} tokens the same, "
        f"{f['word_starts_agreement']:.4%} of the tokens flagged by either flagged by both.",
    ]
    bench.replace_section(path, SECTION, "\n".join(lines) + "\n")
