"""Non-finite and spike guard around DeepSpeed's optimiser step, in every ZeRO stage and with or
without a pipeline.

At the accumulation boundary, before the optimiser runs, each rank contributes its step loss and a
non-finite flag (its loss, and under ZeRO-0 its local gradients) to ONE all-reduce over the world,
so every rank takes the same decision. A skipped step goes through DeepSpeed's own discard path
(the ZeRO optimisers' overflow branch, which frees the reduced gradients; under ZeRO-0 the optimiser
step is left out and the engine zeroes the gradients), with the LR scheduler held and the engine's
step counters put back: weights, Adam moments and step counts stay bit-identical. A step DeepSpeed
itself found overflowing (ZeRO-1-3: non-finite gradient norm with a finite loss) counts as skipped
the same way. After ``train.max_consecutive_skips`` skips in a row the loop stops the run.

Spike rules (off by default): a step whose loss (``train.spike_std_factor``) or global gradient norm
(``train.grad_norm_spike_std_factor``) exceeds the rolling mean + k x std of the last
``train.spike_window`` applied steps is skipped the same way. DeepSpeed computes the gradient norm
only inside the optimiser step (ZeRO-1-3) or not at all (ZeRO-0), after the point where a step can
still be left out, so the guard computes it itself, before the step, with DeepSpeed's own norm
functions over the gradients as they are then (reduced over data parallelism, each element counted
once across TP and PP): ``global_grad_norm``.

Why not let DeepSpeed decide alone: under ZeRO-0 a NaN loss reaches the weights, and under ZeRO-1/2
its skipped steps still advance ``global_steps`` (measured with deepspeed 0.19.8, fp32).
"""

from __future__ import annotations

import math
from collections import deque
from contextlib import ExitStack, contextmanager

import torch
import torch.distributed as dist

from plmscale.parallel import device


class TrainingStopped(RuntimeError):
    """The run stopped itself (too many skipped steps); the message says why and what to do."""


@contextmanager
def _replaced(obj, name: str, value):
    """``obj.name = value`` for the duration of the block (an instance attribute)."""
    had = name in vars(obj)
    old = vars(obj).get(name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if had:
            setattr(obj, name, old)
        else:
            delattr(obj, name)


def _infinite_norm(*args, **kwargs):
    return torch.tensor(float("inf"), device=device())


class StepGuard:
    """Wraps ``engine._take_model_step`` (called by DeepSpeed only at the accumulation boundary, by
    the ordinary and the pipeline engine alike). The loop reports losses with ``record_loss``
    (ordinary engine) and reads ``skipped`` / ``reason`` after each step."""

    def __init__(self, engine, train_cfg, zero_stage: int, state: dict | None = None):
        t = train_cfg
        self.engine, self.zero_stage = engine, zero_stage
        self.check_nonfinite, self.factor = t.skip_nonfinite, t.spike_std_factor
        self.norm_factor = t.grad_norm_spike_std_factor
        self.recent = deque(maxlen=t.spike_window)
        self.recent_norms = deque(maxlen=t.spike_window)
        state = state or {}
        self.recent.extend(state.get("recent", []))
        self.recent_norms.extend(state.get("recent_norms", []))
        self.grad_norm: float | None = None
        """The global gradient norm of the last step (computed only with the gradient-norm rule)."""
        self.total_skipped = int(state.get("total_skipped", 0))
        self.consecutive = int(state.get("consecutive", 0))
        self.skipped, self.reason = False, None
        self._loss_sum, self._loss_count = 0.0, 0
        self._original = engine._take_model_step
        engine._take_model_step = self._guarded_step

    def state(self) -> dict:
        """JSON state saved in checkpoints, so a resumed run applies the same spike rule."""
        return {"recent": list(self.recent), "recent_norms": list(self.recent_norms),
                "total_skipped": self.total_skipped, "consecutive": self.consecutive}

    def record_loss(self, loss: torch.Tensor) -> None:
        """One micro-batch's loss of the current step (this rank's)."""
        self._loss_sum += float(loss.detach())
        self._loss_count += 1

    def _local_loss(self) -> tuple[float, int]:
        if self._loss_count:
            return self._loss_sum, self._loss_count
        engine = self.engine  # pipeline engine: the last stage sums its micro-batch losses
        total = getattr(engine, "total_loss", None)
        if torch.is_tensor(total) and engine.is_last_stage():
            return float(total.detach()), int(engine.micro_batches)
        return 0.0, 0

    def _local_grads_nonfinite(self) -> bool:
        """ZeRO-0 keeps whole (reduced) gradients on the parameters; ZeRO-1-3 hold them inside the
        optimiser, whose own overflow check covers them."""
        if self.zero_stage != 0:
            return False
        grads = [p.grad for p in self.engine.module.parameters() if p.grad is not None]
        return bool(grads) and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())

    def _decide(self) -> str | None:
        loss_sum, count = self._local_loss()
        local_bad = (count and not math.isfinite(loss_sum)) or self._local_grads_nonfinite()
        # NaN never reaches the sum: a rank with a bad loss only raises the flag.
        vec = torch.tensor([loss_sum if math.isfinite(loss_sum) else 0.0, float(count),
                            1.0 if local_bad else 0.0], dtype=torch.float64, device=device())
        dist.all_reduce(vec)
        if vec[2] > 0:
            return "non-finite loss or gradient" if self.check_nonfinite else None
        mean = float(vec[0] / vec[1]) if vec[1] > 0 else float("nan")
        self._last_loss = mean
        if self.factor > 0 and math.isfinite(mean):
            spike = _spike(mean, self.recent, self.factor)
            if spike:
                return f"loss spike: {mean:.4g} > {spike}"
        if self.norm_factor > 0:  # every rank gets here: the decision above is shared
            self.grad_norm = global_grad_norm(self.engine, self.zero_stage)
            spike = _spike(self.grad_norm, self.recent_norms, self.norm_factor)
            if spike:
                return f"gradient-norm spike: {self.grad_norm:.4g} > {spike}"
        return None

    def _guarded_step(self, lr_kwargs=None):
        self._last_loss, self.grad_norm = float("nan"), None
        self.reason = self._decide()
        self._loss_sum, self._loss_count = 0.0, 0
        engine = self.engine
        counters = (engine.global_steps, engine.global_samples, engine.skipped_steps)
        if self.reason is None:
            self._original(lr_kwargs)
            if getattr(engine.optimizer, "overflow", False):
                self.reason = "non-finite gradient norm (DeepSpeed's overflow check)"
        else:
            with self._discarding():
                self._original(lr_kwargs)
        self.skipped = self.reason is not None
        if self.skipped:
            engine.global_steps, engine.global_samples, engine.skipped_steps = counters
            self.total_skipped += 1
            self.consecutive += 1
        else:
            self.consecutive = 0
            if math.isfinite(self._last_loss):
                self.recent.append(self._last_loss)
            if self.grad_norm is not None and math.isfinite(self.grad_norm) and self.grad_norm >= 0:
                self.recent_norms.append(self.grad_norm)

    @contextmanager
    def _discarding(self):
        """DeepSpeed's step with the update left out: gradients freed, nothing else touched."""
        engine = self.engine
        with ExitStack() as stack:
            if engine.lr_scheduler is not None:
                stack.enter_context(_replaced(engine.lr_scheduler, "step", lambda *a, **k: None))
            optimizer = engine.optimizer
            if self.zero_stage == 0:
                stack.enter_context(_replaced(optimizer, "step", lambda *a, **k: None))
            elif hasattr(optimizer, "scaled_global_norm"):  # ZeRO-1/2: the overflow branch
                stack.enter_context(_replaced(optimizer, "scaled_global_norm", _infinite_norm))
            else:  # ZeRO-3
                stack.enter_context(_replaced(optimizer, "_get_norm_groups",
                                              lambda: [_infinite_norm()]))
            yield


