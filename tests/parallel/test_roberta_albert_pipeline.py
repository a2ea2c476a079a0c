"""RoBERTa and ALBERT pipelines (DeepSpeed PipelineModule): PP=2 and TP=2 x PP=2 train to the same
losses and parameters as a single rank; ALBERT's shared layer stays one set across the stages."""

import pytest
from encoder_family_workers import train_and_gather
from harness import run_pipeline_layouts, run_ranks
from workers_common import assert_trains_as_single_rank, max_abs_diff

pytestmark = pytest.mark.slow


def test_pipeline_layouts_equal_single_rank(demo_shards):
    single = run_ranks(1, train_and_gather, str(demo_shards), [])[0]
    layouts = run_pipeline_layouts(train_and_gather, str(demo_shards), common=[])
    pp2, tp2pp2 = layouts["PP=2"], layouts["TP=2 x PP=2"]
    for family in ("roberta", "albert"):
        assert len(set(single[family]["losses"])) == 3  # it trains (3 steps are too few and too
        # noisy for ALBERT's SOP loss to fall reliably; equality below is the point)
        for name, ranks in layouts.items():
            for rank in ranks:
                assert_trains_as_single_rank(rank[family], single[family], (family, name))
    assert {n.split(".")[2] for n in single["albert"]["params"] if ".layer_groups." in n} == {"0"}
    # After training, both stages' copies of the shared layer are still identical (same TP rank).
    for ranks in (pp2, [tp2pp2[0], tp2pp2[2]], [tp2pp2[1], tp2pp2[3]]):
        assert max_abs_diff(ranks[0]["albert_stage_layer"], ranks[1]["albert_stage_layer"]) == 0.0
