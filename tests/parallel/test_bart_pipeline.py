"""BART pipeline parallelism (DeepSpeed PipelineModule): PP=2 and TP=2 x PP=2 equal the single-rank
run (losses over 3 DeepSpeed steps with 2 micro-batches each, and the trained parameters).

1 encoder + 3 decoder layers put the stage boundary inside the decoder, so both the encoder output
and the decoder stream cross it; the tied embedding lives on the first and the last stage."""

import pytest
from bart_workers import train_and_gather
from harness import run_ranks
from workers_common import assert_trains_as_single_rank, max_abs_diff

pytestmark = pytest.mark.slow

PP2 = ["parallel.pipeline_model_parallel_size=2"]
TP2_PP2 = PP2 + ["parallel.tensor_model_parallel_size=2"]


def test_pipeline_layouts_equal_single_rank(demo_shards, repo):
    config, shards = str(repo / "configs" / "bart_tiny.yaml"), str(demo_shards)
    (single,) = run_ranks(1, train_and_gather, config, shards, [[]])[0]
    pp2 = [r[0] for r in run_ranks(2, train_and_gather, config, shards, [PP2])]
    tp2pp2 = [r[0] for r in run_ranks(4, train_and_gather, config, shards, [TP2_PP2])]
    assert max_abs_diff(single["params"], single["initial"]) > 1e-4  # it trained
    assert len(single["losses"]) == 3
    for name, ranks in (("PP=2", pp2), ("TP=2 x PP=2", tp2pp2)):
        for rank in ranks:
            assert_trains_as_single_rank(rank, single, name)
