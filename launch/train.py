"""plmscale's training entry point.

    deepspeed --num_gpus N launch/train.py --config configs/bert_demo.yaml [--set a.b=value ...]
    torchrun --nproc_per_node N launch/train.py --config ...          (same thing, torch's launcher)
    srun -n N python launch/train.py --config ...                     (SLURM; see launch/slurm/)
    mpirun -n N python launch/train.py --config ...                   (Open MPI)
    python launch/train.py --config ... --dry-run [--gpu H100]        (resolved config, size, layout,
                                                                       FLOPs, memory per rank)

NCCL + CUDA when a GPU is present, gloo + CPU otherwise. Exit codes: 0 done, 2 configuration
error, 75 stopped early with a checkpoint (signal, launcher gone or time limit; see
plmscale.training.preemption).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

# megatron-core warns at import that Apex/Transformer Engine are absent; that is expected here.
warnings.filterwarnings("ignore", message=".*(Transformer Engine|Apex).*")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from plmscale.config import (ConfigError, config_to_dict, data_parallel_size, deepspeed_config,  # noqa: E402
                             load_config, validate_config)
from plmscale.config.families import family_fields  # noqa: E402
from plmscale.families import build_model, count_parameters  # noqa: E402
from plmscale.parallel import init_distributed, init_model_parallel, layout_summary, seed_all  # noqa: E402
from plmscale.parallel.launch_env import LaunchEnvError, announced_world_size, discover  # noqa: E402
from plmscale.training.preemption import StopRequest  # noqa: E402
from plmscale.perf import Layout, gpu_profile, memory_per_rank, step_flops  # noqa: E402
from plmscale.perf.gpus import GIB  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment YAML (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE", help="override a config field (repeatable)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved config, parameter count, layout, FLOPs per step and "
                             "predicted memory per rank; do not train")
    parser.add_argument("--gpu", default=None,
                        help="with --dry-run: compare against this GPU profile (A100, H100, H200) "
                             "instead of the device this process has")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None,
                        help="set by the deepspeed launcher")
    return parser.parse_args(argv)


def device_memory(gpu_name: str | None) -> tuple[str, int]:
    """(what, bytes) one rank may use: the named GPU profile's memory, this process's CUDA device,
    or on CPU the machine's RAM shared by the ranks on this node."""
    if gpu_name:
        profile = gpu_profile(gpu_name)
        return profile.name, int(profile.memory_bytes)
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(), torch.cuda.get_device_properties(0).total_memory
    local = int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size()))
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"CPU RAM / {local} ranks", ram // local


def performance_report(cfg, world: int, gpu_name: str | None) -> list[str]:
    """Dry-run lines: FLOPs per step and predicted memory per rank against the device's."""
    layout = Layout.of(cfg, world)
    flops = step_flops(cfg, layout.dp)
    on_gpu = bool(gpu_name) or torch.cuda.is_available()
    ranks = memory_per_rank(cfg, layout, gpu=on_gpu)
    device, capacity = device_memory(gpu_name)
    lines = [f"FLOPs per step: {flops.per_step:.4g} ({flops.per_token:.4g} per token, "
             f"{flops.sequences_per_step} sequences of {cfg.data.seq_length})"]
    for r in ranks:
        lines.append(f"predicted memory per rank, pipeline stage {r.stage}: {r.total / GIB:.3f} GiB "
                     f"(parameters {r.parameters / GIB:.3f}, gradients {r.gradients / GIB:.3f}, "
                     f"fp32 master {r.master / GIB:.3f}, optimizer {r.optimizer / GIB:.3f}, "
                     f"activations {r.activations / GIB:.3f}) of {capacity / GIB:.1f} GiB ({device})")
    worst = max(ranks, key=lambda r: r.total)
    if worst.total > capacity:
        lines.append(f"WARNING: this layout will not fit: pipeline stage {worst.stage} needs "
                     f"{worst.total / GIB:.2f} GiB per rank but {device} has {capacity / GIB:.1f} "
                     f"GiB; raise parallel.zero_stage, tensor/pipeline parallel sizes, lower "
                     f"train.micro_batch_size, or see `python launch/plan.py`")
    return lines


