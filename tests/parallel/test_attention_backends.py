"""Every family computes the same losses and gradients with each ``model.attention_backend`` (sdpa,
fused-softmax, reference), at TP=2 and TP=1, in training mode with dropout on: the mask kinds the
families use (padding, causal, T5's relative position bias, encoder-decoder cross attention,
document resets) and the same attention-dropout masks on each TP rank's own stream. One rank group
runs every family. The mask kinds one by one: tests/unit/test_attention_core.py."""

import pytest
from closeness import assert_within
from harness import run_ranks
from attention_workers import backends_agree

pytestmark = pytest.mark.slow

# name -> (config file in configs/, overrides)
VARIANTS = {
    "bert padding": ("bert_demo.yaml", []),
    "roberta": ("roberta_tiny.yaml", []),
    "albert": ("albert_tiny.yaml", []),
    "electra": ("electra_tiny.yaml", []),
    "distilbert": ("distilbert_tiny.yaml", ["objective.distillation_teacher_path=null"]),
    "t5 relative bias + cross": ("t5_tiny.yaml", []),
    "bart causal + cross": ("bart_tiny.yaml", []),
    "gpt causal": ("gpt_tiny.yaml", []),
    "gpt document reset": ("gpt_tiny.yaml", ["objective.reset_attention_at_document_boundary=true"]),
}


def test_every_backend_matches_the_reference_on_every_family(demo_shards):
    ranks = run_ranks(2, backends_agree, str(demo_shards), VARIANTS)
    for rank, results in enumerate(ranks):
        assert len(results) == len(VARIANTS) * 2 * 3
        for (name, tp, backend), (metrics, grads) in results.items():
            context = f"rank {rank}, {name}, TP={tp}, {backend} vs reference"
            assert_within(metrics, context)
            assert_within(grads, context)
