"""ELECTRA on 2 gloo ranks: TP=2 equals TP=1 (loss, gathered gradients; the generator's samples are
the same on every rank and layout), both halves equal HF after export, also from a checkpoint
trained with TP=2 on real text, where the loss falls."""

import pytest
from electra_workers import tensor_parallel_vs_single, train_then_export
from closeness import assert_within
from harness import run_ranks

pytestmark = pytest.mark.slow


def test_tp2_equals_tp1_and_hf():
    results = run_ranks(2, tensor_parallel_vs_single, [])
    for r in results:
        assert r["param_diff"] == 0.0
        assert_within(r["metrics"])
        assert_within(r["grads"])
        assert r["undetected_perturbations"] == []
        assert r["grad_norm"] > 1e-3
        assert_within(r["hf_logit_diff"]["discriminator"])
        assert_within(r["hf_logit_diff"]["generator"])
        assert 0.0 < r["out"]["rtd_loss"] < 5.0 and r["out"]["mlm_loss"] > 1.0
    assert results[0]["out"] == results[1]["out"]


def test_trains_on_real_text_and_exports_from_tp2_checkpoint(demo_shards, tmp_path):
    results = run_ranks(2, train_then_export, str(demo_shards), str(tmp_path / "ckpt"), 40)
    r = results[0]
    losses = r["losses"]
    print(f"electra-tiny TP=2: loss {losses[0]:.3f} -> {losses[-1]:.3f} in {r['seconds']:.1f}s; "
          f"last step {r['metrics']}; HF diffs {r['hf_logit_diff']}")
    assert losses[-1] <= 0.7 * losses[0]
    assert r["metrics"]["rtd_accuracy"] > 0.8
    for rank in results:
        assert_within(rank["hf_logit_diff"]["discriminator"])
        assert_within(rank["hf_logit_diff"]["generator"])
