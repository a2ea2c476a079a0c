"""The training loop: read like a single-device loop; DeepSpeed handles ZeRO, gradient accumulation,
clipping, the LR schedule and (for pipelines) the micro-batch schedule, megatron-core the
tensor-parallel communication inside the model."""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps

from plmscale.config import ExperimentConfig
from plmscale.data import micro_batch_loader
from plmscale.data.sources import run_samples
from plmscale.models.moe.balance import update_expert_biases
from plmscale.parallel import device, seed_all
from plmscale.perf import detect_gpu, step_flops
from plmscale.training import checkpoint
from plmscale.training.engine import build_engine, uses_pipeline
from plmscale.training.evaluation import Evaluator
from plmscale.training.guards import StepGuard, TrainingStopped
from plmscale.training.metrics import (MetricsLogger, SourceCounts, average_over_data_parallel,
                                       max_over_ranks, peak_memory_bytes)
from plmscale.training.preemption import StopRequest, resume_directory


def peak_flops_per_device(cfg: ExperimentConfig) -> float | None:
    """``train.peak_tflops`` when set, else the detected GPU profile's peak for the precision."""
    if cfg.train.peak_tflops:
        return cfg.train.peak_tflops * 1e12
    gpu = detect_gpu()
    return gpu.peak(cfg.train.precision) if gpu is not None else None


def build_batches(cfg: ExperimentConfig, start_micro_batch: int, sample=None):
    """This DP rank's endless micro-batch iterator, starting at a global micro-batch position, over
    ``sample`` (default: the run's training samples, ``plmscale.data.sources.run_samples``)."""
    if sample is None:
        sample = run_samples(cfg)[0].sample
    return micro_batch_loader(sample, cfg.train.micro_batch_size, ps.get_data_parallel_rank(),
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


def engine_step(engine, batches, accumulation: int, guard: StepGuard | None = None
                ) -> tuple[dict[str, float], int]:
    """One optimiser step of the ordinary engine: ``accumulation`` forward/backward passes.
    Returns the metrics averaged over micro-batches and the number of tokens processed. The step
    guard of ``train``, when given, sees every loss (benchmarks time the bare step without one)."""
    sums: dict[str, float] = {}
    tokens = 0
    for _ in range(accumulation):
        batch = {k: v.to(device(), non_blocking=True) for k, v in next(batches).items()}
        out = engine(batch)
        if guard is not None:
            guard.record_loss(out["loss"])
        engine.backward(out["loss"])
        engine.step()  # DeepSpeed steps the optimizer only at the accumulation boundary
        tokens += count_tokens(batch)
        for name, value in out.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach())
    return {k: v / accumulation for k, v in sums.items()}, tokens


def pipeline_metrics(engine, batches: PipelineBatches, run) -> tuple[dict[str, float], int]:
    """``run(batches)`` (the engine's ``train_batch`` or ``eval_batch``), whose schedule pulls the
    micro-batches itself (only the first and last stages read them). The last stage computed the
    metrics and counted the tokens; every stage returns its means over micro-batches and the token
    count, as ``engine_step`` does."""
    pipe = engine.module
    pipe.metrics.clear()
    batches.tokens = 0
    run(batches)
    sums: dict[str, float] = {}
    for metrics in pipe.metrics:
        for name, value in metrics.items():
            sums[name] = sums.get(name, 0.0) + value
    result = [{k: v / len(pipe.metrics) for k, v in sums.items()}, batches.tokens]
    dist.broadcast_object_list(result, src=ps.get_pipeline_model_parallel_last_rank(),
                               group=ps.get_pipeline_model_parallel_group())
    return result[0], result[1]


def pipeline_step(engine, batches: PipelineBatches) -> tuple[dict[str, float], int]:
    """One optimiser step of the pipeline engine (see ``pipeline_metrics``)."""
    return pipeline_metrics(engine, batches, engine.train_batch)


