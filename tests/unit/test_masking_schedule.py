"""Masking schedules: ERNIE 1.0 stages (token -> phrase -> entity by step ranges) and ERNIE 2.0
continual mixtures (tasks join, earlier ones stay), validation of bad schedules, and the wiring in
BertSamples (the step of sample i is i // global_batch_size; samples stay pure functions of
(seed, index))."""

import numpy as np
import pytest

from plmscale.config import DataConfig, ExperimentConfig, ObjectiveConfig
from plmscale.data import Corpus
from plmscale.families.bert.samples import BertSamples
from plmscale.objectives import STRATEGIES, ObjectiveSchedule, ScheduleError
from plmscale.objectives.schedule import global_batch_size, masking_schedule


def test_stages_pick_the_strategy_of_each_step_range():
    schedule = ObjectiveSchedule.parse("token:0,phrase:1000,entity:2000", names=STRATEGIES)
    rng = np.random.default_rng(0)
    for step, expected in [(0, "token"), (999, "token"), (1000, "phrase"), (1999, "phrase"),
                           (2000, "entity"), (10 ** 9, "entity")]:
        assert schedule.weights(step) == {expected: 1.0}
        assert schedule.pick(step, rng) == expected
    assert schedule.names == ("token", "phrase", "entity")
    # A stage may come back later.
    again = ObjectiveSchedule.parse("token:0,span:10,token:20")
    assert [again.pick(s, rng) for s in (0, 15, 25)] == ["token", "span", "token"]


def test_continual_tasks_join_and_stay_with_their_weights():
    schedule = ObjectiveSchedule.parse("token:0,phrase:100:2,entity:200", mode="continual",
                                       names=STRATEGIES)
    assert schedule.weights(0) == {"token": 1.0}
    assert schedule.weights(99) == {"token": 1.0}
    assert schedule.weights(100) == pytest.approx({"token": 1 / 3, "phrase": 2 / 3})
    assert schedule.weights(5000) == pytest.approx({"token": 0.25, "phrase": 0.5, "entity": 0.25})
    rng = np.random.default_rng(1)
    draws = [schedule.pick(300, rng) for _ in range(8000)]
    for name, weight in schedule.weights(300).items():
        assert draws.count(name) / len(draws) == pytest.approx(weight, abs=0.02)
    # Two tasks may join at the same step.
    both = ObjectiveSchedule.parse("token:0,whole_word:0", mode="continual")
    assert both.weights(0) == {"token": 0.5, "whole_word": 0.5}


@pytest.mark.parametrize("text, mode, message", [
    ("", "stages", "empty schedule"),
    ("token", "stages", "bad schedule entry 'token'"),
    ("token:0:1:2", "stages", "bad schedule entry"),
    (":0", "stages", "bad schedule entry"),
    ("token:zero", "stages", "bad start step 'zero'"),
    ("token:5,phrase:10", "stages", "must start at step 0"),
    ("token:0,phrase:1000,entity:1000", "stages", "strictly increase"),
    ("token:0,phrase:1000,entity:500", "stages", "strictly increase"),
    ("token:0,phrase:-5", "stages", "must be >= 0"),
    ("token:0,bogus:10", "stages", "unknown objective 'bogus'"),
    ("token:0,phrase:10:2", "stages", "weights only apply to mode 'continual'"),
    ("token:0,phrase:10:0", "continual", "must be a positive number"),
    ("token:0,phrase:10:x", "continual", "bad weight 'x'"),
    ("token:0,phrase:10:nan", "continual", "must be a positive number"),
    ("token:0,phrase:10,token:20", "continual", "more than once"),
    ("token:0,phrase:20,entity:10", "continual", "non-decreasing"),
    ("token:0", "sometimes", "schedule mode 'sometimes'"),
])
def test_bad_schedules_are_rejected_with_a_clear_error(text, mode, message):
    with pytest.raises(ScheduleError, match=message):
        ObjectiveSchedule.parse(text, mode=mode, names=STRATEGIES)


def test_config_schedule_is_validated_with_the_field_name():
    assert masking_schedule(ObjectiveConfig()) is None
    with pytest.raises(ScheduleError, match=r"objective.masking_schedule='token:0,wwm:5'.*unknown"):
        masking_schedule(ObjectiveConfig(masking_schedule="token:0,wwm:5"))
    with pytest.raises(ScheduleError, match="schedule mode"):
        masking_schedule(ObjectiveConfig(masking_schedule="token:0", masking_schedule_mode="x"))
    with pytest.raises(ValueError, match="objective.masking_schedule"):
        BertSamples(None, None, DataConfig(), ObjectiveConfig(masking_schedule="token:0,span:1"),
                    seed=0)


def test_global_batch_size():
    cfg = ExperimentConfig()
    cfg.train.micro_batch_size, cfg.train.gradient_accumulation_steps = 4, 3
    assert global_batch_size(cfg, data_parallel_size=2) == 24
    assert global_batch_size(cfg) == 12  # no process groups: one data-parallel rank


@pytest.fixture(scope="module")
def corpus(demo_shards):
    return Corpus(demo_shards)


def _samples(corpus, seed=5, global_batch=None, **objective):
    return BertSamples(corpus, corpus.tokens, DataConfig(seq_length=64),
                       ObjectiveConfig(**objective), seed=seed, global_batch_size=global_batch)


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_samples_follow_the_stage_of_their_step(corpus):
    batch = 8  # step of sample i = i // 8
    staged = _samples(corpus, global_batch=batch,
                      masking_schedule="token:0,whole_word:2,span:4,phrase:6")
    fixed = {name: _samples(corpus, masking=name) for name in ("token", "whole_word", "span",
                                                                "phrase")}
    expected = ["token"] * 16 + ["whole_word"] * 16 + ["span"] * 16 + ["phrase"] * 24
    for index, name in enumerate(expected):
        assert staged.masking_strategy(index) == name
        # The staged sample is exactly the fixed-strategy sample of the same (seed, index).
        assert _same(staged(index), fixed[name](index)), (index, name)
    # Different strategies give different masks for the same index (the schedule matters).
    differs = sum(not _same(fixed["token"](i), fixed["span"](i)) for i in range(20))
    assert differs >= 18


def test_samples_draw_from_the_continual_mixture(corpus):
    batch = 16
    mixed = _samples(corpus, global_batch=batch, masking_schedule="token:0,span:10:3",
                     masking_schedule_mode="continual")
    early = {mixed.masking_strategy(i) for i in range(10 * batch)}
    assert early == {"token"}
    late = [mixed.masking_strategy(i) for i in range(10 * batch, 60 * batch)]
    assert late.count("span") / len(late) == pytest.approx(0.75, abs=0.04)
    fixed = {name: _samples(corpus, masking=name) for name in ("token", "span")}
    for index in range(10 * batch, 10 * batch + 30):
        assert _same(mixed(index), fixed[mixed.masking_strategy(index)](index))
    # Pure function of (seed, index): rebuilding gives the same draws and samples.
    again = _samples(corpus, global_batch=batch, masking_schedule="token:0,span:10:3",
                     masking_schedule_mode="continual")
    assert [again.masking_strategy(i) for i in range(10 * batch, 60 * batch)] == late
    assert _same(again(200), mixed(200))
