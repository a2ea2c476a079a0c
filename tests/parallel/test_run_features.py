"""Issue 17's run features through the real training loop on 2 ranks (DP=2, ZeRO-1, dropout on):
a weighted two-source mixture with per-source counts, evaluation on a held-out split, the WSD
schedule across a stop and resume, ``evaluate_checkpoint`` (launch/evaluate.py), and
``plmscale report`` on the run's TensorBoard events. One rank group runs everything."""

import math

import pytest
from closeness import assert_within
from harness import run_ranks
from launch_support import assert_report
from run_feature_workers import STEPS, STOP_AT, mixture_eval_resume

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(demo_shards, second_source, tmp_path_factory):
    out = tmp_path_factory.mktemp("run_features")
    ranks = run_ranks(2, mixture_eval_resume, str(demo_shards), str(second_source), str(out))
    return ranks[0], out


def wsd(step: int, lr=1e-3, floor=1e-5, warmup=2, decay=2) -> float:
    """WSD by hand: linear warmup from the floor, flat, linear decay over the last ``decay`` steps."""
    if step < warmup:
        return floor + (lr - floor) * step / warmup
    return lr if step <= STEPS - decay else floor + (lr - floor) * (STEPS - step) / decay


def test_evaluation_and_resume_leave_training_unchanged(runs):
    result, _ = runs
    straight, interrupted = result["straight"], result["first"] + result["resumed"]
    assert len(result["first"]) == STOP_AT and len(interrupted) == STEPS
    assert [h["loss"] for h in interrupted] == [h["loss"] for h in straight]
    assert "valid_loss" in result["first"][-1] and "valid_loss" in result["resumed"][-1]
    assert not any("valid_loss" in h for h in straight)


def test_lr_follows_wsd_and_continues_across_the_resume(runs):
    result, _ = runs
    for history in (result["straight"], result["first"] + result["resumed"]):
        assert [h["lr"] for h in history] == pytest.approx([wsd(s) for s in range(1, STEPS + 1)],
                                                           rel=1e-12)


def test_per_source_counts_cover_every_sample_and_continue(runs):
    result, _ = runs
    names = sorted(k for k in result["straight"][-1] if k.startswith("samples_"))
    assert len(names) == 2
    per_step = 4 * result["dp"]  # micro-batch 4 on each DP rank
    for history in (result["straight"], result["first"] + result["resumed"]):
        assert [sum(h[n] for n in names) for h in history] == \
            [per_step * s for s in range(1, STEPS + 1)]
    final = {n: result["straight"][-1][n] for n in names}
    assert final == {n: result["resumed"][-1][n] for n in names}
    assert all(v > 0 for v in final.values())


def test_valid_metrics_equal_the_mean_of_batches_recomputed_by_hand(runs):
    result, _ = runs
    assert_within(result["valid_at_end"])
    assert_within(result["evaluate_checkpoint"])
    assert_within(result["pipeline_eval"])
    perplexity, mlm_loss = result["perplexity"]
    assert perplexity == pytest.approx(math.exp(mlm_loss), rel=1e-12)


def test_tensorboard_and_report(runs):
    from plmscale.report import read_scalars
    _, out = runs
    scalars = read_scalars(out / "tb", strict=True)  # the resume continued, repeated no step
    assert sorted(scalars["valid/loss"]) == [STOP_AT, STEPS]
    assert sorted(scalars["train/loss"]) == list(range(1, STEPS + 1))
    assert "valid/mlm_perplexity" in scalars and len([t for t in scalars if "samples_" in t]) == 2
    assert_report(out)
