"""Run a function on N real ranks (separate processes, gloo backend) and collect what each returns.

Spawned processes pay the torch/deepspeed import once per group, so tests run several checks in one
group. A rank that raises fails the test with its traceback; a hang is cut off by ``timeout``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import tempfile
import traceback
from pathlib import Path

from plmscale.parallel.launch_env import free_port  # noqa: F401  (tests import it from here)


def _entry(rank: int, world_size: int, port: int, out_dir: str, fn, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    import warnings
    warnings.filterwarnings("ignore")
    import torch
    torch.set_num_threads(1)  # N ranks share the machine's cores; oversubscription only slows
    try:
        result = fn(*args)
        Path(out_dir, f"{rank}.pkl").write_bytes(pickle.dumps(result))
    except BaseException:
        Path(out_dir, f"{rank}.err").write_text(traceback.format_exc())
        os._exit(1)
    try:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:
        pass


def run_ranks(world_size: int, fn, *args, timeout: float = 900):
    """``fn(*args)`` on ``world_size`` ranks; returns the list of per-rank results."""
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as out_dir:
        port = free_port()
        procs = [ctx.Process(target=_entry, args=(r, world_size, port, out_dir, fn, args))
                 for r in range(world_size)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout)
        errors = [Path(out_dir, f"{r}.err") for r in range(world_size)]
        for p in procs:
            if p.is_alive():
                p.kill()
        messages = [f"rank {r}:\n{e.read_text()}" for r, e in enumerate(errors) if e.exists()]
        if messages:
            raise AssertionError("\n".join(messages))
        if any(p.exitcode != 0 for p in procs):
            raise AssertionError(f"ranks exited with {[p.exitcode for p in procs]} "
                                 f"(timeout {timeout}s?)")
        return [pickle.loads(Path(out_dir, f"{r}.pkl").read_bytes()) for r in range(world_size)]


# The pipeline layouts each family is compared under with a single rank: name -> (ranks, overrides).
PIPELINE_LAYOUTS = {
    "PP=2": (2, ["parallel.pipeline_model_parallel_size=2"]),
    "TP=2 x PP=2": (4, ["parallel.pipeline_model_parallel_size=2",
                        "parallel.tensor_model_parallel_size=2"]),
}

