"""T5 pipeline parallelism (DeepSpeed PipelineModule): PP=2 and TP=2 x PP=2 equal the single-rank run.

1 encoder + 3 decoder layers put the stage boundary inside the decoder, so the encoder output, the
decoder stream and the relative-bias tables all cross it; v1.1 (untied head) runs under TP=2 x PP=2.
"""

import pytest
from harness import run_ranks
from t5_workers import V1_1, train_and_gather

pytestmark = pytest.mark.slow

COMMON = ["model.num_layers=1", "model.num_decoder_layers=3", "train.train_steps=3",
          "train.gradient_accumulation_steps=2", "train.micro_batch_size=4", "parallel.zero_stage=1",
          "parallel.tensor_model_parallel_size=1"]


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[n] - b[n]).abs().max().item() for n in a)


@pytest.mark.parametrize("version", ["v1.0", "v1.1"])
def test_pipeline_layouts_equal_single_rank(demo_shards, version):
    common = COMMON + (V1_1 if version == "v1.1" else [])
    single = run_ranks(1, train_and_gather, str(demo_shards), common)[0]
    layouts = [("TP=2 x PP=2", 4, ["parallel.pipeline_model_parallel_size=2",
                                   "parallel.tensor_model_parallel_size=2"])]
    if version == "v1.0":
        layouts.insert(0, ("PP=2", 2, ["parallel.pipeline_model_parallel_size=2"]))
    assert single["losses"][0] > single["losses"][-1]
    for name, world, layout in layouts:
        for rank in run_ranks(world, train_and_gather, str(demo_shards), common + layout):
            assert rank["losses"] == pytest.approx(single["losses"], rel=1e-5, abs=1e-5), name
            assert _max_diff(rank["params"], single["params"]) <= 1e-5, name