def train(cfg: ExperimentConfig, model: torch.nn.Module | None = None,
          on_step=None, stop: StopRequest | None = None) -> list[dict[str, float]]:
    """Run ``cfg.train.train_steps`` applied optimiser steps (resuming as ``train.auto_resume`` /
    ``train.load_dir`` say); returns each step's metrics averaged over data-parallel ranks (skipped
    steps included, with ``skipped=1``). ``on_step(engine, step, metrics)``, if given, runs after
    every step. Stops early, after a checkpoint, when ``stop`` says so (its ``reason`` is then set).
    With ``train.eval_interval``, evaluates every that many steps and at the end: the step's entry
    then also holds ``valid_<metric>`` (see ``plmscale.training.evaluation``).
    Raises ``TrainingStopped`` after ``train.max_consecutive_skips`` skipped steps in a row, with a
    checkpoint of the last good state when ``train.save_dir`` is set."""
    t = cfg.train
    stop = stop if stop is not None else StopRequest(t)
    engine, _ = build_engine(cfg, model)
    step, micro_batches, extra = 0, 0, {}
    resume = resume_directory(t)
    if resume:
        step, micro_batches, extra = checkpoint.load(engine, resume, t.resume_fallback, cfg)
    elif t.init_from and t.init_optimizer:
        checkpoint.load_optimizer(engine, t.init_from, cfg)
    tokens_seen = int(extra.get("tokens_seen", 0))
    guard = StepGuard(engine, t, cfg.parallel.zero_stage, extra.get("guard"))
    samples, valid = run_samples(cfg)
    sources = SourceCounts(samples, extra.get("source_samples"), cfg)
    batches = build_batches(cfg, micro_batches, samples.sample)
    evaluator = Evaluator(engine, cfg, valid)
    pipelined = uses_pipeline(cfg)
    if pipelined:
        batches = PipelineBatches(batches, engine.module.split_batch)
    flops = step_flops(cfg, ps.get_data_parallel_world_size()).per_step
    logger = MetricsLogger(t.train_steps, step, t.tensorboard_dir, t.progress_bar, t.log_interval,
                           flops, peak_flops_per_device(cfg))
    history = []

    def save():
        checkpoint.save(engine, t.save_dir, step, micro_batches, cfg,
                        {"guard": guard.state(), "tokens_seen": tokens_seen,
                         "source_samples": sources.state()})

    while step < t.train_steps:
        # Dropout streams derive from (seed, step): a resumed run draws exactly the same masks.
        seed_all(t.seed + step)
        lr = engine.get_lr()[0]  # what this step applies (the scheduler moves on after it)
        if pipelined:
            metrics, tokens = pipeline_step(engine, batches)
        else:
            metrics, tokens = engine_step(engine, batches, t.gradient_accumulation_steps, guard)
        counts = sources.read(micro_batches, t.gradient_accumulation_steps)
        micro_batches += t.gradient_accumulation_steps  # a skipped step's data is not re-read
        metrics = average_over_data_parallel(metrics)
        if guard.skipped:
            history.append(dict(metrics, skipped=1.0))
            report_skip(step + 1, guard, t.max_consecutive_skips)
            if on_step is not None:
                on_step(engine, step, history[-1])
            if guard.consecutive >= t.max_consecutive_skips:
                if t.save_dir and checkpoint.latest_checkpoint(t.save_dir) != f"step{step}":
                    save()
                raise TrainingStopped(stop_message(guard, step, t.save_dir))
            continue
        step += 1
        update_expert_biases(engine.module)  # auxiliary-loss-free balancing (no-op without it)
        metrics["lr"] = lr
        metrics.update(counts)
        grad_norm = engine.get_global_grad_norm()
        if grad_norm is not None:
            metrics["grad_norm"] = float(grad_norm)
        tokens *= ps.get_data_parallel_world_size()
        tokens_seen += tokens
        metrics["tokens_seen"] = tokens_seen  # continues across resumes, as the step does
        history.append({**logger.step(step, metrics, tokens, max_over_ranks(peak_memory_bytes())),
                        "tokens": tokens})
        if evaluator.due(step):
            history[-1].update(logger.valid(step, evaluator.run()))
        if t.save_dir and t.save_interval and step % t.save_interval == 0:
            save()
        if on_step is not None:
            on_step(engine, step, history[-1])
        if stop.check():  # every rank agrees to stop after this step; the save below runs
            break
    if evaluator.enabled and history and step == t.train_steps and not evaluator.due(step):
        history[-1].update(logger.valid(step, evaluator.run()))  # a finished run ends evaluated
    if t.save_dir and (not t.save_interval or step % t.save_interval):
        save()
    logger.close()
    dist.barrier()
    return history


def report_skip(step: int, guard: StepGuard, limit: int) -> None:
    if dist.get_rank() == 0:
        print(f"plmscale: step {step} skipped ({guard.reason}); weights and optimizer state kept; "
              f"{guard.consecutive} in a row (stop at {limit}), {guard.total_skipped} in total",
              file=sys.stderr, flush=True)


def stop_message(guard: StepGuard, step: int, save_dir: str | None) -> str:
    where = (f"a checkpoint of the last good state (step {step}) is in {save_dir}"
             if save_dir else "no checkpoint was written (train.save_dir is unset)")
    return (f"stopped after {guard.consecutive} skipped steps in a row (last: {guard.reason}); "
            f"{where}. Lower train.lr, check the data near this position, or raise "
            f"train.max_consecutive_skips / train.spike_std_factor")
