"""Offline preprocessing for plmscale: tokenizer training and sharded Arrow encoding.

This package runs on CPU-only preprocessing nodes and must never import torch.
Entry points:

* ``python -m data_prep train-tokenizer ...`` / ``python -m data_prep encode ...``
  (also installed as the ``plmscale-data`` console script, see :mod:`data_prep.cli`);
* :class:`data_prep.shards.ShardedCorpus`, the memory-mapped reader used by training.
"""

# 2: the gazetteer ``spans`` column became ``phrase_spans`` and ``entity_spans``.
SCHEMA_VERSION = 2

__all__ = ["SCHEMA_VERSION"]
