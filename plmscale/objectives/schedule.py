"""Objective schedules over training steps: ERNIE 1.0's staged masking (token -> phrase -> entity;
the phrase and entity stages mask the corpus's phrase and entity spans respectively) and ERNIE 2.0's
continual multi-task learning (tasks join one after another and earlier tasks stay in the mixture).

Text form (``objective.masking_schedule``): comma-separated ``name:start_step`` entries, optionally
``name:start_step:weight``, e.g. ``"token:0,phrase:1000,entity:2000"``.

* ``mode="stages"`` (ERNIE 1.0): the entry with the largest ``start_step <= step`` is the only one
  in use; steps must start at 0 and strictly increase; weights are not allowed.
* ``mode="continual"`` (ERNIE 2.0): every entry with ``start_step <= step`` is in the mixture with
  its weight (default 1), normalised over the active entries; steps start at 0 and do not decrease,
  names do not repeat.

Samples stay pure functions of (seed, index): the step of sample ``index`` is
``index // global_batch_size`` (samples are consumed in global order, ``plmscale.data.loader``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

MODES = ("stages", "continual")


class ScheduleError(ValueError):
    """A schedule string that cannot be used; the message says what is wrong and the valid form."""


@dataclass(frozen=True)
class ScheduleEntry:
    name: str
    start_step: int
    weight: float = 1.0


class ObjectiveSchedule:
    """Which objectives (masking strategies, or any named tasks) are active at a step, and with what
    weight."""

    def __init__(self, entries: Iterable[ScheduleEntry], mode: str = "stages",
                 names: Optional[Iterable[str]] = None):
        self.entries = tuple(entries)
        self.mode = mode
        self._validate(None if names is None else tuple(names))
        self._starts = np.array([e.start_step for e in self.entries], dtype=np.int64)

    @classmethod
    def parse(cls, text: str, mode: str = "stages",
              names: Optional[Iterable[str]] = None) -> "ObjectiveSchedule":
        """Parse ``"name:step[:weight],..."``; ``names`` restricts the allowed names."""
        form = "expected comma-separated name:start_step[:weight] entries, e.g. 'token:0,phrase:1000'"
        if not isinstance(text, str) or not text.strip():
            raise ScheduleError(f"empty schedule; {form}")
        entries = []
        for item in text.split(","):
            fields = [f.strip() for f in item.strip().split(":")]
            if len(fields) not in (2, 3) or not fields[0]:
                raise ScheduleError(f"bad schedule entry {item.strip()!r}; {form}")
            try:
                step = int(fields[1])
            except ValueError:
                raise ScheduleError(f"bad start step {fields[1]!r} in {item.strip()!r}; {form}") from None
            weight = 1.0
            if len(fields) == 3:
                if mode != "continual":
                    raise ScheduleError(f"weight in {item.strip()!r}: weights only apply to "
                                        f"mode 'continual' (stages use one objective at a time)")
                try:
                    weight = float(fields[2])
                except ValueError:
                    raise ScheduleError(f"bad weight {fields[2]!r} in {item.strip()!r}; {form}") from None
            entries.append(ScheduleEntry(fields[0], step, weight))
        return cls(entries, mode, names)

    def _validate(self, names: Optional[tuple[str, ...]]) -> None:
        if self.mode not in MODES:
            raise ScheduleError(f"schedule mode {self.mode!r}; valid: {', '.join(MODES)}")
        if not self.entries:
            raise ScheduleError("empty schedule")
        for e in self.entries:
            if names is not None and e.name not in names:
                raise ScheduleError(f"unknown objective {e.name!r} in schedule; valid: "
                                    f"{', '.join(names)}")
            if e.start_step < 0:
                raise ScheduleError(f"{e.name}:{e.start_step}: start steps must be >= 0")
            if not (np.isfinite(e.weight) and e.weight > 0):
                raise ScheduleError(f"{e.name}: weight {e.weight} must be a positive number")
        if self.entries[0].start_step != 0:
            raise ScheduleError(f"the first entry must start at step 0 (got "
                                f"{self.entries[0].name}:{self.entries[0].start_step}): every step "
                                f"needs an objective")
        steps = [e.start_step for e in self.entries]
        if self.mode == "stages":
            if any(b <= a for a, b in zip(steps, steps[1:])):
                raise ScheduleError(f"stage start steps must strictly increase, got {steps}")
        else:
            if any(b < a for a, b in zip(steps, steps[1:])):
                raise ScheduleError(f"continual tasks must be listed in the order they join "
                                    f"(non-decreasing start steps), got {steps}")
            seen = [e.name for e in self.entries]
            duplicates = sorted({n for n in seen if seen.count(n) > 1})
            if duplicates:
                raise ScheduleError(f"continual schedule names {duplicates} more than once: a task "
                                    f"joins once and stays")

    @property
    def names(self) -> tuple[str, ...]:
        """Every objective the schedule uses, in order of first appearance."""
        return tuple(dict.fromkeys(e.name for e in self.entries))

    def weights(self, step: int) -> dict[str, float]:
        """Normalised weight of each objective at ``step`` (absent = not in use)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        active = int(np.searchsorted(self._starts, step, side="right"))
        if self.mode == "stages":
            return {self.entries[active - 1].name: 1.0}
        chosen = self.entries[:active]
        total = sum(e.weight for e in chosen)
        return {e.name: e.weight / total for e in chosen}

    def pick(self, step: int, rng: np.random.Generator) -> str:
        """The objective of one sample at ``step``: the stage's, or a draw from the mixture."""
        weights = self.weights(step)
        if len(weights) == 1:
            return next(iter(weights))
        names = list(weights)
        return names[int(rng.choice(len(names), p=np.array([weights[n] for n in names])))]


