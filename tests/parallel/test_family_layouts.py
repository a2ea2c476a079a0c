"""Every family and every objective option its configs use, trained under PP=2 and TP=2 x PP=2,
reports what the single rank reports: the loss, every per-objective loss and accuracy (fp32), and
the same number of non-padding tokens. One rank group per layout trains all variants."""

import pytest
from harness import PIPELINE_LAYOUTS, run_ranks
from layout_workers import train_variants

pytestmark = pytest.mark.slow

# name -> (config file, overrides): each objective option the shipped configs use.
VARIANTS = {
    "bert nsp": ("bert_demo.yaml", ["model.num_layers=4"]),
    "bert no nsp": ("bert_demo.yaml", ["model.num_layers=4",
                                       "objective.next_sentence_prediction=false"]),
    "spanbert sbo": ("bert_demo.yaml", ["objective.masking=span",
                                        "objective.span_boundary_objective=true",
                                        "objective.next_sentence_prediction=false"]),
}
COMPARED = ("loss", "tokens")


def test_layouts_report_what_the_single_rank_reports(demo_shards, tmp_path):
    shards, teacher = str(demo_shards), str(tmp_path / "teacher")
    single = run_ranks(1, train_variants, shards, teacher, VARIANTS, [])[0]
    for layout, (ranks, overrides) in PIPELINE_LAYOUTS.items():
        for rank in run_ranks(ranks, train_variants, shards, teacher, VARIANTS, overrides):
            for name, history in rank.items():
                reference = single[name]
                for step, (got, want) in enumerate(zip(history, reference)):
                    keys = [k for k in want if k == "loss" or k == "tokens" or k.endswith(("_loss", "_accuracy"))]
                    assert set(keys) <= set(got), (layout, name, sorted(set(keys) - set(got)))
                    for key in keys:
                        assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-5), (
                            layout, name, step, key)
