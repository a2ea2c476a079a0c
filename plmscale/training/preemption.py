"""Stopping early without losing work: preemption signals, a lost launcher and a wall-clock limit.

Every rank keeps a local reason to stop (a signal from ``train.stop_signals`` arrived, the launcher
that started it is gone, ``train.stop_file`` exists, ``train.exit_duration_minutes`` has passed)
and the reasons are all-reduced
once per step, so all ranks stop after the same step, write one checkpoint together and exit. A
signal handler only sets a flag: the step in flight finishes, nothing is interrupted mid-collective.

Exit codes of ``launch/train.py`` (the deepspeed launcher passes a rank's code on; torchrun reports
any failed rank as 1):

* 0 — ``train.train_steps`` reached;
* 2 — configuration error;
* ``EXIT_RESUMABLE`` (75, sysexits' EX_TEMPFAIL) — stopped early, checkpoint written: run the same
  command with ``train.auto_resume=true`` to continue. Under SLURM (``SLURM_JOB_ID`` set) rank 0 first
  asks ``scontrol requeue $SLURM_JOB_ID`` (``train.requeue``), so the job comes back by itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from plmscale.config.schema import TrainConfig
from plmscale.parallel import device
from plmscale.training.checkpoint import latest_checkpoint

EXIT_RESUMABLE = 75


def parse_signals(names: str) -> list[signal.Signals]:
    """``"SIGTERM,SIGUSR1"`` -> the signals; an unknown name is a ValueError naming the field."""
    parsed = []
    for name in filter(None, (n.strip().upper() for n in names.split(","))):
        name = name if name.startswith("SIG") else "SIG" + name
        if name in ("SIGKILL", "SIGSTOP") or not hasattr(signal.Signals, name):
            raise ValueError(f"train.stop_signals: {name} is not a signal a process can handle; "
                             f"use names such as SIGTERM,SIGUSR1")
        parsed.append(signal.Signals[name])
    return parsed


def resume_directory(train: TrainConfig) -> Optional[str]:
    """Where to resume from: ``save_dir`` when ``auto_resume`` is on and it holds a complete
    checkpoint (the same job coming back), else ``load_dir`` (None: start from scratch)."""
    if train.auto_resume and latest_checkpoint(train.save_dir):
        return train.save_dir
    return train.load_dir


def _parent_of(pid: int) -> Optional[int]:
    """The parent pid of ``pid`` from /proc, or None when the process is gone (or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the name in parentheses may contain spaces


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def launcher_chain() -> list[int]:
    """The launcher processes this rank depends on, nearest first: the per-node launcher (torchrun's
    agent or deepspeed's ``launch.py``) and, under the ``deepspeed`` command, its runner too — which
    does not forward SIGTERM, so a rank must notice by itself that the runner is gone."""
    if "TORCHELASTIC_RUN_ID" not in os.environ and "CROSS_RANK" not in os.environ:
        return []  # not started by a launcher process (srun, mpirun, a plain python)
    chain = [os.getppid()]
    if "CROSS_RANK" in os.environ:  # set by deepspeed.launcher.launch
        runner = _parent_of(chain[0])
        if runner and "deepspeed" in _cmdline(runner) and "deepspeed.launcher.launch" not in \
                _cmdline(runner):
            chain.append(runner)
    return chain


class StopRequest:
    """Watches for reasons to stop; ``check()`` is collective and answers the same on every rank."""

    def __init__(self, train: TrainConfig, started: Optional[float] = None):
        self.signals = parse_signals(train.stop_signals)
        if train.exit_duration_minutes < 0:
            raise ValueError(f"train.exit_duration_minutes={train.exit_duration_minutes}: use 0 (no "
                             f"limit) or the minutes after which to checkpoint and stop")
        started = time.monotonic() if started is None else started
        self.deadline = started + 60 * train.exit_duration_minutes if train.exit_duration_minutes \
            else None
        self.requeue = train.requeue
        self.stop_file = train.stop_file
        self.reason: Optional[str] = None
        self._received = 0
        self._chain: list[int] = []

    def _on_signal(self, signum, frame) -> None:
        self._received = self._received or signum

    @contextlib.contextmanager
    def watching(self):
        """Handle the stop signals (instead of dying) while the block runs."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in self.signals}
        self._chain = launcher_chain()
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _launcher_gone(self) -> bool:
        links = zip(self._chain[1:], self._chain)  # (expected parent, child)
        return bool(self._chain) and (os.getppid() != self._chain[0] or
                                      any(_parent_of(child) != parent for parent, child in links))

    def check(self) -> Optional[str]:
        """Collective: all ranks call it once per step. Returns why to stop (the same text on every
        rank) or None, and remembers it in ``reason``."""
        local = torch.tensor([self._received,
                              int(self._launcher_gone()),
                              int(bool(self.stop_file) and os.path.exists(self.stop_file)),
                              int(self.deadline is not None and time.monotonic() >= self.deadline)],
                             dtype=torch.int64, device=device())
        if dist.is_initialized():
            dist.all_reduce(local, op=dist.ReduceOp.MAX)
        received, gone, asked, late = local.tolist()
        if received:
            self.reason = f"received {signal.Signals(received).name}"
        elif gone:
            self.reason = "the launcher process exited"
        elif asked:
            self.reason = f"{self.stop_file} exists"
        elif late:
            self.reason = "train.exit_duration_minutes reached"
        return self.reason

    def finish(self) -> int:
        """After a stop: rank 0 requeues the SLURM job (when under SLURM and ``train.requeue``);
        returns the exit code for ``launch/train.py``."""
        job = os.environ.get("SLURM_JOB_ID")
        rank = dist.get_rank() if dist.is_initialized() else 0
        if rank == 0:
            print(f"plmscale: stopped early ({self.reason}); checkpoint written, exit "
                  f"{EXIT_RESUMABLE}", file=sys.stderr, flush=True)
        if job and self.requeue and rank == 0:
            # scontrol ends the whole job (this process too, often before it could print again)
            # and queues it again; it runs only after every rank has written the checkpoint.
            print(f"plmscale: scontrol requeue {job}", file=sys.stderr, flush=True)
            result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if result.returncode != 0:
                print(f"plmscale: requeue failed ({result.stderr.strip()}); resubmit the job",
                      file=sys.stderr, flush=True)
        return EXIT_RESUMABLE
