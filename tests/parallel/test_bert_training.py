"""DeepSpeed training on 2 gloo ranks: ZeRO stages agree, resume is exact."""

import shutil

import pytest
from bert_workers import TRAIN, train_runs
from closeness import assert_close
from harness import run_ranks

pytestmark = pytest.mark.slow

NO_DROPOUT = ["model.hidden_dropout=0", "model.attention_dropout=0"]


def test_zero_stages_give_the_same_losses(demo_shards):
    runs = [NO_DROPOUT + ["train.train_steps=5", f"parallel.zero_stage={z}"] for z in (0, 1, 2, 3)]
    histories = run_ranks(2, train_runs, str(demo_shards), runs)[0]
    baseline = [h["loss"] for h in histories[0]]
    assert len(baseline) == 5 and baseline[0] > baseline[-1]  # it trains
    for stage, history in zip((1, 2, 3), histories[1:]):
        losses = [h["loss"] for h in history]
        assert_close(losses, baseline, f"ZeRO-{stage} losses")


def test_resume_matches_straight_run(demo_shards, tmp_path):
    """6 steps straight, saving at step 3 == fresh processes resuming that step-3 checkpoint for
    3 steps (TP=2, ZeRO-1, dropout on); a resume with a longer run follows its own LR curve."""
    from plmscale.config import load_config
    from plmscale.training.schedules import lr_at
    layout = ["parallel.tensor_model_parallel_size=2", "parallel.zero_stage=1",
              "train.gradient_accumulation_steps=2"]
    ckpt = tmp_path / "ckpt"
    (straight,) = run_ranks(2, train_runs, str(demo_shards), [
        layout + ["train.train_steps=6", "train.save_interval=3", f"train.save_dir={ckpt}"]])[0]
    shutil.rmtree(ckpt / "step6")  # as if the job had been killed after its step-3 checkpoint
    resumed, extended = run_ranks(2, train_runs, str(demo_shards), [
        layout + ["train.train_steps=6", f"train.load_dir={ckpt}"],
        layout + ["train.train_steps=8", f"train.load_dir={ckpt}"]])[0]
    assert len(resumed) == 3 and len(extended) == 5
    assert_close([h["loss"] for h in resumed], [h["loss"] for h in straight[3:]], "resumed losses")
    # The schedule continues at step 4, not restarted; the rates are the resumed config's own curve
    # (ZeRO restores its optimizer's saved rates after the scheduler: they must not win).
    assert [h["lr"] for h in resumed] == pytest.approx([h["lr"] for h in straight[3:]])
    longer = load_config(None, TRAIN + ["train.train_steps=8"])
    assert [h["lr"] for h in extended] == pytest.approx([lr_at(longer.train, s) for s in range(4, 9)])
