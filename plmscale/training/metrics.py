"""Step metrics: averaged over data-parallel ranks, shown on a progress bar and written to TensorBoard."""

from __future__ import annotations

import time

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


class MetricsLogger:
    """tqdm progress bar on the first rank + TensorBoard scalars (loss per objective, lr, grad norm,
    tokens/s). Other ranks log nothing, so output is readable on many ranks."""

    def __init__(self, total_steps: int, start_step: int, tensorboard_dir: str | None,
                 progress_bar: bool, log_interval: int):
        self.enabled = dist.get_rank() == 0
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

    def step(self, step: int, metrics: dict[str, float], tokens: int) -> dict[str, float]:
        """Record step ``step`` (1-based) that processed ``tokens`` tokens over all ranks."""
        self._tokens += tokens
        if not self.enabled:
            return metrics
        now = time.perf_counter()
        metrics = dict(metrics, tokens_per_s=self._tokens / max(now - self._last, 1e-9))
        self._tokens, self._last = 0, now
        if self.writer is not None:
            for name, value in metrics.items():
                self.writer.add_scalar(f"train/{name}", value, step)
        if self.bar is not None:
            self.bar.update(1)
        if step % self.log_interval == 0 or step == 1:
            shown = {k: f"{v:.4g}" for k, v in metrics.items()
                     if k in ("loss", "lr", "tokens_per_s") or k.endswith(("_loss", "_accuracy"))}
            line = f"step {step}: " + " ".join(f"{k}={v}" for k, v in shown.items())
            if self.bar is not None:
                self.bar.set_postfix(shown, refresh=False)
                self.bar.write(line)
            else:
                print(line, flush=True)
        return metrics

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
