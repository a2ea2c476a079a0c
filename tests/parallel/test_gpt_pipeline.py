"""GPT pipeline parallelism (DeepSpeed PipelineModule): PP=2 and TP=2 x PP=2 equal the single-rank
run over 3 steps (losses and the gathered trained weights)."""

import pytest
from gpt_workers import train_and_gather
from harness import run_ranks
from workers_common import assert_trains_as_single_rank

pytestmark = pytest.mark.slow

PP2 = ["parallel.pipeline_model_parallel_size=2"]


def test_pipeline_layouts_equal_single_rank(demo_shards):
    (single,) = run_ranks(1, train_and_gather, str(demo_shards), [[]])[0]
    pp2 = run_ranks(2, train_and_gather, str(demo_shards), [PP2])
    tp2pp2 = run_ranks(4, train_and_gather, str(demo_shards),
                       [PP2 + ["parallel.tensor_model_parallel_size=2"]])
    assert len(single["losses"]) == 3
    for name, ranks in (("PP=2", pp2), ("TP=2 x PP=2", tp2pp2)):
        for (rank,) in ranks:
            assert_trains_as_single_rank(rank, single, name)
