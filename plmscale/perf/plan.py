"""Layout planner: every valid TP x PP x DP x ZeRO (x recomputation) layout of a model on N nodes of
a GPU profile, with its predicted memory per rank and step time, ranked by predicted throughput
among those that fit."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from plmscale.config.schema import ExperimentConfig
from plmscale.perf.gpus import GPUProfile
from plmscale.perf.memory import Layout, RankMemory, most_loaded
from plmscale.perf.shape import describe
from plmscale.perf.step_time import DEFAULT_EFFICIENCY, StepEstimate, estimate_step

MEMORY_HEADROOM = 0.9
"""Fraction of device memory a plan may fill (the rest: CUDA context, allocator fragmentation,
communication buffers)."""


@dataclass
class Plan:
    layout: Layout
    recompute: bool
    accumulation: int
    memory: RankMemory
    estimate: StepEstimate
    fits: bool


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def with_layout(cfg: ExperimentConfig, layout: Layout, accumulation: int) -> ExperimentConfig:
    """``cfg`` with the layout's parallel sizes and the accumulation steps that keep its batch."""
    parallel = dataclasses.replace(cfg.parallel, tensor_model_parallel_size=layout.tp,
                                   pipeline_model_parallel_size=layout.pp,
                                   zero_stage=layout.zero_stage)
    train = dataclasses.replace(cfg.train, gradient_accumulation_steps=accumulation)
    return dataclasses.replace(cfg, parallel=parallel, train=train)


def candidate_layouts(cfg: ExperimentConfig, gpus: int, gpus_per_node: int) -> list[Layout]:
    """Layouts the engine accepts: TP inside a node dividing heads and FFN, PP dividing nothing in
    particular but at most one stage per layer, ZeRO 2-3 only without a pipeline."""
    m = cfg.model
    layers = describe(cfg).layer_count()
    out = []
    for tp in _divisors(min(gpus, gpus_per_node)):
        if m.num_attention_heads % tp or m.ffn_hidden_size % tp or gpus % tp:
            continue
        for pp in _divisors(gpus // tp):
            if pp > layers:
                continue
            for zero in (0, 1) if pp > 1 else (0, 1, 2, 3):
                out.append(Layout(tp, pp, gpus // (tp * pp), 1, zero))
    return out


def plan(cfg: ExperimentConfig, gpu: GPUProfile, nodes: int, global_batch: int,
         efficiency: float = DEFAULT_EFFICIENCY) -> list[Plan]:
    """Every candidate layout (with and without full recomputation) that splits ``global_batch``
    sequences into whole micro-batches of ``train.micro_batch_size``; fitting plans first, by
    predicted tokens/s."""
    gpus = nodes * gpu.gpus_per_node
    micro = cfg.train.micro_batch_size
    plans = []
    for layout in candidate_layouts(cfg, gpus, gpu.gpus_per_node):
        if global_batch % (micro * layout.dp):
            continue
        accumulation = global_batch // (micro * layout.dp)
        laid = with_layout(cfg, layout, accumulation)
        for recompute in (False, True):
            memory = most_loaded(laid, layout, recompute)
            estimate = estimate_step(laid, layout, gpu, efficiency, recompute)
            plans.append(Plan(layout, recompute, accumulation, memory, estimate,
                              memory.total <= MEMORY_HEADROOM * gpu.memory_bytes))
    plans.sort(key=lambda p: (not p.fits, -p.estimate.tokens_per_second, p.memory.total))
    return plans
