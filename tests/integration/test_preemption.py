"""Preemption of plain launcher runs (2 CPU ranks): SIGTERM / SIGUSR1 to a torchrun or deepspeed run,
and SIGTERM to the deepspeed launcher process alone. Every rank stops after the same step, a
checkpoint is written, the ranks exit 75 and nothing keeps running; resuming with
``train.auto_resume`` continues bit-identically: the TensorBoard loss curve and the final weights
equal those of an uninterrupted run of the same length. Also: ``mpirun -n 2`` trains the same curve."""

import signal

import pytest
from harness import free_port
from launch_support import (BIN, REFERENCE_STEPS, assert_same_weights, checkpoint_step,
                            checkpoint_weights, run_env, signal_after_step, tensorboard_scalars,
                            train_command)

pytestmark = pytest.mark.slow

STEPS = REFERENCE_STEPS
SIGNAL_AT = 3
TORCH_SIGNALS = "--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"  # torchrun forwards USR1


def _torchrun(*extra):
    return [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port()),
            *extra]


def _deepspeed():
    return [str(BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port())]


# name: (launcher command, signal, to the whole process group?, launcher's exit status, reason,
#        resume and compare?)
CASES = {
    "torchrun SIGTERM": (lambda: _torchrun(), signal.SIGTERM, True, 1, "received SIGTERM", True),
    "torchrun SIGUSR1": (lambda: _torchrun(TORCH_SIGNALS), signal.SIGUSR1, True, 1,
                         "received SIGUSR1", False),
    "deepspeed SIGUSR1": (_deepspeed, signal.SIGUSR1, True, -signal.SIGUSR1, "received SIGUSR1",
                          False),
    # The deepspeed runner neither handles nor forwards SIGTERM: the ranks notice it is gone.
    "deepspeed launcher alone SIGTERM": (_deepspeed, signal.SIGTERM, False, -signal.SIGTERM,
                                         "the launcher process exited", True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_signal_checkpoints_stops_and_resumes_identically(case, repo, demo_shards, tmp_path,
                                                          uninterrupted):
    launcher, sig, whole_group, launcher_code, reason, resume = CASES[case]
    command = launcher() + train_command(repo, demo_shards, tmp_path, STEPS)
    code, output = signal_after_step(command, run_env(tmp_path), SIGNAL_AT, sig, whole_group)
    assert code == launcher_code, output[-3000:]
    assert f"plmscale: stopped early ({reason}); checkpoint written, exit 75" in output, output[-3000:]
    stopped = checkpoint_step(tmp_path / "ckpt")
    assert SIGNAL_AT <= stopped < STEPS, output[-3000:]
    losses = tensorboard_scalars(tmp_path / "tb", "train/loss")
    assert sorted(losses) == list(range(1, stopped + 1))  # no step after the checkpoint
    if not resume:
        return
    import subprocess
    result = subprocess.run(launcher() + train_command(repo, demo_shards, tmp_path, STEPS,
                                                       "train.auto_resume=true"),
                            env=run_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert checkpoint_step(tmp_path / "ckpt") == STEPS
    for tag in ("train/loss", "train/tokens_seen"):
        assert tensorboard_scalars(tmp_path / "tb", tag) == \
            tensorboard_scalars(uninterrupted / "tb", tag), tag
    assert_same_weights(checkpoint_weights(tmp_path / "ckpt"),
                        checkpoint_weights(uninterrupted / "ckpt"))


def test_mpirun_trains_the_same_curve(repo, demo_shards, tmp_path, uninterrupted):
    """Open MPI's ranks find each other by themselves (rank 0's address broadcast over MPI)."""
    import subprocess
    command = [str(BIN / "mpirun"), "-n", "2", "--bind-to", "none", str(BIN / "python"),
               *train_command(repo, demo_shards, tmp_path, STEPS)]
    result = subprocess.run(command, env=run_env(tmp_path), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "world=2 tp=1 pp=1 dp=2" in result.stdout
    assert tensorboard_scalars(tmp_path / "tb", "train/loss") == \
        tensorboard_scalars(uninterrupted / "tb", "train/loss")
