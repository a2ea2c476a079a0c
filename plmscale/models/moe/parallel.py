"""Expert-parallel process groups and the global names of expert parameters.

DeepSpeed's MoE layer creates its groups lazily when the engine starts, from the whole world and
without the pipeline: under PP its expert-data-parallel group would span stages that hold different
layers. ``create_expert_groups`` makes them first, per pipeline stage and TP-strided (DeepSpeed's own
``_create_expert_and_data_parallel`` with this layout's sizes): an expert-parallel group joins ranks
of the same TP rank in different data-parallel replicas; its expert-data-parallel group holds the
other copies of the same experts (TP peers, which process other expert slots, and other replicas).

Rank ``r`` of an expert-parallel group of size ``ep`` holds experts ``r * E/ep ... (r+1) * E/ep - 1``
as its local experts ``0 ... E/ep - 1``: ``global_expert_name`` renames a local parameter to the
global expert, the layout-independent name that initialisation and gathering use.
"""

from __future__ import annotations

import re

import torch
import torch.distributed as dist

from plmscale.config.schema import ExperimentConfig

_LOCAL_EXPERT = re.compile(r"deepspeed_experts\.(\d+)\.")


def create_expert_groups(cfg: ExperimentConfig) -> None:
    """Collective over all ranks: (re)create DeepSpeed's expert groups for this layout. A no-op for a
    dense model."""
    if not cfg.model.num_experts:
        return
    from deepspeed.utils import groups

    from plmscale.parallel.state import DeepSpeedMpu
    # Set before the engine (the pipeline engine takes no mpu): MoE reads the TP size from it.
    groups.mpu = DeepSpeedMpu()
    for table in (groups._EXPERT_PARALLEL_GROUP, groups._EXPERT_PARALLEL_GROUP_RANKS,
                  groups._EXPERT_DATA_PARALLEL_GROUP, groups._EXPERT_DATA_PARALLEL_GROUP_RANKS):
        table.clear()  # a previous layout's groups in this process
    p = cfg.parallel
    groups._create_expert_and_data_parallel(
        cfg.model.expert_model_parallel_size, mp_size=p.tensor_model_parallel_size,
        pp_size=p.pipeline_model_parallel_size, mp_mode="tp")


def _expert_group_name(param: torch.nn.Parameter) -> str | None:
    return getattr(param, "group_name", None) if getattr(param, "allreduce", True) is False else None


def global_expert_name(name: str, param: torch.nn.Parameter) -> str:
    """``name`` with the local expert index replaced by the global one (unchanged for parameters
    that are not experts). Needs the expert groups (``create_expert_groups``)."""
    group_name = _expert_group_name(param)
    if group_name is None:
        return name
    from deepspeed.utils import groups
    offset = groups._get_expert_parallel_rank(group_name) * param.num_local_experts
    return _LOCAL_EXPERT.sub(lambda m: f"deepspeed_experts.{int(m.group(1)) + offset}.", name)


def with_all_experts(model: torch.nn.Module, tensors: dict[str, torch.Tensor]
                     ) -> dict[str, torch.Tensor]:
    """``tensors`` (this rank's, by local name) with every expert of the expert-parallel group under
    its global name. Collective over each expert-parallel group."""
    from deepspeed.utils import groups
    result = {}
    for name, param in model.named_parameters():
        group_name = _expert_group_name(param)
        if group_name is None or name not in tensors:
            if name in tensors:
                result[name] = tensors[name]
            continue
        group = groups._get_expert_parallel_group(group_name)
        size = dist.get_world_size(group)
        pieces = [torch.empty_like(tensors[name]) for _ in range(size)]
        dist.all_gather(pieces, tensors[name].contiguous(), group=group)
        local = int(_LOCAL_EXPERT.search(name).group(1))
        for rank, piece in enumerate(pieces):
            global_name = _LOCAL_EXPERT.sub(
                f"deepspeed_experts.{rank * param.num_local_experts + local}.", name)
            result[global_name] = piece
    return result


def check_experts_on_every_stage(pipe) -> None:
    """Collective over the pipeline group: refuse a pipeline where some stages hold MoE layers and
    others none. DeepSpeed's ZeRO computes the gradient norm per parameter group with a collective
    over the model-parallel group (pipeline stages included), and a stage with experts has one more
    group (its experts'), so the stages would wait on each other forever."""
    from megatron.core import parallel_state as ps

    from plmscale.config.loading import ConfigError
    from plmscale.models.moe.layer import MoEFeedForward
    mine = sum(isinstance(m, MoEFeedForward) for m in pipe.modules())
    stages = [None] * ps.get_pipeline_model_parallel_world_size()
    dist.all_gather_object(stages, mine, group=ps.get_pipeline_model_parallel_group())
    if any(stages) and not all(stages):
        raise ConfigError(f"MoE layers per pipeline stage: {stages}; every stage needs at least one "
                          f"(DeepSpeed's per-group gradient norm is a collective across stages): lower "
                          f"model.moe_layer_frequency or parallel.pipeline_model_parallel_size")
