"""Learning-rate schedules: one formula each, ``lr_at(train, step)``, and the scheduler DeepSpeed
steps after every applied optimiser step.

``step`` is the 1-based number of the optimiser step the rate is used for. Every schedule but
``inverse_sqrt`` warms up linearly from ``train.min_lr`` to ``train.lr`` over ``train.warmup_steps``
(step ``warmup_steps`` is the first at the full rate); after that:

- ``linear``: linear decay to ``min_lr`` at ``train_steps`` (BERT's recipe; plmscale's default).
- ``cosine``: half a cosine down to the floor ``min_lr`` at ``train_steps`` (GPT-3, Chinchilla).
- ``constant``: ``lr`` to the end.
- ``inverse_sqrt``: T5's ``lr * sqrt(warmup / max(step, warmup))``: constant at ``lr`` for the
  first ``warmup_steps`` steps (T5 keeps the rate flat there; it has no linear ramp), then
  proportional to 1/sqrt(step); never below ``min_lr``.
- ``wsd``: warmup-stable-decay (MiniCPM): ``lr`` until the last ``wsd_decay_fraction`` of
  ``train_steps``, then linear decay to ``min_lr`` at ``train_steps``.

Steps past ``train_steps`` keep the final rate. The scheduler's saved state is its position only,
so a resumed run continues the curve of its own config exactly where the checkpoint left it.
"""

from __future__ import annotations

import math

import torch

from plmscale.config.schema import TrainConfig

SCHEDULES = ("linear", "cosine", "constant", "inverse_sqrt", "wsd")


def _warmup(t: TrainConfig, step: int) -> float | None:
    """The linear warmup's rate at ``step``, or None once warmup is over."""
    if step >= t.warmup_steps:
        return None
    return t.min_lr + (t.lr - t.min_lr) * step / t.warmup_steps


def _decay(t: TrainConfig, progress: float, shape: str) -> float:
    """From ``lr`` (progress 0) to ``min_lr`` (progress 1), linearly or as half a cosine."""
    progress = min(max(progress, 0.0), 1.0)
    fraction = 1.0 - progress if shape == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return t.min_lr + (t.lr - t.min_lr) * fraction


def lr_at(t: TrainConfig, step: int) -> float:
    """The learning rate of optimiser step ``step`` (1-based) under ``t.lr_schedule``."""
    name = t.lr_schedule
    if name == "inverse_sqrt":
        warmup = max(t.warmup_steps, 1)
        return max(t.min_lr, t.lr * math.sqrt(warmup / max(step, warmup)))
    warm = _warmup(t, step)
    if warm is not None:
        return warm
    if name == "constant":
        return t.lr
    if name in ("linear", "cosine"):
        span = max(t.train_steps - t.warmup_steps, 1)
        return _decay(t, (step - t.warmup_steps) / span, name)
    if name == "wsd":
        decay_steps = max(round(t.wsd_decay_fraction * t.train_steps), 1)
        start = t.train_steps - decay_steps
        return t.lr if step <= start else _decay(t, (step - start) / decay_steps, "linear")
    raise ValueError(f"train.lr_schedule={name!r}; valid values: {', '.join(SCHEDULES)}")


class Schedule(torch.optim.lr_scheduler.LRScheduler):
    """Sets every parameter group's rate to ``lr_at(train, step)`` of the step about to run.
    ``last_epoch`` counts applied optimiser steps (DeepSpeed steps the scheduler after each one and
    holds it on a skipped step)."""

    def __init__(self, optimizer: torch.optim.Optimizer, train: TrainConfig):
        self.train = train
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        return [lr_at(self.train, self.last_epoch + 1)] * len(self.optimizer.param_groups)

    def state_dict(self) -> dict:
        """The position only: the curve comes from the resumed run's config."""
        return {"last_epoch": self.last_epoch, "_step_count": self._step_count}

    def load_state_dict(self, state_dict: dict) -> None:
        self.last_epoch, self._step_count = state_dict["last_epoch"], state_dict["_step_count"]
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr
