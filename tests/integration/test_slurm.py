"""A real SLURM on this host (launch/slurm/local_cluster.sh: slurmctld and two slurmd nodes):
``sbatch`` of each template in launch/slurm/ training the tiny BERT on 2 ranks, one per node (srun
one task per rank; srun one torchrun per node), ``scancel --signal=USR1 --batch`` mid-run as SLURM's
time-limit warning would, then: the batch shell relays it to the ranks, they checkpoint, rank 0
requeues the job, the job comes back under the same id, resumes from the checkpoint and finishes
with the losses and weights of an uninterrupted run."""

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from launch_support import (REFERENCE_STEPS, assert_same_weights, checkpoint_step,
                            checkpoint_weights, run_env, tensorboard_scalars, train_command)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm_env(repo):
    """The environment in which sbatch/scontrol talk to the local cluster; skips (saying why)
    where SLURM cannot be started (not root, no Debian packages)."""
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd/munge needs root")
    result = subprocess.run(["bash", str(repo / "launch/slurm/local_cluster.sh")],
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.skip(f"SLURM could not be started here: {result.stderr[-1500:]}")
    return {"SLURM_CONF": result.stdout.strip().splitlines()[-1]}


def _job(env: dict, job: str) -> dict[str, str]:
    text = subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True,
                          text=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", text))


def _until(predicate, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    tail = log.read_text()[-3000:] if log.exists() else "(no job output)"
    raise AssertionError(f"timed out waiting for {what}; job output:\n{tail}")


# template: how the relayed warning reaches the ranks (the reason they report)
TEMPLATES = {"srun_per_rank.sbatch": "received SIGUSR1",
             "srun_per_node.sbatch": "{stop_file} exists"}


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_sbatch_usr1_checkpoints_requeues_and_resumes_identically(template, repo, demo_shards,
                                                                   tmp_path, slurm_env,
                                                                   uninterrupted):
    stop_file = tmp_path / "stop"
    env = dict(run_env(tmp_path), **slurm_env, PLMSCALE_ROOT=str(repo),
               PLMSCALE_GPUS_PER_NODE="1", PLMSCALE_STOP_FILE=str(stop_file))
    log = tmp_path / "job.out"
    args = train_command(repo, demo_shards, tmp_path, REFERENCE_STEPS)[1:]  # minus launch/train.py
    submit = subprocess.run(
        ["sbatch", "--parsable", "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1",
         f"--output={log}", f"--chdir={tmp_path}", str(repo / "launch/slurm" / template),
         *args], env=env, capture_output=True, text=True, timeout=60)
    assert submit.returncode == 0, submit.stderr
    job = submit.stdout.strip().split(";")[0]
    try:
        _until(lambda: log.exists() and "step 3:" in log.read_text(), 600, "step 3", log)
        subprocess.run(["scancel", "--signal=USR1", "--batch", job], env=env, check=True)
        # rank 0 requeues after the checkpoint; SLURM holds a requeued job back for a while
        # (BeginTime), which a test need not wait out.
        _until(lambda: _job(env, job).get("Restarts") == "1" and
               _job(env, job).get("JobState") == "PENDING", 300, "the requeue", log)
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env, check=True)
        _until(lambda: _job(env, job).get("JobState") in ("COMPLETED", "FAILED", "CANCELLED"),
               600, "the requeued job to finish", log)
    finally:
        subprocess.run(["scancel", job], env=env)
    output = log.read_text()
    assert _job(env, job)["JobState"] == "COMPLETED", output[-3000:]
    assert f"plmscale: job {job} (restart 1)" in output, output[-3000:]
    assert "plmscale: USR1 received" in output
    reason = TEMPLATES[template].format(stop_file=stop_file)
    assert f"stopped early ({reason}); checkpoint written" in output, output[-3000:]
    assert f"plmscale: scontrol requeue {job}\n" in output, output[-3000:]
    assert "requeue failed" not in output
    assert "world=2 tp=1 pp=1 dp=2" in output
    stopped = sorted(int(p.name.removeprefix("step")) for p in (tmp_path / "ckpt").glob("step*"))
    assert len(stopped) == 2 and 3 <= stopped[0] < REFERENCE_STEPS, stopped  # preemption + end
    assert checkpoint_step(tmp_path / "ckpt") == REFERENCE_STEPS
    for tag in ("train/loss", "train/tokens_seen"):
        assert tensorboard_scalars(tmp_path / "tb", tag) == \
            tensorboard_scalars(uninterrupted / "tb", tag), tag
    assert_same_weights(checkpoint_weights(tmp_path / "ckpt"),
                        checkpoint_weights(uninterrupted / "ckpt"))
