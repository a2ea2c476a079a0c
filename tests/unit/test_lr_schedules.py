"""Each LR schedule against its closed form (written out here, independently of
plmscale.training.schedules) at sampled steps, and its continuation across a save/load of the
scheduler into a fresh optimizer (the DeepSpeed resume path is checked in
tests/parallel/test_run_features.py)."""

import math

import pytest
import torch

from plmscale.config import ConfigError, TrainConfig, load_config, validate_config
from plmscale.training.schedules import SCHEDULES, Schedule

LR, FLOOR, WARMUP, TOTAL = 1e-3, 1e-5, 20, 200


def expected(name: str, step: int) -> float:
    """The documented formulas (steps are 1-based)."""
    if name == "inverse_sqrt":  # T5: lr * sqrt(w / max(step, w)), floored
        return max(FLOOR, LR * math.sqrt(WARMUP / max(step, WARMUP)))
    if step < WARMUP:
        return FLOOR + (LR - FLOOR) * step / WARMUP
    step = min(step, TOTAL)
    if name == "constant":
        return LR
    if name == "linear":
        return FLOOR + (LR - FLOOR) * (TOTAL - step) / (TOTAL - WARMUP)
    if name == "cosine":
        return FLOOR + (LR - FLOOR) * 0.5 * (1 + math.cos(math.pi * (step - WARMUP) / (TOTAL - WARMUP)))
    decay = 0.25 * TOTAL  # wsd with wsd_decay_fraction=0.25: flat until step 150, then linear
    return LR if step <= TOTAL - decay else FLOOR + (LR - FLOOR) * (TOTAL - step) / decay


def train_config(name: str) -> TrainConfig:
    return TrainConfig(lr=LR, min_lr=FLOOR, warmup_steps=WARMUP, train_steps=TOTAL,
                       lr_schedule=name, wsd_decay_fraction=0.25)


def applied_rates(name: str, steps: int, resume_at: int | None = None) -> list[float]:
    """The rate each optimiser step ran with, stepping the scheduler as DeepSpeed does; with
    ``resume_at``, the scheduler's state goes through state_dict into a fresh optimizer there."""
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([param], lr=123.0)  # the schedule must override this
    schedule = Schedule(optimizer, train_config(name))
    rates = []
    for step in range(1, steps + 1):
        if step == resume_at:
            saved = schedule.state_dict()
            optimizer = torch.optim.AdamW([param], lr=123.0)
            schedule = Schedule(optimizer, train_config(name))
            schedule.load_state_dict(saved)
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return rates


@pytest.mark.parametrize("name", SCHEDULES)
def test_curve_equals_formula_and_continues_across_resume(name):
    rates = applied_rates(name, TOTAL + 5)
    sampled = [1, 2, WARMUP - 1, WARMUP, WARMUP + 1, 77, 149, 150, 151, TOTAL - 1, TOTAL,
               TOTAL + 5]
    for step in sampled:
        assert rates[step - 1] == pytest.approx(expected(name, step), rel=1e-12, abs=1e-15), step
    assert applied_rates(name, TOTAL + 5, resume_at=113) == rates


def test_schedules_differ_where_they_should():
    """The sampled steps tell the schedules apart (a schedule silently falling back to linear fails)."""
    at = {name: [expected(name, s) for s in (10, 77, 160)] for name in SCHEDULES}
    assert len({tuple(v) for v in at.values()}) == len(SCHEDULES)


@pytest.mark.parametrize("override, field", [("train.lr_schedule=cosin", "train.lr_schedule"),
                                              ("train.wsd_decay_fraction=0", "wsd_decay_fraction")])
def test_bad_schedule_settings_are_refused(override, field):
    with pytest.raises(ConfigError, match=field):
        validate_config(load_config(None, [override]), 1)
