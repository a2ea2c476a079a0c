"""Pretraining objectives: the corruption applied to a sample (in data workers) and its statistics."""

from plmscale.objectives.masking import IGNORE_INDEX, mask_tokens

__all__ = ["IGNORE_INDEX", "mask_tokens"]
