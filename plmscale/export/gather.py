"""Reassemble full (unpartitioned, unpadded) tensors from tensor-parallel slices."""

from __future__ import annotations

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps


def full_tensors(model: torch.nn.Module, true_vocab_size: int, grads: bool = False
                 ) -> dict[str, torch.Tensor]:
    """Every parameter (or its gradient) as the whole tensor, on every TP rank of the group.

    Collective over the tensor-parallel group (and, with experts, each expert-parallel group:
    every expert appears under its global name). Vocabulary padding rows are removed.
    """
    group = ps.get_tensor_model_parallel_group()
    size = ps.get_tensor_model_parallel_world_size()
    result = {}
    for name, param in model.named_parameters():
        tensor = param.grad if grads else param.data
        if tensor is None:
            tensor = torch.zeros_like(param)
        tensor = tensor.detach().float().cpu()
        if getattr(param, "tensor_model_parallel", False) and size > 1:
            pieces = [torch.empty_like(tensor) for _ in range(size)]
            dist.all_gather(pieces, tensor.contiguous(), group=group)
            tensor = torch.cat(pieces, dim=param.partition_dim)
        if getattr(param, "vocab_padded", False):
            tensor = tensor[:true_vocab_size]
        result[name] = tensor
    if any(getattr(p, "allreduce", True) is False for p in model.parameters()):
        from plmscale.models.moe.parallel import with_all_experts
        result = with_all_experts(model, result)
    return result
