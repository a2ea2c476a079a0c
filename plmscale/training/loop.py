"""The training loop: read like a single-device loop; DeepSpeed handles ZeRO, gradient accumulation,
clipping, the LR schedule and (for pipelines) the micro-batch schedule, megatron-core the
tensor-parallel communication inside the model."""

from __future__ import annotations

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps

from plmscale.config import ExperimentConfig
from plmscale.data import Corpus, micro_batch_loader
from plmscale.families import get_family
from plmscale.parallel import device, seed_all
from plmscale.perf import detect_gpu, step_flops
from plmscale.training import checkpoint
from plmscale.training.engine import build_engine, uses_pipeline
from plmscale.training.metrics import (MetricsLogger, average_over_data_parallel, max_over_ranks,
                                       peak_memory_bytes)


def peak_flops_per_device(cfg: ExperimentConfig) -> float | None:
    """``train.peak_tflops`` when set, else the detected GPU profile's peak for the precision."""
    if cfg.train.peak_tflops:
        return cfg.train.peak_tflops * 1e12
    gpu = detect_gpu()
    return gpu.peak(cfg.train.precision) if gpu is not None else None


def build_batches(cfg: ExperimentConfig, start_micro_batch: int):
    """This DP rank's endless micro-batch iterator, starting at a global micro-batch position."""
    corpus = Corpus(cfg.data.path, verify=cfg.data.verify_checksums)
    if corpus.tokens.vocab_size > cfg.model.vocab_size:
        raise ValueError(f"tokenizer of {cfg.data.path} has {corpus.tokens.vocab_size} pieces but "
                         f"model.vocab_size={cfg.model.vocab_size}; set model.vocab_size >= "
                         f"{corpus.tokens.vocab_size}")
    samples = get_family(cfg.model.family).samples(corpus, cfg)
    return micro_batch_loader(samples, cfg.train.micro_batch_size, ps.get_data_parallel_rank(),
                              ps.get_data_parallel_world_size(), start_micro_batch,
                              cfg.data.num_workers)


def count_tokens(batch: dict) -> int:
    """Non-padding input tokens of a micro-batch."""
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else batch["input_ids"].numel()


class PipelineBatches:
    """The micro-batches in the pipeline engine's (inputs, labels) form; counts the tokens of those
    it hands out (the engine pulls them itself)."""

    def __init__(self, batches, split_batch):
        self.batches, self.split_batch, self.tokens = batches, split_batch, 0

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.batches)
        self.tokens += count_tokens(batch)
        return self.split_batch(batch)


def engine_step(engine, batches, accumulation: int) -> tuple[dict[str, float], int]:
    """One optimiser step of the ordinary engine: ``accumulation`` forward/backward passes.
    Returns the metrics averaged over micro-batches and the number of tokens processed."""
    sums: dict[str, float] = {}
    tokens = 0
    for _ in range(accumulation):
        batch = {k: v.to(device(), non_blocking=True) for k, v in next(batches).items()}
        out = engine(batch)
        engine.backward(out["loss"])
        engine.step()  # DeepSpeed steps the optimizer only at the accumulation boundary
        tokens += count_tokens(batch)
        for name, value in out.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach())
    return {k: v / accumulation for k, v in sums.items()}, tokens


def pipeline_step(engine, batches: PipelineBatches) -> tuple[dict[str, float], int]:
    """One optimiser step of the pipeline engine, whose schedule pulls the micro-batches itself
    (only the first and last stages read them). The last stage computed the metrics and counted
    the tokens; every stage returns its means over micro-batches and the token count, as
    ``engine_step`` does."""
    pipe = engine.module
    pipe.metrics.clear()
    batches.tokens = 0
    engine.train_batch(batches)
    sums: dict[str, float] = {}
    for metrics in pipe.metrics:
        for name, value in metrics.items():
            sums[name] = sums.get(name, 0.0) + value
    result = [{k: v / len(pipe.metrics) for k, v in sums.items()}, batches.tokens]
    dist.broadcast_object_list(result, src=ps.get_pipeline_model_parallel_last_rank(),
                               group=ps.get_pipeline_model_parallel_group())
    return result[0], result[1]


def train(cfg: ExperimentConfig, model: torch.nn.Module | None = None) -> list[dict[str, float]]:
    """Run ``cfg.train.train_steps`` optimiser steps (resuming from ``train.load_dir`` if set);
    returns each step's metrics averaged over data-parallel ranks."""
    t = cfg.train
    engine, scheduler = build_engine(cfg, model)
    step, micro_batches = 0, 0
    if t.load_dir:
        step, micro_batches = checkpoint.load(engine, t.load_dir)
    batches = build_batches(cfg, micro_batches)
    pipelined = uses_pipeline(cfg)
    if pipelined:
        batches = PipelineBatches(batches, engine.module.split_batch)
    flops = step_flops(cfg, ps.get_data_parallel_world_size()).per_step
    logger = MetricsLogger(t.train_steps, step, t.tensorboard_dir, t.progress_bar, t.log_interval,
                           flops, peak_flops_per_device(cfg))
    history = []
    while step < t.train_steps:
        # Dropout streams derive from (seed, step): a resumed run draws exactly the same masks.
        seed_all(t.seed + step)
        if pipelined:
            metrics, tokens = pipeline_step(engine, batches)
        else:
            metrics, tokens = engine_step(engine, batches, t.gradient_accumulation_steps)
        step += 1
        micro_batches += t.gradient_accumulation_steps
        metrics = average_over_data_parallel(metrics)
        metrics["lr"] = scheduler.get_last_lr()[0]
        grad_norm = engine.get_global_grad_norm()
        if grad_norm is not None:
            metrics["grad_norm"] = float(grad_norm)
        tokens *= ps.get_data_parallel_world_size()
        history.append({**logger.step(step, metrics, tokens, max_over_ranks(peak_memory_bytes())),
                        "tokens": tokens})
        if t.save_dir and t.save_interval and step % t.save_interval == 0:
            checkpoint.save(engine, t.save_dir, step, micro_batches, cfg)
    if t.save_dir and (not t.save_interval or step % t.save_interval):
        checkpoint.save(engine, t.save_dir, step, micro_batches, cfg)
    logger.close()
    dist.barrier()
    return history
