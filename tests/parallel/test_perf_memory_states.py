"""Predicted model states per rank (plmscale.perf) against what DeepSpeed allocates on 2 and 4 gloo
ranks: parameters, ZeRO-0/1 gradients, fp32 master partitions and Adam moments, exactly."""

import pytest
from harness import run_ranks
from perf_workers import TINY, allocated_elements

from plmscale.config import load_config
from plmscale.perf import Layout, model_states, stage_tensors

pytestmark = pytest.mark.slow

LAYOUTS = {
    2: [[f"parallel.tensor_model_parallel_size=2", f"parallel.zero_stage={z}"] for z in (0, 1)]
       + [[f"parallel.zero_stage={z}"] for z in (1, 2, 3)]
       + [["parallel.pipeline_model_parallel_size=2", f"parallel.zero_stage={z}"] for z in (0, 1)],
    4: [["parallel.tensor_model_parallel_size=2", "parallel.zero_stage=2"],
        ["parallel.tensor_model_parallel_size=2", "parallel.pipeline_model_parallel_size=2",
         "parallel.zero_stage=1"]],
}


@pytest.mark.parametrize("world", sorted(LAYOUTS))
def test_model_states_per_rank_are_what_deepspeed_allocates(world):
    ranks = run_ranks(world, allocated_elements, LAYOUTS[world])
    for index, overrides in enumerate(LAYOUTS[world]):
        cfg = load_config(None, TINY + overrides)
        layout = Layout.of(cfg, world)
        per_stage = stage_tensors(cfg, layout)
        for rank, results in enumerate(ranks):
            got = results[index]
            predicted = model_states(per_stage[got["stage"]], layout.dp, layout.zero_stage)
            where = f"{overrides} rank {rank}"
            assert got["parameters"] * 4 == predicted.parameters, where
            assert got["master"] * 4 == predicted.master, where
            assert got["optimizer"] * 4 == predicted.optimizer, where
            if got["gradients"] is not None and layout.zero_stage == 0:
                assert got["gradients"] * 4 == predicted.gradients, where
