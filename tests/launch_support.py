"""What the launcher, preemption and SLURM tests share: the tiny BERT command line, signalling a
running job, and reading back what a run left (TensorBoard losses, checkpointed weights)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
REFERENCE_STEPS = 40
"""Length of the uninterrupted reference run (tests/integration/conftest.py) and of the runs that
are stopped and resumed to compare with it."""

# 2 ranks of data parallelism on a 2-layer BERT with its dropout on (so resume must restore the
# dropout streams too), short sequences: a step takes tens of milliseconds.
TINY_BERT = ["parallel.tensor_model_parallel_size=1", "data.seq_length=64",
             "model.max_position_embeddings=64", "train.micro_batch_size=8", "train.log_interval=1",
             "train.progress_bar=false", "data.num_workers=0", "train.warmup_steps=5"]


def train_command(repo: Path, shards: Path, run_dir: Path, steps: int, *extra: str) -> list[str]:
    """``launch/train.py`` arguments for the tiny BERT writing checkpoints and TensorBoard under
    ``run_dir``."""
    sets = TINY_BERT + [f"data.path={shards}", f"train.train_steps={steps}",
                        f"train.save_dir={run_dir / 'ckpt'}", f"train.tensorboard_dir={run_dir / 'tb'}",
                        *extra]
    return [str(repo / "launch/train.py"), "--config", str(repo / "configs/bert_demo.yaml"),
            *(arg for s in sets for arg in ("--set", s))]


def run_env(home: Path) -> dict[str, str]:
    """A clean environment for a launched run. HOME stays the user's when there is one: DeepSpeed
    compiles its CPU shared-memory op into ~/.cache once, not once per run."""
    return {"PATH": f"{BIN}:/usr/bin:/bin", "OMP_NUM_THREADS": "1",
            "HOME": os.environ.get("HOME", str(home)),
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def signal_after_step(command: list[str], env: dict, step: int, sig: signal.Signals,
                      whole_group: bool, timeout: float = 600) -> tuple[int, str]:
    """Start ``command`` in a session of its own, send ``sig`` once step ``step`` is logged (to the
    whole process group, or to the launcher process alone), then wait until every process of the
    run has ended. Returns the launcher's exit status and everything it printed."""
    import psutil
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + timeout
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(f"step {step}:") or time.monotonic() > deadline:
            break
    family = psutil.Process(proc.pid).children(recursive=True)
    if whole_group:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    seen.append(proc.stdout.read())
    code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    _, alive = psutil.wait_procs(family, timeout=max(deadline - time.monotonic(), 1))
    for leftover in alive:
        leftover.kill()
    assert not alive, f"processes outlived the run: {alive}"
    return code, "".join(seen)


def tensorboard_scalars(tb_dir: Path, tag: str) -> dict[int, float]:
    """``tag`` per step over all event files in ``tb_dir`` (a resumed run adds a file); a step
    written twice is an error, since a resume must continue the curve, not repeat it."""
    from plmscale.report import read_scalars
    return read_scalars(tb_dir, strict=True).get(tag, {})


def checkpoint_weights(save_dir: Path) -> dict:
    """The model weights of ``save_dir``'s latest checkpoint (rank 0's file: TP=1 here)."""
    import torch
    tag = (save_dir / "latest").read_text().strip()
    state = torch.load(save_dir / tag / "mp_rank_00_model_states.pt", map_location="cpu",
                       weights_only=False)
    return state["module"]


def assert_same_weights(a: dict, b: dict) -> None:
    import torch
    assert a.keys() == b.keys()
    different = [name for name in a if (a[name] is None) != (b[name] is None) or
                 (a[name] is not None and not torch.equal(a[name], b[name]))]
    assert not different, f"weights differ: {different[:5]}"


def checkpoint_step(save_dir: Path) -> int:
    return int((save_dir / "latest").read_text().strip().removeprefix("step"))


def assert_report(run_dir: Path) -> None:
    """``plmscale report`` on a finished run: the plots open as images with content, and the
    summary names the last valid loss."""
    import matplotlib.image

    from plmscale.cli import main
    assert main(["report", str(run_dir)]) == 0
    pngs = sorted((run_dir / "report").glob("*.png"))
    assert [p.name for p in pngs] == ["grad_norm.png", "loss.png", "lr.png", "throughput.png"]
    for png in pngs:
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0.01, png
    summary = (run_dir / "report" / "report.md").read_text()
    assert "| valid loss, last |" in summary and "![loss](loss.png)" in summary

