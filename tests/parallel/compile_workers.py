"""Rank function of the ``train.compile`` layout check (module-level so spawned ranks import it)."""

from __future__ import annotations

from layout_workers import COMMON, REPO

from plmscale.config import load_config
from plmscale.parallel import init_distributed, init_model_parallel, seed_all


def train_layouts(shards: str, config: str, layouts: dict[str, list[str]]) -> dict[str, tuple]:
    """Train ``configs/<config>`` (the layout matrix's tiny, dropout-free settings) under each layout
    (name -> overrides) in turn; returns each one's (per-step reported metrics, graphs Dynamo
    compiled on this rank meanwhile)."""
    import torch
    from plmscale.training.loop import train
    init_distributed()
    results = {}
    for name, overrides in layouts.items():
        cfg = load_config(REPO / "configs" / config, COMMON + [f"data.path={shards}"] + overrides)
        init_model_parallel(cfg)
        seed_all(cfg.train.seed)
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        history = train(cfg)
        results[name] = history, torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs
    return results
