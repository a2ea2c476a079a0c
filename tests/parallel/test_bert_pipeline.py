"""Pipeline parallelism (DeepSpeed PipelineModule): PP=2 and TP=2 x PP=2 equal the single-rank run."""

import pytest
from bert_workers import train_and_gather
from harness import run_pipeline_layouts, run_ranks
from workers_common import assert_trains_as_single_rank

pytestmark = pytest.mark.slow

COMMON = ["model.hidden_dropout=0", "model.attention_dropout=0", "model.num_layers=4",
          "train.train_steps=3", "train.gradient_accumulation_steps=2", "parallel.zero_stage=1"]


def test_pipeline_layouts_equal_single_rank(demo_shards):
    single = run_ranks(1, train_and_gather, str(demo_shards), COMMON)[0]
    layouts = run_pipeline_layouts(train_and_gather, str(demo_shards), common=COMMON)
    assert single["losses"][0] > single["losses"][-1]
    for name, ranks in layouts.items():
        for rank in ranks:
            assert_trains_as_single_rank(rank, single, name)
