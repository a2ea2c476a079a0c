"""Micro-batches for one data-parallel rank, addressed by a global micro-batch counter.

Micro-batch ``k`` of the whole job is the global samples ``[k*mb*dp, (k+1)*mb*dp)``; rank ``r`` takes
its ``r``-th slice. The global batch is thus the same for any DP size, and resuming only needs ``k``.
"""

from __future__ import annotations

import itertools
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class _MicroBatches(Dataset):
    def __init__(self, make_sample: Callable[[int], dict], micro_batch_size: int, dp_rank: int,
                 dp_size: int):
        self.make_sample, self.mb, self.rank, self.size = make_sample, micro_batch_size, dp_rank, dp_size

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        first = (k * self.size + self.rank) * self.mb
        samples = [self.make_sample(first + j) for j in range(self.mb)]
        return {key: torch.from_numpy(np.stack([s[key] for s in samples])) for key in samples[0]}


class _CountFrom(Sampler):
    def __init__(self, start: int):
        self.start = start

    def __iter__(self):
        return itertools.count(self.start)


def micro_batch_loader(make_sample: Callable[[int], dict], micro_batch_size: int, dp_rank: int,
                       dp_size: int, start_micro_batch: int = 0, num_workers: int = 0):
    """Endless iterator of this rank's micro-batches from global micro-batch ``start_micro_batch``."""
    dataset = _MicroBatches(make_sample, micro_batch_size, dp_rank, dp_size)
    return iter(DataLoader(dataset, batch_size=None, sampler=_CountFrom(start_micro_batch),
                           num_workers=num_workers, prefetch_factor=4 if num_workers else None,
                           persistent_workers=False))
