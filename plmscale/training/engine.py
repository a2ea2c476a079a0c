"""From a validated config to a DeepSpeed engine around an initialised plmscale model."""

from __future__ import annotations

import functools

import deepspeed
import torch
import torch.distributed as dist

from plmscale.config import ExperimentConfig, deepspeed_config
from plmscale.families import build_model, get_family
from plmscale.models.moe.compat import count_expert_norms_on_every_tp_rank
from plmscale.models.moe.parallel import check_experts_on_every_stage, create_expert_groups
from plmscale.parallel import DeepSpeedMpu, device, initialize_parameters
from plmscale.training.compile import compile_layers
from plmscale.training.schedules import Schedule
from plmscale.training.preemption import resume_directory


def no_decay(name: str, param: torch.nn.Parameter) -> bool:
    """Biases and norm scales are not weight-decayed (BERT's recipe)."""
    return param.dim() < 2 or "LayerNorm" in name or "layernorm" in name or name.endswith("bias")


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decayed and plain parameters; with experts, DeepSpeed's separate expert groups (its ZeRO
    reduces expert gradients over the expert-data-parallel group only)."""
    decay, plain = [], []
    for name, param in model.named_parameters():
        (plain if no_decay(name, param) else decay).append(param)
    result = [{"name": "decay", "params": decay, "weight_decay": weight_decay},
              {"name": "plain", "params": plain, "weight_decay": 0.0}]
    if any(getattr(p, "allreduce", True) is False for p in model.parameters()):
        from deepspeed.moe.utils import split_params_into_different_moe_groups_for_optimizer
        result = split_params_into_different_moe_groups_for_optimizer(result)
    return result


def uses_pipeline(cfg: ExperimentConfig) -> bool:
    return cfg.parallel.pipeline_model_parallel_size > 1


def build_initialised_model(cfg: ExperimentConfig,
                            full: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """The family's model with layout-independent weights (same for any TP and PP layout), on this
    device: the ordinary module, or its ``PipelineModule`` when pipeline parallelism is on.
    Collective over all ranks when the model has experts (their process groups are made here).

    The weights are ``full`` (whole tensors under the ordinary model's names) when given, else
    ``train.init_from``'s when set, else the seeded initialisation."""
    create_expert_groups(cfg)
    family = get_family(cfg.model.family)
    if not uses_pipeline(cfg):
        model = build_model(cfg)
        initialize_parameters(model, cfg.train.seed, cfg.model.init_std, cfg.model.vocab_size)
    else:
        from plmscale.parallel.pipeline import PiecewisePipeline
        model = PiecewisePipeline(family.pieces(cfg))
        check_experts_on_every_stage(model)
        initialize_parameters(model, cfg.train.seed, cfg.model.init_std, cfg.model.vocab_size,
                              canonical_name=model.canonical_name)
    if family.initialize is not None:
        family.initialize(model, cfg)
    if full is None and cfg.train.init_from and not resume_directory(cfg.train):
        from plmscale.export.hf_import import initial_weights
        full = initial_weights(cfg)
    if full is not None:
        from plmscale.export.hf_import import load_into
        load_into(model, full, cfg)
    return model.to(device())


def build_engine(cfg: ExperimentConfig, model: torch.nn.Module | None = None):
    """``deepspeed.initialize`` with the generated config and the ``train.lr_schedule`` scheduler;
    returns (engine, scheduler).

    Without a pipeline DeepSpeed learns the TP/DP groups from the ``mpu`` adapter; a
    ``PipelineModule`` carries its own topology (same rank order) and takes no ``mpu``.
    ``train.compile``: each transformer layer is compiled first (``plmscale.training.compile``).
    """
    model = model if model is not None else build_initialised_model(cfg)
    if cfg.train.compile:
        compile_layers(model)
    engine, _, _, scheduler = deepspeed.initialize(
        model=model,
        model_parameters=parameter_groups(model, cfg.train.weight_decay),
        config=deepspeed_config(cfg, dist.get_world_size()),
        lr_scheduler=functools.partial(Schedule, train=cfg.train),
        mpu=None if uses_pipeline(cfg) else DeepSpeedMpu(),
        dist_init_required=False,
    )
    if cfg.model.num_experts and cfg.parallel.zero_stage in (1, 2):
        count_expert_norms_on_every_tp_rank(engine.optimizer)
    if not uses_pipeline(cfg) and cfg.parallel.zero_stage == 0 and engine.dp_world_size == 1:
        # One data-parallel rank: the all-reduce is the identity, but DeepSpeed's fallback still
        # flattens every gradient into buckets and copies them back (measured: ~8% of a BERT step
        # on CPU, bench/RESULTS.md). Pipelines reduce tied weights on that path too: left alone.
        engine.enable_backward_allreduce = False
    return engine, scheduler
