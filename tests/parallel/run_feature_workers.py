"""Rank function of tests/parallel/test_run_features.py: runs of the tiny BERT (DP=2, dropout on) on a
two-source mixture with a held-out split, with and without evaluation, stopped and resumed, then the
evaluation of the final checkpoint recomputed by hand. Module-level so spawned ranks import it."""

from __future__ import annotations

import numpy as np
import torch
from bert_workers import TRAIN
from closeness import closeness
from workers_common import restored_from_checkpoint

from plmscale.config import load_config
from plmscale.data import Corpus
from plmscale.data.sources import family_sampler, run_samples
from plmscale.parallel import init_distributed, init_model_parallel, seed_all

STEPS, STOP_AT, EVAL_ITERS = 6, 3, 2
SCHEDULE = ["train.lr_schedule=wsd", "train.wsd_decay_fraction=0.34", "train.warmup_steps=2",
            "train.min_lr=1e-5"]
"""WSD with 2 warmup steps, flat to step 4, linear decay over steps 5-6: the resume (after step 3)
lands in the flat part and the decay must continue from the resumed run's position."""


class StopAfter:
    """The training loop's stop request (``plmscale.training.preemption.StopRequest``'s ``check``
    and ``reason``), saying stop after ``steps`` steps: the loop then saves and returns."""

    def __init__(self, steps: int):
        self.left, self.reason = steps, None

    def check(self) -> bool:
        self.left -= 1
        if self.left <= 0:
            self.reason = "test stop"
        return self.left <= 0


def run(cfg, stop=None) -> list[dict]:
    from plmscale.training.loop import train
    init_model_parallel(cfg)
    seed_all(cfg.train.seed)
    return train(cfg, stop=stop)


def by_hand(model, sample, micro_batch: int, count: int) -> dict[str, float]:
    """Mean of each metric over ``count`` micro-batches of ``micro_batch`` consecutive samples,
    computed here on one rank: what DP ranks evaluating their slices must average to."""
    sums: dict[str, float] = {}
    with torch.no_grad():
        for j in range(count):
            rows = [sample(j * micro_batch + i) for i in range(micro_batch)]
            batch = {k: torch.from_numpy(np.stack([r[k] for r in rows])) for k in rows[0]}
            for name, value in model(batch).items():
                sums[name] = sums.get(name, 0.0) + float(value)
    return {k: v / count for k, v in sums.items()}


def mixture_eval_resume(shards: str, second: str, out: str) -> dict:
    """Histories of: B (no evaluation, straight through), A (evaluation every 3 steps, stopped after
    step 3 with a checkpoint) and R (A resumed to the end); the valid metrics of the final
    checkpoint recomputed by hand, and ``evaluate_checkpoint`` of it on ``second``."""
    import torch.distributed as dist

    from plmscale.training.evaluation import evaluate_checkpoint
    init_distributed()
    common = TRAIN + SCHEDULE + [
        f"data.paths=0.3 {shards} 0.7 {second}", "data.valid_fraction=0.34",
        f"train.train_steps={STEPS}", "train.micro_batch_size=4", "train.log_interval=1"]
    evaluated = common + ["train.eval_interval=3", f"train.eval_iters={EVAL_ITERS}",
                          f"train.save_dir={out}/ckpt", f"train.tensorboard_dir={out}/tb"]
    straight = run(load_config(None, common))
    first = run(load_config(None, evaluated), StopAfter(STOP_AT))
    resumed = run(load_config(None, evaluated + ["train.auto_resume=true"]))
    cfg = load_config(None, evaluated)
    model = restored_from_checkpoint(cfg, f"{out}/ckpt")
    dp = dist.get_world_size()
    count = EVAL_ITERS * cfg.train.gradient_accumulation_steps * dp
    seed_all(cfg.train.seed)
    held_out = by_hand(model, run_samples(cfg)[1].sample, cfg.train.micro_batch_size, count)
    on_second = by_hand(model, family_sampler(cfg, Corpus(second), ""),
                        cfg.train.micro_batch_size, count)
    evaluated_metrics, _ = evaluate_checkpoint(f"{out}/ckpt", second,
                                               [f"train.eval_iters={EVAL_ITERS}"])
    return {"pipeline_eval": pipeline_evaluation(shards), "straight": straight, "first": first, "resumed": resumed,
            "valid_at_end": closeness({k[6:]: v for k, v in resumed[-1].items()
                                       if k.startswith("valid_") and k[6:] in held_out},
                                      held_out, "valid metrics vs by hand"),
            "evaluate_checkpoint": closeness({k: evaluated_metrics[k] for k in on_second},
                                             on_second, "evaluate_checkpoint vs by hand"),
            "perplexity": (evaluated_metrics["mlm_perplexity"], evaluated_metrics["mlm_loss"]),
            "dp": dp}


def pipeline_evaluation(shards: str):
    """The pipeline engine's evaluation (``eval_batch``, PP=2 x DP=1, two micro-batches a step)
    against the ordinary engine's (DP=2) on the same 16 validation samples in the same groups of
    4, after one step at lr 0 (the weights stay the layout-independent initialisation)."""
    common = TRAIN + [f"data.path={shards}", "data.valid_fraction=0.34", "train.train_steps=1",
                      "train.eval_interval=1", f"train.eval_iters={EVAL_ITERS}", "train.lr=0",
                      "train.micro_batch_size=4"]
    valid = []
    for layout in (["parallel.pipeline_model_parallel_size=2",
                    "train.gradient_accumulation_steps=2"], []):
        last = run(load_config(None, common + layout))[-1]
        valid.append({k: v for k, v in last.items() if k.startswith("valid_")})
    assert valid[0] and valid[0].keys() == valid[1].keys(), valid
    return closeness(valid[0], valid[1], "PP=2 vs DP=2 valid metrics")
