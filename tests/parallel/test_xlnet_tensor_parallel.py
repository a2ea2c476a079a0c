"""XLNet on 2 gloo ranks: TP=2 equals TP=1 (metrics, gathered gradients, logits of both streams),
and both equal HF ``XLNetLMHeadModel`` after export: logits with perm_mask and target_mapping (and
without), loss and gradients."""

import pytest
from closeness import assert_close, assert_within
from harness import run_ranks
from xlnet_workers import tensor_parallel_vs_single

pytestmark = pytest.mark.slow


def test_tp2_equals_tp1_and_hf():
    results = run_ranks(2, tensor_parallel_vs_single)
    for r in results:
        assert r["metric_names"] == ["loss", "plm_accuracy", "plm_loss"]
        assert r["param_diff"] == 0.0  # initialisation does not depend on the layout
        assert_within(r["metrics"])
        assert_within(r["grads"])
        assert_within(r["logits"])
        assert r["undetected_perturbations"] == []
        assert r["grad_norm"] > 1e-3  # gradients are real, not all zero
        assert_within(r["hf_logit_diff"])
        assert_within(r["hf_loss_diff"])
        assert_within(r["hf_grad_diff"])
    assert_close(results[0]["loss"], results[1]["loss"], "loss on rank 0 vs rank 1")
