"""Step metrics: averaged over data-parallel ranks, shown on a progress bar and written to TensorBoard,
with throughput as tokens/s, achieved model TFLOP/s per device, MFU against the device's peak, and
the largest memory of any rank."""

from __future__ import annotations

import resource
import time

import numpy as np
import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps


def average_over_data_parallel(values: dict[str, float]) -> dict[str, float]:
    """Mean of each metric over the data-parallel group (every rank gets the same numbers)."""
    if not values:
        return {}
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    group = ps.get_data_parallel_group()
    dist.all_reduce(tensor, group=group)
    tensor /= dist.get_world_size(group)
    return dict(zip(keys, tensor.tolist()))


def peak_memory_bytes() -> int:
    """This rank's peak memory so far: CUDA's max allocated bytes on a GPU, the process's peak
    resident set size on CPU."""
    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def max_over_ranks(value: float) -> float:
    """The largest ``value`` of any rank (collective)."""
    tensor = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


class MetricsLogger:
    """tqdm progress bar on the first rank + TensorBoard scalars (loss per objective, lr, grad norm,
    tokens/s, TFLOP/s per device, MFU, memory per rank). Other ranks log nothing, so output is
    readable on many ranks.

    ``flops_per_step``: model FLOPs of one optimiser step over all ranks (``plmscale.perf``);
    ``peak_flops``: one device's peak FLOP/s (None: no MFU, e.g. on CPU without a configured peak)."""

    def __init__(self, total_steps: int, start_step: int, tensorboard_dir: str | None,
                 progress_bar: bool, log_interval: int, flops_per_step: float | None = None,
                 peak_flops: float | None = None):
        self.enabled = dist.get_rank() == 0
        self.devices = dist.get_world_size()
        self.flops_per_step, self.peak_flops = flops_per_step, peak_flops
        self.log_interval = max(log_interval, 1)
        self.bar = self.writer = None
        if self.enabled and progress_bar:
            from tqdm import tqdm
            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step",
                            dynamic_ncols=True)
        if self.enabled and tensorboard_dir:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(tensorboard_dir)
        self._last = time.perf_counter()
        self._tokens = 0

    def step(self, step: int, metrics: dict[str, float], tokens: int,
             memory_bytes: float | None = None) -> dict[str, float]:
        """Record step ``step`` (1-based) that processed ``tokens`` tokens over all ranks;
        ``memory_bytes``: the largest rank's peak memory."""
        self._tokens += tokens
        if not self.enabled:
            return metrics
        now = time.perf_counter()
        seconds = max(now - self._last, 1e-9)
        metrics = dict(metrics, tokens_per_s=self._tokens / seconds)
        if self.flops_per_step:
            achieved = self.flops_per_step / (seconds * self.devices)
            metrics["tflops_per_device"] = achieved / 1e12
            if self.peak_flops:
                metrics["mfu"] = achieved / self.peak_flops
        if memory_bytes is not None:
            metrics["memory_gib_per_rank"] = memory_bytes / 2**30
        self._tokens, self._last = 0, now
        if self.writer is not None:
            for name, value in metrics.items():
                self.writer.add_scalar(f"train/{name}", value, step)
        if self.bar is not None:
            self.bar.update(1)
        if step % self.log_interval == 0 or step == 1:
            shown = {k: f"{v:.4g}" for k, v in metrics.items()
                     if k in ("loss", "lr", "tokens_per_s", "tflops_per_device", "mfu",
                              "memory_gib_per_rank", "moe_dropped_fraction",
                              "moe_load_max_over_mean")
                     or k.endswith(("_loss", "_accuracy")) or k.startswith("samples_")}
            self._print(f"step {step}: ", shown)
        return metrics

    def valid(self, step: int, metrics: dict[str, float]) -> dict[str, float]:
        """Record an evaluation after step ``step``: TensorBoard ``valid/<metric>`` and a progress
        line; returns the metrics named ``valid_<metric>``."""
        if self.writer is not None:
            for name, value in metrics.items():
                self.writer.add_scalar(f"valid/{name}", value, step)
        if self.enabled:
            self._print(f"step {step} valid: ", {k: f"{v:.4g}" for k, v in metrics.items()})
        return {f"valid_{k}": v for k, v in metrics.items()}

    def _print(self, head: str, shown: dict[str, str]) -> None:
        line = head + " ".join(f"{k}={v}" for k, v in shown.items())
        if self.bar is not None:
            self.bar.set_postfix(shown, refresh=False)
            self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


class SourceCounts:
    """Per-source sample counts of a data mixture, continued across resumes: each step adds the
    sources of its global samples (computed from the sample indices, so no communication)."""

    def __init__(self, samples, state: dict | None, cfg):
        self.mixture, self.names = samples.mixture, samples.names
        self.per_micro_batch = cfg.train.micro_batch_size * ps.get_data_parallel_world_size()
        self.totals = {n: int((state or {}).get(n, 0)) for n in self.names}
        if self.mixture is not None and dist.get_rank() == 0:
            weights = np.diff(self.mixture.cumulative, prepend=0.0)
            print("plmscale: data mixture: " + ", ".join(
                f"{n} {w:.3f}" for n, w in zip(self.names, weights)), flush=True)

    def read(self, first_micro_batch: int, micro_batches: int) -> dict[str, float]:
        """Add the samples of global micro-batches [first, first + n); the totals as metrics
        ``samples_<source>`` (none without a mixture)."""
        if self.mixture is None:
            return {}
        start = first_micro_batch * self.per_micro_batch
        counts = self.mixture.counts(start, start + micro_batches * self.per_micro_batch)
        for name, count in zip(self.names, counts):
            self.totals[name] += int(count)
        return {f"samples_{n}": float(v) for n, v in self.totals.items()}

    def state(self) -> dict[str, int]:
        return dict(self.totals)
