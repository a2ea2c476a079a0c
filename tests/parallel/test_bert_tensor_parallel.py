"""TP=2 equals TP=1 (loss and gathered gradients) and both equal HF after export; 2 gloo ranks."""

import pytest
from bert_workers import tensor_parallel_vs_single
from closeness import assert_close, assert_within
from harness import run_ranks

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("gelu", ["none", "tanh"])
def test_tp2_equals_tp1_and_hf(gelu):
    results = run_ranks(2, tensor_parallel_vs_single, [f"model.gelu_approximate={gelu}"])
    for r in results:
        assert r["param_diff"] == 0.0  # initialisation does not depend on the layout
        assert_within(r["metrics"])
        assert_within(r["grads"])
        assert r["undetected_perturbations"] == []
        assert r["grad_norm"] > 1e-3  # gradients are real, not all zero
        assert_within(r["hf_logit_diff"])
    assert_close(results[0]["loss"], results[1]["loss"], "loss on rank 0 vs rank 1")
