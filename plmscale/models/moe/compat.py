"""Compatibility shims between DeepSpeed's native MoE and plmscale's layouts, each wrapping or
replacing named upstream functions in memory (never on disk).

gloo: ``deepspeed.moe.mappings._gather_tokens`` all-gathers the expert slots of the tensor-parallel
ranks into a flat buffer but passes the N-D input tensor: NCCL only compares element counts, gloo
compares shapes and fails with ``ProcessGroupGloo::allgather: invalid tensor size``.
``gather_tokens_flat`` is the same gather with the input flattened first; it replaces the
module-level function (which ``_GatherTokens`` and ``_DropTokens`` look up at call time).

Tensor parallelism: ``DeepSpeedZeroOptimizer.get_grad_norm_direct`` (and its CPU-offload twin
``complete_grad_norm_calculation_for_cpu_offload``) count a parameter that is not tensor-parallel on
TP rank 0 only, since the other TP ranks hold copies of the same values. That holds for dense
parameters, which ZeRO partitions over the data-parallel group (no TP peers in it). An expert group
is partitioned over its expert-data-parallel group, which does hold the TP peers (DeepSpeed's
``_create_expert_and_data_parallel``): each TP rank owns a different part of the expert gradients,
and the parts of TP ranks > 0 were left out of the norm that ZeRO reports and clips with (measured:
TP2 x PP2 GPT with 4 experts reported 1.596 where one rank has 1.631).
``count_expert_norms_on_every_tp_rank`` makes every rank count its own part of an expert group;
the sums over the data-parallel and model-parallel groups that follow then see each element once.
"""

from __future__ import annotations

import functools

import torch


def gather_tokens_flat(input_: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``deepspeed.moe.mappings._gather_tokens`` (gather every TP rank's ``input_`` and concatenate
    along ``dim``) with a flat input to ``all_gather_into_tensor``, so gloo accepts it."""
    import deepspeed
    from deepspeed.utils.bwc import (bwc_tensor_model_parallel_group,
                                     bwc_tensor_model_parallel_world_size)
    mpu = deepspeed.utils.groups.mpu
    input_ = input_.contiguous()
    world_size = bwc_tensor_model_parallel_world_size(mpu)
    if world_size == 1:
        return input_
    buffer = torch.empty(world_size * input_.numel(), dtype=input_.dtype, device=input_.device)
    deepspeed.comm.all_gather_into_tensor(buffer, input_.view(-1),
                                          group=bwc_tensor_model_parallel_group(mpu))
    return torch.cat(buffer.view(world_size, *input_.shape).unbind(0), dim=dim).contiguous()


def install_gloo_gather_shim() -> None:
    """Point DeepSpeed's MoE token gather at ``gather_tokens_flat`` (idempotent). Harmless on NCCL:
    the flattened call is the same collective."""
    from deepspeed.moe import mappings
    mappings._gather_tokens = gather_tokens_flat


def count_expert_norms_on_every_tp_rank(optimizer) -> None:
    """Make a ZeRO-1/2 optimizer's gradient norm count every TP rank's partition of the expert
    parameter groups (see the module docstring); dense groups keep DeepSpeed's TP-rank-0 rule.
    Wraps ``get_grad_norm_direct`` and ``complete_grad_norm_calculation_for_cpu_offload`` on this
    optimizer instance: for an expert group they run as on TP rank 0."""
    from deepspeed.moe.utils import is_moe_param

    def counting_every_rank(norm, params_at: int):
        @functools.wraps(norm)
        def wrapper(*args, **kwargs):
            params = kwargs["params"] if "params" in kwargs else args[params_at]
            if not any(is_moe_param(p) for p in params):
                return norm(*args, **kwargs)
            rank, optimizer.model_parallel_rank = optimizer.model_parallel_rank, 0
            try:
                return norm(*args, **kwargs)
            finally:
                optimizer.model_parallel_rank = rank
        return wrapper

    optimizer.get_grad_norm_direct = counting_every_rank(optimizer.get_grad_norm_direct, 1)
    optimizer.complete_grad_norm_calculation_for_cpu_offload = counting_every_rank(
        optimizer.complete_grad_norm_calculation_for_cpu_offload, 0)
