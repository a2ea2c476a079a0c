"""A rank SIGKILLed mid-training: the survivor, started as its own process as on another node (no
launcher agent to kill it), exits non-zero within the configured bound, naming the lost rank; also
when the lost rank is rank 0, whose process hosts the rendezvous store."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import free_port

pytestmark = pytest.mark.slow

BOUND_S = 10  # train.dead_rank_timeout_s for this test


def _rank(repo, shards, rank: int, port: int, tmp_path) -> subprocess.Popen:
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "OMP_NUM_THREADS": "1",
           # The user's HOME: DeepSpeed's JIT-built ops are cached there (a fresh one compiles).
           "HOME": os.environ.get("HOME", str(tmp_path)), "PYTHONPATH": str(repo), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port), "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
    command = [sys.executable, str(repo / "launch/train.py"), "--config",
               str(repo / "configs/bert_demo.yaml"), "--set", "parallel.tensor_model_parallel_size=1",
               "--set", f"data.path={shards}", "--set", "train.train_steps=100000",
               "--set", "train.log_interval=1", "--set", "train.progress_bar=false",
               "--set", "data.num_workers=0", "--set", "train.micro_batch_size=4",
               "--set", "data.seq_length=32", "--set", f"train.dead_rank_timeout_s={BOUND_S}"]
    # stderr to a file: a pipe nobody reads while waiting could fill up and stall the rank.
    return subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                            stderr=open(tmp_path / f"rank{rank}.err", "w"))


@pytest.mark.parametrize("victim", [1, 0], ids=["rank 1", "rank 0 (hosts the store)"])
def test_survivor_exits_naming_the_killed_rank(repo, demo_shards, tmp_path, victim):
    port = free_port()
    ranks = [_rank(repo, demo_shards, r, port, tmp_path) for r in (0, 1)]
    survivor = 1 - victim
    try:
        for line in ranks[0].stdout:  # rank 0 logs every step: wait until training runs
            if line.startswith("step 3:"):
                break
        else:
            pytest.fail(f"rank 0 never reached step 3: {(tmp_path / 'rank0.err').read_text()[-3000:]}")
        os.kill(ranks[victim].pid, signal.SIGKILL)
        killed = time.monotonic()
        returncode = ranks[survivor].wait(timeout=3 * BOUND_S + 30)
        elapsed = time.monotonic() - killed
        stderr = (tmp_path / f"rank{survivor}.err").read_text()
    finally:
        for process in ranks:
            if process.poll() is None:
                process.kill()
    assert returncode != 0, stderr[-2000:]
    assert f"plmscale: rank {survivor}: rank {victim}" in stderr, stderr[-2000:]
    assert "stopped responding" in stderr, stderr[-2000:]
    assert elapsed < 2 * BOUND_S + 10, elapsed
    print(f"survivor exited {elapsed:.1f} s after the kill")
