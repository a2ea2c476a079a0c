"""T5 pipeline parallelism (DeepSpeed PipelineModule): PP=2 and TP=2 x PP=2 equal the single-rank run.

1 encoder + 3 decoder layers put the stage boundary inside the decoder, so the encoder output, the
decoder stream and the relative-bias tables all cross it. v1.0 (tied, scaled head) and v1.1 (untied
head) both run under TP=2 x PP=2; three process groups in all (spawning dominates the cost).
"""

import pytest
from harness import run_ranks
from t5_workers import V1_1, train_and_gather
from workers_common import assert_trains_as_single_rank

pytestmark = pytest.mark.slow

COMMON = ["model.num_layers=1", "model.num_decoder_layers=3", "train.train_steps=3",
          "train.gradient_accumulation_steps=2", "train.micro_batch_size=4", "parallel.zero_stage=1",
          "parallel.tensor_model_parallel_size=1"]
PP2 = ["parallel.pipeline_model_parallel_size=2"]
TP2_PP2 = PP2 + ["parallel.tensor_model_parallel_size=2"]


def test_pipeline_layouts_equal_single_rank(demo_shards):
    shards = str(demo_shards)
    v10, v11 = run_ranks(1, train_and_gather, shards, [COMMON, COMMON + V1_1])[0]
    (pp2,) = zip(*run_ranks(2, train_and_gather, shards, [COMMON + PP2]))
    tp2pp2_v10, tp2pp2_v11 = zip(*run_ranks(4, train_and_gather, shards,
                                            [COMMON + TP2_PP2, COMMON + V1_1 + TP2_PP2]))
    for single in (v10, v11):
        assert single["losses"][0] > single["losses"][-1]
    assert v10["losses"] != v11["losses"]
    for name, ranks, single in (("PP=2", pp2, v10), ("TP=2 x PP=2 v1.0", tp2pp2_v10, v10),
                                ("TP=2 x PP=2 v1.1", tp2pp2_v11, v11)):
        for rank in ranks:
            assert_trains_as_single_rank(rank, single, name)
