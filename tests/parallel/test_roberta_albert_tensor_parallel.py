"""RoBERTa and ALBERT on 2 gloo ranks: TP=2 equals TP=1 (loss, gathered gradients), both equal HF
(RobertaForMaskedLM / AlbertForPreTraining) after export in logits, loss and gradients, and a
checkpoint trained a few DeepSpeed steps with TP=2 still exports to the same logits."""

import pytest
from encoder_family_workers import tensor_parallel_vs_single
from closeness import assert_close, assert_within
from harness import run_ranks

pytestmark = pytest.mark.slow

METRICS = {"roberta": ["loss", "mlm_accuracy", "mlm_loss"],
           "albert": ["loss", "mlm_accuracy", "mlm_loss", "sop_accuracy", "sop_loss"]}


@pytest.mark.parametrize("family", ["roberta", "albert"])
def test_tp2_equals_tp1_and_hf_before_and_after_training(family, demo_shards):
    results = run_ranks(2, tensor_parallel_vs_single, family, str(demo_shards))
    for r in results:
        assert r["metric_names"] == METRICS[family]
        assert r["param_diff"] == 0.0  # initialisation does not depend on the layout
        assert_within(r["metrics"])
        assert_within(r["grads"])
        assert r["undetected_perturbations"] == []
        assert r["grad_norm"] > 1e-3  # gradients are real, not all zero
        assert_within(r["hf_logit_diff"])
        assert_within(r["hf_loss_diff"])
        assert_within(r["hf_grad_diff"])
        trained = r["trained"]
        assert len(trained["losses"]) == 3 and trained["metrics"][:len(METRICS[family])]
        assert trained["changed"] > 0  # every tensor moved: the export below is of trained weights
        assert_within(trained["hf_logit_diff"])
    if family == "albert":  # one shared layer set, whatever the depth
        layers = {n.split(".")[2] for n in results[0]["params"] if n.startswith("albert.layer_groups.")}
        assert layers == {"0"}
    else:
        assert results[0]["params"]["roberta.embeddings.position_embeddings.weight"][0] == 64 + 2
    assert_close(results[0]["loss"], results[1]["loss"], "loss on rank 0 vs rank 1")