def dry_run(cfg, gpu_name: str | None = None) -> None:
    """Report what a run would be, building the model only on the meta device (no memory)."""
    with torch.device("meta"):
        model = build_model(cfg)
    count = count_parameters(model, cfg.model)
    active = count_parameters(model, cfg.model, active=True)
    networks = {name: count_parameters(model, cfg.model, prefixes)
                for name, prefixes in family_fields(cfg.model.family).networks.items()}
    if dist.get_rank() == 0:
        print(json.dumps(config_to_dict(cfg), indent=2))
        print(f"parameters: {count:,} ({cfg.model.family}, unpadded, whole model)")
        if cfg.model.num_experts:
            print(f"active parameters per token: {active:,} (top-{cfg.model.moe_top_k} of "
                  f"{cfg.model.num_experts} routed experts per MoE layer)")
        for name, n in networks.items():  # as HF counts each network on its own
            print(f"parameters of the {name}: {n:,}")
        print(f"layout: {layout_summary()}")
        print(f"deepspeed: {json.dumps(deepspeed_config(cfg, dist.get_world_size()))}")
        for line in performance_report(cfg, dist.get_world_size(), gpu_name):
            print(line)
    dist.barrier()


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    from plmscale.training.checkpoint import CheckpointError
    from data_prep.shards import ShardError
    user_errors = (ConfigError, ValueError, FileNotFoundError, CheckpointError, ShardError,
                   LaunchEnvError)
    try:
        cfg = load_config(args.config, args.overrides)
        validate_config(cfg, announced_world_size())  # before any process group or model exists
        if args.gpu:
            gpu_profile(args.gpu)
        if not args.dry_run:
            from plmscale.training.preflight import check_inputs
            check_inputs(cfg)
        launch = discover()  # srun / mpirun ranks learn their rank here
        launch.export()
        stop = StopRequest(cfg.train)
    except user_errors as error:
        print(f"plmscale: configuration error: {error}", file=sys.stderr)
        return 2
    init_distributed(timeout_s=cfg.train.collective_timeout_s)
    init_model_parallel(cfg)
    seed_all(cfg.train.seed)
    if args.dry_run:
        dry_run(cfg, args.gpu)
        return 0
    from plmscale.training import liveness
    from plmscale.training.guards import TrainingStopped
    from plmscale.training.loop import train
    liveness.start(cfg.train.dead_rank_timeout_s)
    if dist.get_rank() == 0:
        print(f"plmscale: {cfg.model.family} ({cfg.model.preset or 'custom'}), {layout_summary()}, "
              f"ZeRO-{cfg.parallel.zero_stage}, data-parallel size "
              f"{data_parallel_size(cfg, launch.world_size)}", flush=True)
    try:
        with stop.watching():  # SIGTERM / SIGUSR1 from here on: checkpoint after the step, then stop
            history = train(cfg, stop=stop)
    except TrainingStopped as stopped:
        print(f"plmscale: rank {dist.get_rank()}: {stopped}", file=sys.stderr, flush=True)
        return 3
    except (ConfigError, CheckpointError, ShardError) as error:  # found once the run started
        print(f"plmscale: rank {dist.get_rank()}: {error}", file=sys.stderr, flush=True)
        return 2
    except RuntimeError as error:  # gloo/NCCL: a peer vanished mid-collective, or a timeout
        return liveness.verdict(error)
    liveness.stop()
    if dist.get_rank() == 0 and history:
        first, last = history[0], history[-1]
        changes = ", ".join(f"{k} {first[k]:.3f} -> {last[k]:.3f}" for k in first
                            if k.endswith(("_loss", "_accuracy")) or k == "loss")
        print(f"plmscale: {'stopped' if stop.reason else 'done'} at step "
              f"{len(history)} of this run. {changes}"
              + (f"; checkpoint in {cfg.train.save_dir}" if cfg.train.save_dir else ""), flush=True)
    code = stop.finish() if stop.reason else 0
    dist.destroy_process_group()
    return code


if __name__ == "__main__":
    sys.exit(main())
