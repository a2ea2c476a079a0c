"""plmscale's training entry point.

    deepspeed --num_gpus N launch/train.py --config configs/bert_demo.yaml [--set a.b=value ...]
    torchrun --nproc_per_node N launch/train.py --config ...          (same thing, torch's launcher)
    python launch/train.py --config ... --dry-run                     (resolved config, size, layout)

NCCL + CUDA when a GPU is present, gloo + CPU otherwise.
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
from plmscale.families import build_model, count_parameters  # noqa: E402
from plmscale.parallel import init_distributed, init_model_parallel, layout_summary, seed_all  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment YAML (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE", help="override a config field (repeatable)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved config, parameter count and layout; do not train")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None,
                        help="set by the deepspeed launcher")
    return parser.parse_args(argv)


def dry_run(cfg) -> None:
    """Report what a run would be, building the model only on the meta device (no memory)."""
    with torch.device("meta"):
        model = build_model(cfg)
    count = count_parameters(model, cfg.model)
    if dist.get_rank() == 0:
        print(json.dumps(config_to_dict(cfg), indent=2))
        print(f"parameters: {count:,} ({cfg.model.family}, unpadded, whole model)")
        print(f"layout: {layout_summary()}")
        print(f"deepspeed: {json.dumps(deepspeed_config(cfg, dist.get_world_size()))}")
    dist.barrier()


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        cfg = load_config(args.config, args.overrides)
        validate_config(cfg, world)  # before any process group or model exists
    except (ConfigError, ValueError, FileNotFoundError) as error:
        print(f"plmscale: configuration error: {error}", file=sys.stderr)
        return 2
    init_distributed()
    init_model_parallel(cfg)
    seed_all(cfg.train.seed)
    if args.dry_run:
        dry_run(cfg)
        return 0
    from plmscale.training.loop import train
    if dist.get_rank() == 0:
        print(f"plmscale: {cfg.model.family} ({cfg.model.preset or 'custom'}), {layout_summary()}, "
              f"ZeRO-{cfg.parallel.zero_stage}, data-parallel size "
              f"{data_parallel_size(cfg, world)}", flush=True)
    history = train(cfg)
    if dist.get_rank() == 0 and history:
        first, last = history[0], history[-1]
        changes = ", ".join(f"{k} {first[k]:.3f} -> {last[k]:.3f}" for k in first
                            if k.endswith(("_loss", "_accuracy")) or k == "loss")
        print(f"plmscale: done. {changes}"
              + (f"; checkpoint in {cfg.train.save_dir}" if cfg.train.save_dir else ""), flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
