"""ELECTRA under pipeline parallelism (generator and discriminator spread over stages, the shared
embeddings tied across them, samples seeded by the data): PP=2 and TP=2 x PP=2 equal one rank."""

import pytest
from electra_workers import train_and_gather
from harness import run_ranks

pytestmark = pytest.mark.slow

COMMON = ["model.hidden_dropout=0", "model.attention_dropout=0", "train.train_steps=3",
          "train.micro_batch_size=8", "train.gradient_accumulation_steps=2", "parallel.zero_stage=1"]


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[n] - b[n]).abs().max().item() for n in a)


def test_pipeline_layouts_equal_single_rank(demo_shards):
    single = run_ranks(1, train_and_gather, str(demo_shards), COMMON)[0]
    pp2 = run_ranks(2, train_and_gather, str(demo_shards),
                    COMMON + ["parallel.pipeline_model_parallel_size=2"])
    tp2pp2 = run_ranks(4, train_and_gather, str(demo_shards),
                       COMMON + ["parallel.pipeline_model_parallel_size=2",
                                 "parallel.tensor_model_parallel_size=2"])
    assert _max_diff(single["params"], single["initial"]) > 0  # it trained
    for name, ranks in (("PP=2", pp2), ("TP=2 x PP=2", tp2pp2)):
        for rank in ranks:
            assert _max_diff(rank["initial"], single["initial"]) == 0.0, name
            assert rank["losses"] == pytest.approx(single["losses"], rel=1e-5, abs=1e-5), name
            assert _max_diff(rank["params"], single["params"]) <= 1e-5, name
