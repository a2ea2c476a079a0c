"""Performance model: FLOPs, memory per rank, communication and step time of a layout, from the
configuration alone (no model is built), and MFU of a measured step.

    step_flops(cfg, dp)            model FLOPs of an optimiser step (every family)
    memory_per_rank(cfg, layout)   parameters, gradients, optimizer, activations per pipeline stage
    communication(cfg, layout)     bytes each rank sends per step, by kind
    estimate_step(cfg, layout, gpu)  predicted step time and throughput on a named GPU profile
"""

from plmscale.perf.flops import (StepFlops, forward_flops, mfu, ptdp_flops, ptdp_parameters,
                                 step_flops, tflops_per_device)
from plmscale.perf.gpus import GPUS, GPUProfile, detect_gpu, gpu_profile
from plmscale.perf.memory import (Layout, ModelStates, RankMemory, activation_bytes,
                                  memory_per_rank, model_states, most_loaded, stage_tensors)
from plmscale.models.common.megatron import padded_vocab_size as padded_vocab
from plmscale.perf.shape import ModelShape, describe

__all__ = [
    "GPUS", "GPUProfile", "Layout", "ModelShape", "ModelStates", "RankMemory", "StepFlops",
    "activation_bytes", "describe", "detect_gpu", "forward_flops", "gpu_profile", "memory_per_rank",
    "mfu", "model_states", "most_loaded", "padded_vocab", "ptdp_flops", "ptdp_parameters",
    "stage_tensors", "step_flops", "tflops_per_device",
]
