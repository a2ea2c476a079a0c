"""Shard reading, sample construction per objective, and DP-sharded micro-batch loading."""

from plmscale.data.corpus import Corpus
from plmscale.data.loader import micro_batch_loader
from plmscale.data.tokenizer import SpecialTokens

__all__ = ["Corpus", "SpecialTokens", "micro_batch_loader"]
