"""Evaluation on held-out data: the family's losses and accuracies, plus perplexity where the loss is
a token-level language-model loss, averaged over a fixed set of validation batches.

The batches are the validation stream's first ``train.eval_iters`` global batches (each the size
of a training step's), built once and reused, so every evaluation of a run sees the same data. The
model runs in eval mode (no dropout) without gradients, after ``seed_all(train.seed)`` (so draws such
as ELECTRA's generator samples repeat); the training loop reseeds every step from (seed, step), so
evaluating changes neither the training stream nor its random numbers.
"""

from __future__ import annotations

import math

import torch
from megatron.core import parallel_state as ps

from plmscale.config import ExperimentConfig
from plmscale.data import micro_batch_loader
from plmscale.parallel import device, seed_all
from plmscale.training.metrics import average_over_data_parallel

PERPLEXITY_OF = {"mlm_loss": "mlm_perplexity", "lm_loss": "lm_perplexity"}
"""Losses that are mean token-level cross-entropies, whose exp is a perplexity."""


def with_perplexity(metrics: dict[str, float]) -> dict[str, float]:
    """``metrics`` plus ``exp(loss)`` for each language-model loss in ``PERPLEXITY_OF``."""
    extra = {PERPLEXITY_OF[k]: math.exp(min(v, 700.0)) for k, v in metrics.items()
             if k in PERPLEXITY_OF}
    return {**metrics, **extra}


def validation_batches(cfg: ExperimentConfig, sample) -> list[dict[str, torch.Tensor]]:
    """This DP rank's micro-batches of the validation set, ``eval_iters`` steps' worth, in order."""
    t = cfg.train
    loader = micro_batch_loader(sample, t.micro_batch_size, ps.get_data_parallel_rank(),
                                ps.get_data_parallel_world_size(), 0, num_workers=0)
    return [next(loader) for _ in range(t.eval_iters * t.gradient_accumulation_steps)]


def mean_metrics(per_batch: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over micro-batches."""
    return {k: sum(m[k] for m in per_batch) / len(per_batch) for k in per_batch[0]}


def evaluate(engine, cfg: ExperimentConfig, batches: list[dict[str, torch.Tensor]]
             ) -> dict[str, float]:
    """Mean metrics over ``batches`` (this rank's) and over data-parallel ranks, with perplexity.
    Collective over the data-parallel group (and the pipeline when there is one)."""
    from plmscale.training.engine import uses_pipeline
    seed_all(cfg.train.seed)
    if uses_pipeline(cfg):
        from plmscale.training.loop import PipelineBatches, pipeline_metrics
        accumulation = cfg.train.gradient_accumulation_steps
        per_step = []
        for first in range(0, len(batches), accumulation):
            chunk = PipelineBatches(iter(batches[first:first + accumulation]),
                                    engine.module.split_batch)
            per_step.append(pipeline_metrics(engine, chunk, engine.eval_batch)[0])
        engine.module.train()
        means = mean_metrics(per_step)
    else:
        engine.eval()
        per_batch = []
        with torch.no_grad():
            for batch in batches:
                out = engine({k: v.to(device(), non_blocking=True) for k, v in batch.items()})
                per_batch.append({k: float(v) for k, v in out.items()})
        engine.train()
        means = mean_metrics(per_batch)
    return with_perplexity(average_over_data_parallel(means))


class Evaluator:
    """Evaluates every ``train.eval_interval`` steps on the run's fixed validation batches."""

    def __init__(self, engine, cfg: ExperimentConfig, valid):
        self.engine, self.cfg = engine, cfg
        self.enabled = bool(cfg.train.eval_interval) and valid is not None
        self.batches = validation_batches(cfg, valid.sample) if self.enabled else []

    def due(self, step: int) -> bool:
        return self.enabled and step % self.cfg.train.eval_interval == 0

    def run(self) -> dict[str, float]:
        return evaluate(self.engine, self.cfg, self.batches)


def evaluate_checkpoint(directory: str, data_path: str, overrides=(),
                        fallback: bool = True) -> tuple[dict[str, float], ExperimentConfig]:
    """Collective (the process group is initialised). The newest verified checkpoint of
    ``directory`` evaluated on the shard directory ``data_path``: its run's config (layout
    included) with ``data.valid_path=data_path`` and then ``overrides`` (e.g. train.eval_iters=50);
    returns (metrics, the config used)."""
    from plmscale.config import apply_overrides, validate_config
    from plmscale.data.sources import family_sampler, open_corpus
    from plmscale.parallel import init_model_parallel
    from plmscale.training import checkpoint
    from plmscale.training.engine import build_engine
    import torch.distributed as dist
    tag = checkpoint.candidate_tags(directory)[0]
    cfg = checkpoint.saved_config(directory, tag)
    cfg = apply_overrides(cfg, [("data", "valid_path", str(data_path)),
                                ("data", "valid_fraction", 0.0), ("data", "paths", None),
                                ("data", "task_prefixes", None), ("train", "load_dir", None),
                                ("train", "auto_resume", False), *overrides])
    validate_config(cfg, dist.get_world_size())
    init_model_parallel(cfg)
    engine, _ = build_engine(cfg)
    checkpoint.load(engine, directory, fallback, module_only=True)
    sample = family_sampler(cfg, open_corpus(cfg, data_path), "")
    return evaluate(engine, cfg, validation_batches(cfg, sample)), cfg
