"""``plmscale export`` end to end: every family with a Hugging Face class trained a few steps at
TP=2 x PP=2 on 4 gloo ranks, exported, then loaded with transformers' Auto classes in a fresh
process that imports no plmscale code (hf_check.py): the logits equal plmscale's on the same ids,
the tokenizer reproduces sentencepiece's ids, and the family's HF pipeline runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from closeness import Closeness, assert_within
from harness import run_ranks

sys.path.insert(0, str(Path(__file__).parent))
import export_workers as workers  # noqa: E402

pytestmark = pytest.mark.slow

# BERT first: it is DistilBERT's teacher.
FAMILIES = ["bert", "gpt", "roberta", "albert", "electra", "distilbert", "t5", "bart", "ernie",
            "llama", "unilm", "glm", "xlnet", "mpnet", "mixtral", "qwen2_moe", "switch"]
# The GPT family's decoder (GPT2LMHeadModel, LlamaForCausalLM, MixtralForCausalLM, Qwen2MoeForCausalLM).
DECODERS = ("gpt", "llama", "mixtral", "qwen2_moe")
# Every family at TP=2 x PP=2 (ELECTRA's shared embeddings are a forward_fn tie, which the
# pipeline saves with its layer files: plmscale.parallel.pipeline); the MoE families at expert
# parallel 2 x data parallel 4 (DeepSpeed saves their experts per global index, outside the
# module's state).
LAYOUTS: dict[str, list[str]] = {f: workers.EXPERT_LAYOUT for f in workers.MOE_FAMILIES}
TEXT = "The castle stood upon the hill, and the night was dark and full of strange sounds."
FILL_MASK = ("bert", "roberta", "albert", "distilbert", "electra", "ernie", "unilm", "mpnet")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, demo_shards, repo):
    out = tmp_path_factory.mktemp("export")
    run_ranks(4, workers.train_families, str(demo_shards), str(out), FAMILIES, LAYOUTS)
    codes = run_ranks(1, workers.export_and_logits, str(out), FAMILIES, TEXT)[0]
    assert codes == {f: 0 for f in FAMILIES}
    found = subprocess.run([sys.executable, str(Path(__file__).parent / "hf_check.py"), str(out),
                            str(repo / "corpora" / "gothic_novels.txt"), *FAMILIES],
                           capture_output=True, text=True, timeout=900)
    assert found.returncode == 0, found.stderr[-3000:]
    return out, json.loads(found.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("family", FAMILIES)
def test_exported_logits_equal_plmscale(exported, family):
    _, found = exported
    assert found[family]["logits"], family
    tok = found[family]["tokenizer"]
    logits = {name: Closeness(**{**c, "index": tuple(c["index"])})
              for name, c in found[family]["logits"].items()}
    print(f"{family}: logits {'; '.join(map(str, logits.values()))}; tokenizer: "
          f"{tok['paragraphs']} paragraphs, {tok['encode_mismatch']} encode and "
          f"{tok['decode_mismatch']} decode mismatches, {tok['byte_paragraphs']} with byte pieces "
          f"(not decoded); pipeline: {found[family]['pipeline']!r}")
    for closeness in logits.values():
        assert_within(closeness, family)


@pytest.mark.parametrize("family", FAMILIES)
def test_exported_tokenizer_reproduces_sentencepiece(exported, family):
    tok = exported[1][family]["tokenizer"]
    # Mixtral's AutoTokenizer is always transformers' fast backend (plmscale.export.hf
    # needs_fast_tokenizer): its tokenizer.json is rebuilt from the sentencepiece model.
    assert tok["tokenizer_class"] == ("TokenizersBackend" if family == "mixtral" else "SentencePieceBackend")
    assert tok["encode_mismatch"] == 0 and tok["decode_mismatch"] == 0, tok
    assert tok["paragraphs"] - tok["byte_paragraphs"] > 1000
    assert tok["masked_ids"] == tok["sp_masked_ids"] and tok["mask_id"] in tok["masked_ids"]
    config = exported[1][family]["config"]
    plain, wrapped = tok["plain"], tok["with_special"]
    # The special ids of the training samples, laid out as they are.
    layouts = {"bert": (4, 5), "albert": (4, 5), "electra": (4, 5), "distilbert": (4, 5),
               "roberta": (2, 3), "bart": (2, 3), "t5": (None, 3), "gpt": (3, None),
               "llama": (3, None), "unilm": (4, 5), "glm": (4, None), "mpnet": (2, 3),
               "xlnet": (None, None), "ernie": (4, 5), "mixtral": (3, None),
               "qwen2_moe": (3, None), "switch": (None, 3)}
    head, tail = layouts[family]
    assert wrapped == [i for i in (head,) if i is not None] + plain + [i for i in (tail,) if i is not None]
    if family in DECODERS + ("t5", "bart", "switch"):
        assert config["eos_token_id"] == 3, config  # </s>: generation stops


@pytest.mark.parametrize("family", FAMILIES)
def test_exported_pipeline_runs(exported, family):
    out, found = exported
    result = found[family]["pipeline"]
    if family in FILL_MASK:
        assert len(result) == 5 and all(isinstance(t, int) for t in result)
    elif family in DECODERS:
        assert result.startswith("The castle") and len(result) > len("The castle")
    elif family == "glm":  # HF GPT-2 + the block table fills the blank as plmscale does
        assert result["hf"] == result["plmscale"] and len(result["hf"]) == 6, result
    else:
        assert isinstance(result, str)
    files = set(found[family]["files"])
    assert {"config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"} <= files
    # XLNetLMHeadModel generates too (HF writes its generation config).
    assert ("generation_config.json" in files) == (family in DECODERS + ("t5", "bart", "glm", "xlnet", "switch")), files
    if family == "glm":
        assert "block_position_embeddings.safetensors" in files


def test_export_script_and_errors(exported, repo, tmp_path):
    """``python launch/export.py`` writes the same weights; a missing checkpoint or shard file is
    refused naming the file."""
    out, _ = exported
    script = [sys.executable, str(repo / "launch" / "export.py")]
    done = subprocess.run(script + ["--checkpoint", str(out / "gpt" / "ckpt"), "--output",
                                    str(tmp_path / "gpt")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    from safetensors.torch import load_file
    a, b = load_file(tmp_path / "gpt" / "model.safetensors"), load_file(out / "gpt" / "hf" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    missing = subprocess.run(script + ["--checkpoint", str(tmp_path / "nothing"), "--output",
                                       str(tmp_path / "x")], capture_output=True, text=True)
    assert missing.returncode == 2 and str(tmp_path / "nothing") in missing.stderr
    broken = tmp_path / "broken"
    import shutil
    shutil.copytree(out / "bert" / "ckpt", broken)
    tag = (broken / "latest").read_text().strip()
    victim = sorted((broken / tag).glob("layer_*-model_01-model_states.pt"))[1]
    victim.unlink()
    refused = subprocess.run(script + ["--checkpoint", str(broken), "--output", str(tmp_path / "y")],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and victim.name in refused.stderr, refused.stderr[-2000:]
