"""GPT on 2 gloo ranks: TP=2 equals TP=1 (fixed batch and 3 DeepSpeed steps), both equal HF after
export (also after TP=2 training), and generate.py decodes a TP=2 checkpoint like HF does. The same
for the decoder with Llama's switches (HF LlamaForCausalLM): grouped-query attention (TP=2 splits
its 2 key/value groups) with an untied head, and multi-head attention with a tied head."""

import os
import subprocess
import sys

import pytest
from gpt_workers import LLAMA, tensor_parallel_variants, train_tp2_vs_tp1
from closeness import assert_close, assert_within
from harness import free_port, run_ranks

pytestmark = pytest.mark.slow

PROMPT, NEW_TOKENS = "The castle was", 12


VARIANTS = {"gpt": [], "llama gqa untied": LLAMA,
            "llama mha tied": LLAMA + ["model.num_query_groups=null",
                                       "model.tie_word_embeddings=true"]}


def test_tp2_equals_tp1_and_hf():
    ranks = run_ranks(2, tensor_parallel_variants, list(VARIANTS.values()))
    for variant, results in zip(VARIANTS, zip(*ranks)):
        for r in results:
            assert r["param_diff"] == 0.0, variant  # initialisation does not depend on the layout
            for name in ("plain", "documents"):
                context = f"{variant}, {name}"
                assert_within(r[name]["metrics"], context)
                assert_within(r[name]["grads"], context)
                assert_within(r[name]["logits"], context)
                assert r[name]["grad_norm"] > 1e-3, context  # gradients are real, not all zero
            assert r["documents_change_loss"] > 1e-4, variant  # the document mask is applied
            assert_within(r["hf_logit_diff"], variant)
        assert_close(results[0]["plain"]["loss"], results[1]["plain"]["loss"],
                     f"{variant}: loss on rank 0 vs rank 1")


@pytest.mark.parametrize("variant", ["gpt", "llama gqa untied"])
def test_training_tp2_vs_tp1_export_and_generate(variant, demo_shards, tmp_path, repo):
    save_dir = tmp_path / "ckpt"
    results = run_ranks(2, train_tp2_vs_tp1, str(demo_shards), str(save_dir), PROMPT, NEW_TOKENS,
                        VARIANTS[variant])
    r = results[0]
    assert len(r["losses"]) == 3 and r["moved"] > 1e-4  # the optimiser really updated the weights
    assert_within(r["loss_diff"])
    assert_within(r["grad_diff"])  # gathered gradients of the trained weights
    assert_within(r["param_diff"])
    assert_within(r["hf_logit_diff"])
    assert r["reload_diff"] == 0.0  # the checkpoint gave back the trained weights
    assert r["text"].startswith(PROMPT) and len(r["text"]) > len(PROMPT)
    assert r["text"] == r["hf_text"] == results[1]["text"]
    # One process merges the two TP slices itself and must decode the same text.
    env = dict(os.environ, MASTER_PORT=str(free_port()), WORLD_SIZE="1", RANK="0", LOCAL_RANK="0")
    out = subprocess.run([sys.executable, str(repo / "launch/generate.py"), "--checkpoint",
                          str(save_dir), "--prompt", PROMPT, "--max-new-tokens", str(NEW_TOKENS)],
                         capture_output=True, text=True, env=env, timeout=600, cwd=repo)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == r["hf_text"].strip()