def _spike(value: float, window: deque, factor: float) -> str | None:
    """Why ``value`` is a spike against a full ``window`` of earlier values (rolling mean + factor
    x std), or None. A non-finite value is left to the non-finite checks."""
    if len(window) < window.maxlen or not math.isfinite(value):
        return None
    mu = sum(window) / len(window)
    sd = (sum((x - mu) ** 2 for x in window) / len(window)) ** 0.5
    if value > mu + factor * sd:
        return (f"rolling mean {mu:.4g} + {factor:g} x std {sd:.3g} over the last {len(window)} "
                f"steps")
    return None


def global_grad_norm(engine, zero_stage: int) -> float:
    """Collective: the L2 norm of the whole model's gradient as the coming optimiser step will use
    it (reduced over data parallelism, before clipping), each element counted once over TP and PP,
    divided by the loss scale. Computed with DeepSpeed's own norm functions: ZeRO-1/2
    ``scaled_global_norm`` and ZeRO-3 ``_get_norm_groups`` (what its ``step`` calls next, over the
    reduced gradient partitions), ZeRO-0 ``get_global_norm_of_tensors`` over the parameters'
    gradients, leaving out the copies of a replicated parameter on TP ranks > 0 (as its
    ``clip_grad_norm_`` does) and pipeline-replicated ones, summed over the model-parallel group.
    DeepSpeed's norms report a non-finite norm as -1."""
    from deepspeed.runtime.utils import (combine_grad_norm_groups, get_global_norm_of_tensors,
                                         is_model_parallel_parameter)
    optimizer = engine.optimizer
    if zero_stage == 0:
        from megatron.core import parallel_state as ps
        first = ps.get_tensor_model_parallel_rank() == 0
        grads = [p.grad for p in engine.module.parameters() if p.grad is not None
                 and (first or is_model_parallel_parameter(p))
                 and not getattr(p, "ds_pipe_replicated", False)]
        norm = get_global_norm_of_tensors(grads or [torch.zeros(1, device=device())],
                                          mpu=engine.mpu)
    elif hasattr(optimizer, "scaled_global_norm"):
        norm = optimizer.scaled_global_norm()
    else:
        norm = combine_grad_norm_groups(optimizer._get_norm_groups())
    return float(norm) / float(getattr(optimizer, "loss_scale", 1.0) or 1.0)
