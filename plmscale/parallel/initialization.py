"""Layout-independent weight initialisation.

Every parameter is drawn as the FULL (unpartitioned) tensor from a generator seeded by the run seed and
the parameter's canonical name, then this rank keeps its slice. So a model has the same weights under
TP=1, TP=2 or any pipeline split, which is what makes layouts comparable (and equivalence-testable).
Embedding rows added by vocabulary padding are zero and never influence the loss (they are masked).
"""

from __future__ import annotations

import zlib

import torch
from megatron.core import parallel_state as ps
from megatron.core.tensor_parallel import VocabParallelEmbedding


def _generator(seed: int, name: str) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63)


def _is_norm(module: torch.nn.Module) -> bool:
    return isinstance(module, (torch.nn.LayerNorm, torch.nn.RMSNorm)) or "Norm" in type(module).__name__


@torch.no_grad()
def initialize_parameters(model: torch.nn.Module, seed: int, std: float, true_vocab_size: int,
                          canonical_name=lambda name: name) -> None:
    """Normal(0, std) weights, zero biases, unit norm scales; ``canonical_name`` maps a local
    parameter name to its layout-independent name (pipeline stages renumber layers). A parameter
    with an ``init_std`` attribute is drawn with that std instead."""
    from plmscale.models.moe.parallel import global_expert_name  # models import this package
    tp_size = ps.get_tensor_model_parallel_world_size()
    tp_rank = ps.get_tensor_model_parallel_rank()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            full_name = canonical_name(f"{module_name}.{param_name}" if module_name else param_name)
            full_name = global_expert_name(full_name, param)  # any expert-parallel size
            if param_name == "bias" or (param_name.endswith("bias") and param.dim() == 1):
                param.zero_()
                continue
            if _is_norm(module):
                param.fill_(1.0)
                continue
            partitioned = getattr(param, "tensor_model_parallel", False)
            dim = getattr(param, "partition_dim", 0) if partitioned else 0
            shape = list(param.shape)
            if partitioned:
                shape[dim] *= tp_size
            real_rows = shape[0]
            if isinstance(module, VocabParallelEmbedding):
                real_rows = true_vocab_size  # padding rows stay zero
            full = torch.zeros(shape, dtype=torch.float32)
            # A family may ask for another std on one tensor (GPT-2 scales its residual output
            # projections by 1/sqrt(2 * layers)): the attribute travels with the parameter.
            param_std = getattr(param, "init_std", std)
            full[:real_rows].normal_(0.0, param_std, generator=_generator(seed, full_name))
            if partitioned:
                full = full.chunk(tp_size, dim=dim)[tp_rank]
            param.copy_(full.to(param.dtype))
