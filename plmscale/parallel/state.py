"""Process groups: torch.distributed + megatron-core ``parallel_state``, and the ``mpu`` object that
DeepSpeed expects for tensor parallelism without a pipeline."""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps

from plmscale.config.schema import ExperimentConfig
from plmscale.parallel.launch_env import discover


def device() -> torch.device:
    """The device this rank computes on: its GPU when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_distributed(timeout_s: float = 1800.0) -> None:
    """Join the process group of the launcher that started this process (deepspeed, torchrun, srun
    or mpirun; see ``plmscale.parallel.launch_env``).

    NCCL with CUDA when there is a GPU, gloo on CPU. A single process without launcher variables
    becomes a world of one, so scripts and tests run without a launcher too. A collective that
    has not completed after ``timeout_s`` fails instead of hanging (``train.collective_timeout_s``).
    """
    if dist.is_initialized():
        return
    launch = discover()
    launch.export()  # RANK, WORLD_SIZE, MASTER_ADDR... for the env:// rendezvous
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    timeout = datetime.timedelta(seconds=timeout_s)
    if launch.world_size == 1 and launch.master_port is None:
        # A world of one needs no TCP rendezvous: binding a port picked earlier races with every
        # other process on the machine (EADDRINUSE), an in-memory store cannot.
        dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1,
                                timeout=timeout)
    else:
        dist.init_process_group(backend=backend, timeout=timeout)
    # DeepSpeed's communication layer wraps the same process group (its pipeline module needs it).
    import deepspeed
    deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, timeout=timeout)


def init_model_parallel(cfg: ExperimentConfig) -> None:
    """Create tensor/pipeline/data-parallel groups (megatron-core rank order: tp fastest, pp slowest,
    which is also DeepSpeed's ``PipeModelDataParallelTopology`` order)."""
    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
    ps.initialize_model_parallel(
        tensor_model_parallel_size=cfg.parallel.tensor_model_parallel_size,
        pipeline_model_parallel_size=cfg.parallel.pipeline_model_parallel_size,
        create_gloo_process_groups=False,
    )


class DeepSpeedMpu:
    """The ``mpu`` interface DeepSpeed queries (model = tensor parallel here), backed by megatron-core
    ``parallel_state`` so both libraries agree on every group."""

    get_model_parallel_rank = staticmethod(ps.get_tensor_model_parallel_rank)
    get_model_parallel_world_size = staticmethod(ps.get_tensor_model_parallel_world_size)
    get_model_parallel_group = staticmethod(ps.get_tensor_model_parallel_group)
    get_tensor_model_parallel_rank = staticmethod(ps.get_tensor_model_parallel_rank)
    get_tensor_model_parallel_world_size = staticmethod(ps.get_tensor_model_parallel_world_size)
    get_tensor_model_parallel_group = staticmethod(ps.get_tensor_model_parallel_group)
    get_data_parallel_rank = staticmethod(ps.get_data_parallel_rank)
    get_data_parallel_world_size = staticmethod(ps.get_data_parallel_world_size)
    get_data_parallel_group = staticmethod(ps.get_data_parallel_group)
    get_pipeline_model_parallel_rank = staticmethod(ps.get_pipeline_model_parallel_rank)
    get_pipeline_model_parallel_world_size = staticmethod(ps.get_pipeline_model_parallel_world_size)
    get_pipeline_model_parallel_group = staticmethod(ps.get_pipeline_model_parallel_group)


def layout_summary() -> str:
    """One line describing this rank's place in the parallel layout."""
    return (f"world={dist.get_world_size()} tp={ps.get_tensor_model_parallel_world_size()} "
            f"pp={ps.get_pipeline_model_parallel_world_size()} "
            f"dp={ps.get_data_parallel_world_size()} | rank {dist.get_rank()}: "
            f"tp_rank={ps.get_tensor_model_parallel_rank()} "
            f"pp_rank={ps.get_pipeline_model_parallel_rank()} "
            f"dp_rank={ps.get_data_parallel_rank()}")
