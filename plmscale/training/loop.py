"""The training loop: read like a single-device loop; DeepSpeed handles ZeRO, gradient accumulation,
clipping, the LR schedule and (for pipelines) the micro-batch schedule, megatron-core the
tensor-parallel communication inside the model."""

from __future__ import annotations

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps

from plmscale.config import ExperimentConfig
from plmscale.data import Corpus, micro_batch_loader
from plmscale.models import get_family
from plmscale.parallel import device, seed_all
from plmscale.perf import detect_gpu, step_flops
from plmscale.training import checkpoint
from plmscale.training.engine import build_engine, uses_pipeline
from plmscale.training.metrics import (MetricsLogger, average_over_data_parallel, max_over_ranks,
                                       peak_memory_bytes)
from plmscale.training.preemption import StopRequest, resume_directory


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


def _count_tokens(batch: dict) -> int:
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else batch["input_ids"].numel()


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
        tokens += _count_tokens(batch)
        for name, value in out.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach())
    return {k: v / accumulation for k, v in sums.items()}, tokens


def pipeline_step(engine, batches, cfg: ExperimentConfig) -> tuple[dict[str, float], int]:
    """One optimiser step of the pipeline engine, whose schedule pulls the micro-batches itself
    (only the first and last stages read them). Returns the mean loss and the tokens processed."""
    t = cfg.train
    loss = engine.train_batch(batches)
    return {"loss": float(loss)}, t.gradient_accumulation_steps * t.micro_batch_size * cfg.data.seq_length


def train(cfg: ExperimentConfig, model: torch.nn.Module | None = None,
          stop: StopRequest | None = None) -> list[dict[str, float]]:
    """Run ``cfg.train.train_steps`` optimiser steps (resuming as ``train.auto_resume`` /
    ``train.load_dir`` say); returns each step's metrics averaged over data-parallel ranks.
    Stops early, after a checkpoint, when ``stop`` says so (its ``reason`` is then set)."""
    t = cfg.train
    stop = stop if stop is not None else StopRequest(t)
    engine, scheduler = build_engine(cfg, model)
    step, micro_batches, tokens_seen = 0, 0, 0
    resume = resume_directory(t)
    if resume:
        client = checkpoint.load_client_state(engine, resume)
        step, micro_batches = int(client["step"]), int(client["micro_batches"])
        tokens_seen = int(client.get("tokens_seen", 0))
    batches = build_batches(cfg, micro_batches)
    pipelined = uses_pipeline(cfg)
    if pipelined:
        batches = (engine.module.split_batch(b) for b in batches)
    flops = step_flops(cfg, ps.get_data_parallel_world_size()).per_step
    logger = MetricsLogger(t.train_steps, step, t.tensorboard_dir, t.progress_bar, t.log_interval,
                           flops, peak_flops_per_device(cfg))
    history = []
    while step < t.train_steps:
        # Dropout streams derive from (seed, step): a resumed run draws exactly the same masks.
        seed_all(t.seed + step)
        if pipelined:
            metrics, tokens = pipeline_step(engine, batches, cfg)
        else:
            metrics, tokens = engine_step(engine, batches, t.gradient_accumulation_steps)
        step += 1
        micro_batches += t.gradient_accumulation_steps
        metrics = average_over_data_parallel(metrics)
        metrics["lr"] = scheduler.get_last_lr()[0]
        grad_norm = engine.get_global_grad_norm()
        if grad_norm is not None:
            metrics["grad_norm"] = float(grad_norm)
        tokens_seen += tokens * ps.get_data_parallel_world_size()
        metrics["tokens_seen"] = tokens_seen  # continues across resumes, as the step does
        history.append(logger.step(step, metrics, tokens * ps.get_data_parallel_world_size(),
                                   max_over_ranks(peak_memory_bytes())))
        if t.save_dir and t.save_interval and step % t.save_interval == 0:
            checkpoint.save(engine, t.save_dir, step, micro_batches, cfg, tokens_seen)
        if stop.check():  # every rank agrees to stop after this step; the save below runs
            break
    if t.save_dir and (not t.save_interval or step % t.save_interval):
        checkpoint.save(engine, t.save_dir, step, micro_batches, cfg, tokens_seen)
    logger.close()
    dist.barrier()
    return history
