"""Evaluate a checkpoint on a shard directory: the family's losses, accuracies and perplexity.

    torchrun --nproc_per_node N launch/evaluate.py --checkpoint RUN/checkpoints --data SHARDS \\
        [--set train.eval_iters=50 ...] [--output metrics.json]
    python launch/evaluate.py ...                      (one process, when the run had one rank)

The newest verified checkpoint of --checkpoint is loaded with its run's config (so use the run's
tensor and pipeline sizes; the data-parallel size is free) and evaluated on the first
``train.eval_iters`` global batches of --data, as the training loop's evaluation does
(plmscale.training.evaluation). Exit codes: 0 done, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore", message=".*(Transformer Engine|Apex).*")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a run's train.save_dir")
    parser.add_argument("--data", required=True, help="shard directory (python -m data_prep encode)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE", help="override a field of the run's config")
    parser.add_argument("--output", default=None, help="also write the metrics to this JSON file")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None,
                        help="set by the deepspeed launcher")
    args = parser.parse_args(argv)

    import torch.distributed as dist
    from data_prep.shards import ShardError

    from plmscale.config import ConfigError
    from plmscale.parallel import init_distributed
    from plmscale.training.checkpoint import CheckpointError
    from plmscale.training.evaluation import evaluate_checkpoint
    init_distributed()
    try:
        metrics, cfg = evaluate_checkpoint(args.checkpoint, args.data, args.overrides)
    except (ConfigError, CheckpointError, ShardError, ValueError, FileNotFoundError,
            IndexError) as error:
        print(f"plmscale evaluate: {error}", file=sys.stderr, flush=True)
        return 2
    if dist.get_rank() == 0:
        print(json.dumps({"checkpoint": args.checkpoint, "data": args.data,
                          "eval_iters": cfg.train.eval_iters, "metrics": metrics}, indent=2),
              flush=True)
        if args.output:
            Path(args.output).write_text(json.dumps(metrics, indent=2) + "\n")
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
