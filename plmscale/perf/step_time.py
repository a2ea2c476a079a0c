"""Step-time estimate of a layout on a named accelerator profile (``plmscale.perf.gpus``).

    compute   = hardware FLOPs per rank / (peak FLOP/s x matmul efficiency)
    bubble    = (pp - 1) / micro-batches x compute          (1F1B pipeline schedule)
    comm      = bytes / bandwidth per kind; TP inside a node uses NVLink, PP and DP use the network
                once the ranks they connect span nodes (DP is overlapped with the backward when
                ``overlap_dp``)
    optimizer = model-state bytes read and written once / HBM bandwidth
Nothing else is modelled (kernel launch gaps, data loading): the estimate is a lower bound that the
measured MFU is compared against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from plmscale.config.schema import ExperimentConfig
from plmscale.perf.comm import communication
from plmscale.perf.flops import step_flops
from plmscale.perf.gpus import GPUProfile
from plmscale.perf.memory import Layout, memory_per_rank

DEFAULT_EFFICIENCY = 0.6
"""Fraction of peak that large transformer matmuls reach (cuBLAS bf16 GEMMs on A100/H100)."""


@dataclass
class StepEstimate:
    compute: float
    bubble: float
    tensor_parallel: float
    pipeline: float
    data_parallel: float
    expert_parallel: float
    optimizer: float
    step_seconds: float
    tokens_per_second: float
    mfu: float

    def as_dict(self) -> dict:
        return asdict(self)


def estimate_step(cfg: ExperimentConfig, layout: Layout, gpu: GPUProfile,
                  efficiency: float = DEFAULT_EFFICIENCY, recompute: bool = False,
                  overlap_dp: bool = False) -> StepEstimate:
    t = cfg.train
    flops = step_flops(cfg, layout.dp, recompute)
    peak = gpu.peak(t.precision)
    per_rank = flops.hardware_per_sequence * flops.sequences_per_step / layout.world
    compute = per_rank / (peak * efficiency)
    bubble = (layout.pp - 1) / t.gradient_accumulation_steps * compute
    comm = communication(cfg, layout)
    node = gpu.gpus_per_node

    def bandwidth(span: int) -> float:
        return gpu.intra_node_bandwidth if span <= node else gpu.inter_node_bandwidth

    tp = comm.tensor_parallel / bandwidth(layout.tp)
    pp = comm.pipeline / bandwidth(layout.tp * layout.pp)
    dp = comm.data_parallel / bandwidth(layout.world)
    ep = comm.expert_parallel / bandwidth(layout.ep * layout.tp)
    states = max(r.parameters + r.gradients + r.master + r.optimizer
                 for r in memory_per_rank(cfg, layout, recompute))
    optimizer = 2 * states / gpu.memory_bandwidth
    step = compute + bubble + tp + pp + ep + optimizer + (0.0 if overlap_dp else dp)
    tokens = flops.sequences_per_step * cfg.data.seq_length
    model_mfu = flops.per_step / (step * layout.world * peak)
    return StepEstimate(compute, bubble, tp, pp, dp, ep, optimizer, step, tokens / step, model_mfu)
