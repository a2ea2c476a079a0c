"""SpanBERT's span boundary objective attached to the real BERT on 2 gloo ranks: the SBO loss and
every gradient agree between TP=2 and TP=1 (vocab-parallel projection through the tied output
layer), on span-masked samples from the demo shards; and a schedule's global batch size follows
the data-parallel group."""

import pytest
from closeness import assert_close, assert_within
from harness import run_ranks
from masking_workers import span_boundary_on_bert

pytestmark = pytest.mark.slow


def test_span_boundary_objective_tp2_equals_tp1(demo_shards):
    results = run_ranks(2, span_boundary_on_bert, str(demo_shards))
    for r in results:
        assert r["span_tokens"] > 20
        assert 5.0 < r["sbo_loss"] < 12.0  # about log(8000) = 9 for an untrained model
        assert_within(r["losses"])
        assert r["accuracy_diff"] == 0.0
        assert_within(r["grads"])
        assert r["undetected_perturbations"] == []
        assert r["head_grad_norm"] > 1e-4
        # micro batch 3 x accumulation 2 x data-parallel size (1 at TP=2, 2 at TP=1).
        assert r["global_batch_sizes"] == {2: 6, 1: 12}
    assert_close(results[0]["sbo_loss"], results[1]["sbo_loss"], "SBO loss on rank 0 vs rank 1")
