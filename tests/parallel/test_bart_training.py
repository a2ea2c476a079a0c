"""configs/bart_tiny.yaml trains on real text (the bundled novels) on 2 gloo ranks, TP=2, ZeRO-1,
DeepSpeed, dropout on: the denoising loss falls by >= 30% within about a minute."""

import pytest
from bart_workers import train_config
from harness import run_ranks

pytestmark = pytest.mark.slow


def test_tiny_config_loss_falls(demo_shards, repo):
    overrides = ["train.train_steps=100", "train.progress_bar=false", "train.save_dir=null",
                 "train.tensorboard_dir=null", "data.num_workers=0"]
    results = run_ranks(2, train_config, str(repo / "configs" / "bart_tiny.yaml"),
                        str(demo_shards), overrides)
    losses = results[0]["losses"]
    assert results[1]["losses"] == losses  # one TP group: the same loss on both ranks
    assert len(losses) == 100
    drop = 1 - sum(losses[-5:]) / 5 / losses[0]
    assert drop >= 0.30, (losses[0], losses[-5:])
    # Wall time depends on what else runs on the machine; CPU time per rank is what an idle
    # 2-core machine needs (one core per rank): ~30 s measured, budget 60 s.
    for r in results:
        assert r["cpu_seconds"] <= 60, r["cpu_seconds"]
