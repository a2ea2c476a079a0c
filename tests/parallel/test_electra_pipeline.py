"""ELECTRA under pipeline parallelism (generator and discriminator spread over stages, the shared
embeddings tied across them, samples seeded by the data): PP=2 and TP=2 x PP=2 equal one rank."""

import pytest
from electra_workers import train_and_gather
from harness import run_pipeline_layouts, run_ranks
from workers_common import assert_trains_as_single_rank, max_abs_diff

pytestmark = pytest.mark.slow

COMMON = ["model.hidden_dropout=0", "model.attention_dropout=0", "train.train_steps=3",
          "train.micro_batch_size=8", "train.gradient_accumulation_steps=2", "parallel.zero_stage=1"]


def test_pipeline_layouts_equal_single_rank(demo_shards):
    single = run_ranks(1, train_and_gather, str(demo_shards), COMMON)[0]
    layouts = run_pipeline_layouts(train_and_gather, str(demo_shards), common=COMMON)
    assert max_abs_diff(single["params"], single["initial"]) > 0  # it trained
    for name, ranks in layouts.items():
        for rank in ranks:
            assert max_abs_diff(rank["initial"], single["initial"]) == 0.0, name
            assert_trains_as_single_rank(rank, single, name)