def _configured(objective, field: str, mode: str, names) -> Optional[ObjectiveSchedule]:
    """The schedule in ``objective.<field>`` (None when unset), errors naming the field."""
    text = getattr(objective, field, None)
    if text is None:
        return None
    try:
        return ObjectiveSchedule.parse(text, mode, names=names)
    except ScheduleError as exc:
        raise ScheduleError(f"objective.{field}={text!r}: {exc}") from None


def masking_schedule(objective) -> Optional[ObjectiveSchedule]:
    """The masking-strategy schedule of an ``ObjectiveConfig`` (None when ``masking_schedule`` is
    unset: ``objective.masking`` is used throughout)."""
    from plmscale.objectives.masking_strategies import STRATEGIES
    return _configured(objective, "masking_schedule",
                       getattr(objective, "masking_schedule_mode", "stages"), STRATEGIES)


def task_schedule(objective) -> Optional[ObjectiveSchedule]:
    """ERNIE 2.0's task schedule of an ``ObjectiveConfig`` (always continual: tasks join and stay;
    None when ``task_schedule`` is unset: knowledge masking alone)."""
    from plmscale.objectives.ernie_tasks import TASKS
    return _configured(objective, "task_schedule", "continual", TASKS)


def sample_step(index: int, global_batch_size: Optional[int], field: str) -> int:
    """The optimiser step that sample ``index`` belongs to (samples are consumed in global order);
    ``field`` names the schedule that needs it, for the error when the batch size is unknown."""
    if not (global_batch_size and global_batch_size > 0):
        raise ValueError(f"objective.{field} needs the global batch size to know the step of a "
                         f"sample: pass global_batch_size= (micro batch x gradient accumulation x "
                         f"data-parallel size; see plmscale.objectives.schedule.global_batch_size)")
    return index // global_batch_size


def global_batch_size(cfg, data_parallel_size: Optional[int] = None) -> int:
    """Samples per optimiser step: micro batch x gradient accumulation x data-parallel size (read
    from megatron-core's parallel state when it is initialised and no size is given)."""
    if data_parallel_size is None:
        data_parallel_size = 1
        # Not imported yet means not initialised (and importing megatron-core costs seconds).
        ps = sys.modules.get("megatron.core.parallel_state")
        if ps is not None and ps.model_parallel_is_initialized():
            data_parallel_size = ps.get_data_parallel_world_size()
    t = cfg.train
    return t.micro_batch_size * t.gradient_accumulation_steps * data_parallel_size
