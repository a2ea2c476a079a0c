"""T5 on 2 gloo ranks: TP=2 equals TP=1 (loss, gathered gradients) and both equal HF after export,
for v1.0 (ReLU, tied + scaled head) and v1.1 (gated-GELU, untied head)."""

import pytest
from closeness import assert_within
from harness import run_ranks
from t5_workers import V1_1, tensor_parallel_vs_single

pytestmark = pytest.mark.slow


def test_tp2_equals_tp1_and_hf():
    per_rank = run_ranks(2, tensor_parallel_vs_single, [[], V1_1])
    for results in per_rank:
        for version, r in zip(("v1.0", "v1.1"), results):
            assert r["param_diff"] == 0.0, version  # initialisation does not depend on the layout
            assert_within(r["metrics"], version)
            assert_within(r["grads"], version)
            assert r["undetected_perturbations"] == [], version
            assert not r["zero_grads"], (version, r["zero_grads"])  # every parameter is used
            assert r["logit_scale"] > 0.1, version  # the comparison is not between near-zeros
            assert_within(r["hf_logit_diff_tp1"], version)
            assert_within(r["hf_logit_diff_tp2"], version)
    # The two variants are different models, and ranks agree.
    assert per_rank[0][0]["loss"] != per_rank[0][1]["loss"]
    assert [r["loss"] for r in per_rank[0]] == [r["loss"] for r in per_rank[1]]
