"""``data.paths`` read as Megatron reads ``--data-path``: weight, directory, weight, directory, ...
(one directory alone has weight 1), with ``data.task_prefixes`` alongside."""

from __future__ import annotations

from dataclasses import dataclass

from plmscale.config.loading import ConfigError
from plmscale.config.schema import DataConfig


@dataclass(frozen=True)
class Source:
    """One source of a data mixture: normalised weight, shard directory, task prefix text."""

    weight: float
    path: str
    prefix: str = ""


def _weight(text, position: int, paths) -> float:
    try:
        weight = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"data.paths={paths!r}: item {position + 1} ({text!r}) should be a weight "
                          f"before a directory, as in \"0.3 shards_a 0.7 shards_b\"") from None
    if not weight > 0 or weight != weight or weight == float("inf"):
        raise ConfigError(f"data.paths={paths!r}: weight {text!r} must be a finite number > 0")
    return weight


def mixture_sources(data: DataConfig) -> list[Source]:
    """The training sources with normalised weights: ``data.paths`` parsed, or ``data.path`` alone."""
    paths = data.paths
    if paths is None:
        if data.task_prefixes is not None:
            raise ConfigError("data.task_prefixes is set but data.paths is not; give the mixture as "
                              "data.paths=\"W1 DIR1 W2 DIR2\" with one prefix per source")
        return [Source(1.0, data.path)]
    items = paths.split() if isinstance(paths, str) else list(paths)
    if len(items) == 1:
        items = [1.0] + items
    if not items or len(items) % 2:
        raise ConfigError(f"data.paths={paths!r} must alternate weight and directory, e.g. "
                          f"\"0.3 shards_a 0.7 shards_b\" (or one directory alone)")
    weights = [_weight(items[i], i, paths) for i in range(0, len(items), 2)]
    directories = [str(d) for d in items[1::2]]
    prefixes = data.task_prefixes if data.task_prefixes is not None else [""] * len(directories)
    if len(prefixes) != len(directories) or not all(isinstance(p, str) for p in prefixes):
        raise ConfigError(f"data.task_prefixes={data.task_prefixes!r} must hold one text per source "
                          f"of data.paths ({len(directories)}; \"\" for a source without prefix)")
    total = sum(weights)
    return [Source(w / total, d, p) for w, d, p in zip(weights, directories, prefixes)]
