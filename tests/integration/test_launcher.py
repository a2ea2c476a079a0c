"""The real entry points end to end: the deepspeed launcher on 2 CPU ranks (TP=2, ZeRO-1) training
BERT on real text, writing a checkpoint and TensorBoard scalars; torchrun running the same entry."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from harness import free_port
from launch_support import assert_report

pytestmark = pytest.mark.slow

STEP_LINE = re.compile(r"^step (\d+): (.*)$", re.MULTILINE)


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _metrics(output: str) -> dict[int, dict[str, float]]:
    return {int(step): {k: float(v) for k, v in (kv.split("=") for kv in rest.split())}
            for step, rest in STEP_LINE.findall(output)}


def test_deepspeed_launcher_trains_bert_on_two_ranks(repo, demo_shards, tmp_path):
    """2 ranks, data parallel with ZeRO-1 (global batch 64), no dropout: a 2-layer BERT gets past
    the unigram plateau (~6.5 nats for this corpus and vocabulary) within a few hundred steps.
    As launch/demo.sh runs it: evaluated on a held-out novel, then ``plmscale report`` on the run."""
    steps = 400
    command = [_bin("deepspeed"), "--num_gpus", "2", "--master_port", str(free_port()),
               str(repo / "launch/train.py"), "--config", str(repo / "configs/bert_demo.yaml"),
               "--set", "parallel.tensor_model_parallel_size=1", "--set", "model.hidden_dropout=0",
               "--set", "model.attention_dropout=0", "--set", "train.warmup_steps=20",
               "--set", f"data.path={demo_shards}", "--set", f"train.train_steps={steps}",
               "--set", "train.log_interval=10", "--set", "train.progress_bar=false",
               "--set", f"train.save_dir={tmp_path / 'ckpt'}",
               "--set", f"train.tensorboard_dir={tmp_path / 'tb'}",
               "--set", "data.valid_fraction=0.05", "--set", "train.eval_interval=200",
               "--set", "train.eval_iters=2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path,
                            env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
                                 "OMP_NUM_THREADS": "1", "HOME": str(tmp_path),
                                 "PYTHONPATH": str(repo)})  # this checkout, as run_env does
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "world=2 tp=1 pp=1 dp=2" in result.stdout and "ZeRO-1" in result.stdout
    metrics = _metrics(result.stdout)
    assert sorted(metrics)[-1] == steps
    first = metrics[1]["mlm_loss"]
    late = [m["mlm_loss"] for s, m in metrics.items() if s >= steps - 30]
    # The MLM loss falls by at least 30% from its start (mean of the last logged steps).
    assert sum(late) / len(late) <= 0.7 * first, (first, late)
    assert metrics[steps]["mlm_accuracy"] > metrics[1]["mlm_accuracy"]
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == f"step{steps}"
    assert list((tmp_path / "tb").glob("events.out.tfevents.*")), "no TensorBoard event file"
    valid = re.findall(r"^step (\d+) valid: loss=([\d.]+)", result.stdout, re.MULTILINE)
    assert [int(step) for step, _ in valid] == [200, 400], valid
    assert_report(tmp_path)


def test_torchrun_dry_run_reports_size_and_layout(repo, tmp_path):
    config = tmp_path / "bert_base.yaml"
    config.write_text("model:\n  preset: bert-base\nparallel:\n  tensor_model_parallel_size: 2\n")
    command = [_bin("torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port()),
               str(repo / "launch/train.py"), "--config", str(config), "--dry-run", "--gpu", "A100",
               "--set", "train.micro_batch_size=2048"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
                                 "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "parameters: 110,106,428" in result.stdout
    assert "world=2 tp=2 pp=1 dp=1" in result.stdout
    # plmscale.perf's figures: FLOPs per step, memory per rank against the A100's 80 GB, and the
    # warning, since 2048 sequences of 128 tokens of BERT-base activations need more than that
    assert re.search(r"FLOPs per step: [\d.e+]+ \(", result.stdout)
    assert re.search(r"predicted memory per rank, pipeline stage 0: [\d.]+ GiB .* of 74.5 GiB \(A100\)",
                     result.stdout)
    assert "WARNING: this layout will not fit" in result.stdout
