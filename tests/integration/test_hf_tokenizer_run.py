"""A run on shards of a Hugging Face ``tokenizer.json``, end to end (issue 17): BERT on a WordPiece
tokenizer and GPT on a GPT-2-style byte-level BPE one (no mask token) train at TP=2 on 2 gloo ranks
and checkpoint (the tokenizer.json travels with the tag; a resume on shards of another tokenizer is
refused); ``plmscale export`` writes a fast tokenizer from that file whose ids are the shards' and
whose special tokens are the run's, the exported logits equal plmscale's and the HF pipeline runs
(hf_check.py, a fresh process); the exported BERT imports back (``plmscale import``) with its
tokenizer checked against the shards; a masking family on a tokenizer without a mask token is
refused by name."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from closeness import Closeness, assert_within
from harness import run_ranks
from hf_tokenizers import SEP, build_tokenizer, documents, write_corpus

sys.path.insert(0, str(Path(__file__).parent))
import export_workers as workers  # noqa: E402

pytestmark = pytest.mark.slow

RUNS = {"bert": "wordpiece", "gpt": "gpt2"}
"""Family -> the tokenizer its shards are encoded with (tests/hf_tokenizers.py)."""
MORE = ["model.vocab_size=3000"]  # the tokenizers' size: HF pipelines see only real tokens
TEXT = "The castle stood upon the hill, and the night was dark and full of strange sounds."
DOCUMENTS = 60


@pytest.fixture(scope="module")
def shards(tmp_path_factory, repo) -> dict[str, Path]:
    """Family -> shard directory of ``DOCUMENTS`` documents encoded with its tokenizer.json."""
    out = tmp_path_factory.mktemp("hf_shards")
    corpus = write_corpus(out / "corpus.txt", DOCUMENTS)
    found = {}
    for family, kind in RUNS.items():
        build_tokenizer(kind, out / f"{kind}.json")
        subprocess.run([sys.executable, "-m", "data_prep", "encode", "--input", str(corpus),
                        "--doc-separator", SEP, "--tokenizer", str(out / f"{kind}.json"),
                        "--output", str(out / kind), "--workers", "1", "--no-progress"],
                       check=True, capture_output=True, cwd=repo, timeout=600)
        found[family] = out / kind
    return found


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shards, repo):
    out = tmp_path_factory.mktemp("hf_runs")
    tp2 = ["parallel.tensor_model_parallel_size=2"]
    run_ranks(2, workers.train_families, {f: str(p) for f, p in shards.items()}, str(out),
              list(RUNS), {f: tp2 for f in RUNS}, MORE)
    codes, imported = run_ranks(1, workers.export_then_import, str(out), list(RUNS), TEXT,
                                str(shards["bert"]), MORE)[0]
    assert codes == {f: 0 for f in RUNS}
    found = subprocess.run([sys.executable, str(Path(__file__).parent / "hf_check.py"), str(out),
                            str(write_corpus(out / "corpus.txt", 5)), *RUNS],
                           capture_output=True, text=True, timeout=900)
    assert found.returncode == 0, found.stderr[-3000:]
    return out, json.loads(found.stdout.strip().splitlines()[-1]), imported


@pytest.mark.parametrize("family", RUNS)
def test_checkpoint_carries_the_tokenizer_and_a_resume_checks_it(runs, shards, family):
    from plmscale.export.shards import checkpoint_tag, saved_config
    from plmscale.training.checkpoint import CheckpointError, check_same_data, metadata
    ckpt = runs[0] / family / "ckpt"
    tag = checkpoint_tag(ckpt)
    assert (ckpt / tag / "tokenizer.json").read_bytes() == \
        (shards[family] / "tokenizer.json").read_bytes()
    assert not (ckpt / tag / "tokenizer.model").exists()
    saved = metadata(ckpt, tag)
    manifest = json.loads((shards[family] / "manifest.json").read_text())
    assert saved["data"]["tokenizer_sha256"] == manifest["tokenizer"]["sha256"]
    cfg = saved_config(ckpt, tag)
    check_same_data(cfg, saved, tag)  # the same shards: accepted
    other = next(p for f, p in shards.items() if f != family)
    cfg.data.path = str(other)
    with pytest.raises(CheckpointError, match="another tokenizer"):
        check_same_data(cfg, saved, tag)


@pytest.mark.parametrize("family", RUNS)
def test_exported_fast_tokenizer_gives_the_shards_ids_and_the_runs_specials(runs, shards, family):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from data_prep.shards import ShardedCorpus
    from data_prep.textutil import split_paragraphs
    out, found, _ = runs
    tok = AutoTokenizer.from_pretrained(out / family / "hf")
    assert found[family]["tokenizer"]["tokenizer_class"] == type(tok).__name__
    assert type(tok).__name__ == "TokenizersBackend"  # transformers 5's PreTrainedTokenizerFast
    corpus = ShardedCorpus(shards[family])
    paragraphs = 0
    for doc, text in zip(corpus, documents(DOCUMENTS)):
        ids = [i for p in split_paragraphs(text)
               for i in tok(p, add_special_tokens=False)["input_ids"]]
        assert ids == doc.token_ids.tolist()
        paragraphs += len(split_paragraphs(text))
    assert paragraphs > 200
    raw = Tokenizer.from_file(str(shards[family] / "tokenizer.json"))
    plain = raw.encode(TEXT, add_special_tokens=False).ids
    by_name = raw.token_to_id
    if family == "bert":  # [CLS] text [SEP], as the samples; [MASK] is one token
        assert tok(TEXT)["input_ids"] == [by_name("[CLS]")] + plain + [by_name("[SEP]")]
        assert tok.mask_token == "[MASK]" and tok.mask_token_id == by_name("[MASK]")
        assert by_name("[MASK]") in tok("the [MASK] door")["input_ids"]
    else:  # <|endoftext|> text, as the packed stream; GPT-2 has no mask token
        assert tok(TEXT)["input_ids"] == [by_name("<|endoftext|>")] + plain
        assert tok.mask_token is None
        assert found[family]["config"]["eos_token_id"] == by_name("<|endoftext|>")


@pytest.mark.parametrize("family", RUNS)
def test_exported_logits_equal_plmscale_and_the_pipeline_runs(runs, family):
    _, found, _ = runs
    assert found[family]["logits"]
    for name, c in found[family]["logits"].items():
        closeness = Closeness(**{**c, "index": tuple(c["index"])})
        print(family, closeness)
        assert_within(closeness, family)
    result = found[family]["pipeline"]
    if family == "bert":  # fill-mask: 5 candidates
        assert len(result) == 5 and all(isinstance(t, int) for t in result)
    else:
        assert result.startswith("The castle") and len(result) > len("The castle")


def test_exported_model_imports_with_its_tokenizer(runs, shards, repo, demo_shards):
    from plmscale.config import load_config
    from plmscale.export.hf_import import imported_config
    from plmscale.export.inverse import HFImportError
    out, _, imported = runs
    assert imported["tokenizer"] == (shards["bert"] / "tokenizer.json").read_bytes()
    assert imported["worst"] == 0.0  # the import holds the trained weights exactly
    base = load_config(repo / "configs" / "bert_demo.yaml", MORE + [f"data.path={demo_shards}"])
    with pytest.raises(HFImportError, match="tokenizer.json is the model's tokenizer"):
        imported_config(out / "bert" / "hf", base)


def test_masking_family_without_mask_token_is_refused(shards, repo):
    from plmscale.config import ConfigError, load_config
    from plmscale.data.sources import run_samples
    from plmscale.training.preflight import check_inputs
    gpt2 = shards["gpt"]
    for family, config in (("bert", "bert_demo"), ("roberta", "roberta_tiny")):
        cfg = load_config(repo / "configs" / f"{config}.yaml", MORE + [f"data.path={gpt2}"])
        for check, error in ((check_inputs, ConfigError), (run_samples, ValueError)):
            with pytest.raises(error) as refused:
                check(cfg)
            message = str(refused.value)
            assert str(gpt2 / "tokenizer.json") in message and "[MASK]" in message, message
            assert f"model.family {family} masks tokens" in message, message
    # GPT does not mask: the same shards are fine
    cfg = load_config(repo / "configs" / "gpt_tiny.yaml", MORE + [f"data.path={gpt2}"])
    check_inputs(cfg)
    assert run_samples(cfg)[0].sample(0)["input_ids"].shape == (cfg.data.seq_length,)
