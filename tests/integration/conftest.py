"""The uninterrupted reference run that preempted-and-resumed runs are compared with."""

import subprocess

import pytest
from harness import free_port
from launch_support import BIN, REFERENCE_STEPS, run_env, tensorboard_scalars, train_command


@pytest.fixture(scope="session")
def uninterrupted(repo, demo_shards, tmp_path_factory):
    """REFERENCE_STEPS steps of the tiny BERT in one go under torchrun (2 ranks)."""
    run = tmp_path_factory.mktemp("uninterrupted")
    command = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port()),
               *train_command(repo, demo_shards, run, REFERENCE_STEPS)]
    result = subprocess.run(command, env=run_env(run), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(tensorboard_scalars(run / "tb", "train/loss")) == \
        list(range(1, REFERENCE_STEPS + 1))
    return run
