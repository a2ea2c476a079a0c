"""Pretraining objectives: the corruption applied to a sample (in data workers) and its statistics."""

from plmscale.objectives.masking import IGNORE_INDEX, corrupt, mask_tokens, select_tokens
from plmscale.objectives.masking_strategies import STRATEGIES, Selection, select_positions
from plmscale.objectives.schedule import ObjectiveSchedule, ScheduleError

__all__ = ["IGNORE_INDEX", "ObjectiveSchedule", "STRATEGIES", "ScheduleError", "Selection",
           "corrupt", "mask_tokens", "select_positions", "select_tokens"]
