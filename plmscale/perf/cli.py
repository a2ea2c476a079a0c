"""Rank the parallel layouts of a model on a GPU cluster by predicted throughput and memory.

    python launch/plan.py --config configs/gpt2.yaml --gpu H100 --nodes 4 [--global-batch 512]
    plmscale-plan --config ... (the same, installed as a console script)

Every TP x PP x DP x ZeRO layout (with and without full activation recomputation) that the engine
accepts is predicted from the configuration alone (plmscale.perf): memory of the most-loaded rank
against the device's memory, step time, tokens/s and MFU. Nothing is built or launched.
"""

from __future__ import annotations

import argparse
import sys

from plmscale.config import ConfigError, load_config
from plmscale.perf.gpus import GIB, GPUS, gpu_profile
from plmscale.perf.plan import plan
from plmscale.perf.step_time import DEFAULT_EFFICIENCY


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="plmscale-plan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment YAML (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE", help="override a config field (repeatable)")
    parser.add_argument("--gpu", default="H100", help=f"GPU profile: {', '.join(GPUS)}")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--global-batch", type=int, default=None,
                        help="sequences per optimiser step (default: the config's micro-batch x "
                             "accumulation steps x the number of GPUs)")
    parser.add_argument("--efficiency", type=float, default=DEFAULT_EFFICIENCY,
                        help="fraction of peak FLOP/s the matmuls reach")
    parser.add_argument("--top", type=int, default=15, help="rows to print")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        gpu = gpu_profile(args.gpu)
    except (ConfigError, ValueError, FileNotFoundError) as error:
        print(f"plmscale plan: {error}", file=sys.stderr)
        return 2
    if args.nodes < 1:
        print("plmscale plan: --nodes must be >= 1", file=sys.stderr)
        return 2
    gpus = args.nodes * gpu.gpus_per_node
    t = cfg.train
    batch = args.global_batch or t.micro_batch_size * t.gradient_accumulation_steps * gpus
    plans = plan(cfg, gpu, args.nodes, batch, args.efficiency)
    print(f"{cfg.model.family} ({cfg.model.preset or 'custom'}), {gpus} x {gpu.name} "
          f"({gpu.memory_bytes / GIB:.0f} GiB), global batch {batch} x {cfg.data.seq_length} tokens, "
          f"{t.precision}, matmul efficiency {args.efficiency}")
    if not plans:
        print(f"no layout splits a global batch of {batch} into micro-batches of "
              f"{t.micro_batch_size}; set --global-batch to a multiple of {t.micro_batch_size}")
        return 1
    print(f"{'TP':>3} {'PP':>3} {'DP':>4} {'ZeRO':>4} {'recomp':>6} {'accum':>5} "
          f"{'mem/rank GiB':>12} {'fits':>4} {'step s':>8} {'tokens/s':>11} {'MFU':>5}")
    for p in plans[:args.top]:
        lay, est = p.layout, p.estimate
        print(f"{lay.tp:>3} {lay.pp:>3} {lay.dp:>4} {lay.zero_stage:>4} "
              f"{'yes' if p.recompute else 'no':>6} {p.accumulation:>5} "
              f"{p.memory.total / GIB:>12.1f} {'yes' if p.fits else 'NO':>4} "
              f"{est.step_seconds:>8.3f} {est.tokens_per_second:>11,.0f} {est.mfu:>5.1%}")
    if not plans[0].fits:
        print(f"warning: no layout fits {gpu.name}'s {gpu.memory_bytes / GIB:.0f} GiB; add nodes, "
              f"lower train.micro_batch_size or use a smaller model", file=sys.stderr)
    return 0
