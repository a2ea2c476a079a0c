"""The tiny MoE GPT config end to end: the launcher trains it on real text on 2 ranks with expert
parallel 2 (each rank holds half the experts), the LM loss falls by >= 30%, the routing metrics are
on the progress line, and the checkpoint it saved at EP=2 resumes at EP=1."""

import os
import re
import subprocess
import sys

import pytest
from harness import free_port

pytestmark = pytest.mark.slow


def _train(repo, ranks: int, overrides: list[str]):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [f"--set={o}" for o in overrides + ["train.log_interval=1", "train.progress_bar=false"]]
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
         "--master_port", str(free_port()), str(repo / "launch/train.py"),
         "--config", str(repo / "configs/gpt_moe_tiny.yaml"), *args],
        capture_output=True, text=True, env=env, timeout=1500, cwd=repo)


def _steps(stdout: str) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in re.findall(r"(\w+)=([-\d.e+]+)", line)}
            for line in re.findall(r"^step \d+: .*$", stdout, re.M)]


def test_tiny_moe_config_learns_real_text_and_resumes_at_another_ep(demo_shards, tmp_path, repo):
    save_dir = tmp_path / "ckpt"
    train = _train(repo, 2, [f"data.path={demo_shards}", f"train.save_dir={save_dir}"])
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-3000:]
    steps = _steps(train.stdout)
    assert len(steps) == 200
    lm = [s["lm_loss"] for s in steps]
    # The LM loss falls by >= 30% (ln 8000 = 9.0 at the start), on the mean of the last 10 steps.
    assert sum(lm[-10:]) / 10 <= 0.7 * lm[0], lm[::10]
    # The routing metrics reach the progress line: both losses, drops at capacity 1.25, the load.
    last = steps[-1]
    assert last["loss"] > last["lm_loss"] and last["moe_aux_loss"] >= 2 * 0.99  # 2 layers, >= 1 each
    assert last["moe_z_loss"] > 0 and 0 <= last["moe_dropped_fraction"] < 0.5
    assert last["moe_load_max_over_mean"] >= 1
    assert (save_dir / "latest").is_file()

    # The EP=2 checkpoint continues on 2 ranks at EP=1 (experts are stored per global id).
    resumed = _train(repo, 2, [f"data.path={demo_shards}", f"train.load_dir={save_dir}",
                               "model.expert_model_parallel_size=1", "train.train_steps=202",
                               "train.save_dir=null"])
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    after = _steps(resumed.stdout)
    assert len(after) == 2
    assert after[0]["lm_loss"] < 0.8 * lm[0]  # the trained weights, not a fresh start
