"""Compatibility shim between DeepSpeed's native MoE and gloo (CPU) process groups.

``deepspeed.moe.mappings._gather_tokens`` all-gathers the expert slots of the tensor-parallel ranks
into a flat buffer but passes the N-D input tensor: NCCL only compares element counts, gloo compares
shapes and fails with ``ProcessGroupGloo::allgather: invalid tensor size``. The shim below is the same
gather with the input flattened first; it replaces the module-level function (which
``_GatherTokens`` and ``_DropTokens`` look up at call time) in memory, never on disk.
"""

from __future__ import annotations

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
