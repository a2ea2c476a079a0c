"""Resuming a checkpoint on another layout (tensor-, pipeline- or data-parallel size, or ZeRO stage
0-2 changed): plmscale's own re-slicing, not DeepSpeed's universal checkpoint.

Why not the universal checkpoint: with deepspeed 0.19.8 ``ds_to_universal`` needs the
``universal_checkpoint_info`` client state that Megatron-DeepSpeed writes (which parameters are
TP-sliced along which dimension, the vocabulary padding), and its loader has open bugs (#6691: the
resume behaves as from scratch; #7601: a loss jump at ZeRO-3). plmscale already knows how each of
its parameters is split (``tensor_model_parallel`` / ``partition_dim`` / ``vocab_padded`` on the
parameter), so it reads the whole tensors itself and lets DeepSpeed place them:

1. ``plmscale.export.shards.read_full_state`` reads every parameter's whole fp32 weight, Adam's two
   moments and step from the saved layout's files (TP slices merged, ZeRO partitions joined through
   the ``param_slice_mappings`` DeepSpeed saves, vocabulary padding cut);
2. each rank cuts its part for the new layout (``shards.local_slice``) and sets it: the module's
   weight, and under ZeRO-1/2 the fp32 master partition and moments through DeepSpeed's fragment
   API (``safe_set_full_fp32_param`` / ``safe_set_full_optimizer_state``, which maps a whole
   tensor onto this rank's flat partition whatever the partitioning); under ZeRO-0 the torch
   optimizer's own state;
3. the LR schedule and the engine's step counters continue at the saved step, and the data
   position is carried over as a sample count (``data_position``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
from megatron.core import parallel_state as ps

from plmscale.config import ExperimentConfig
from plmscale.export.shards import MOMENTS, load_full_tensors, local_slice, read_full_state, safe_load


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a run is spread over ranks, as far as its checkpoint files depend on it."""

    tensor: int
    pipeline: int
    data: int
    zero_stage: int

    def __str__(self) -> str:
        return f"TP{self.tensor} x PP{self.pipeline} x DP{self.data} ZeRO-{self.zero_stage}"


def current_layout(cfg: ExperimentConfig) -> Layout:
    """This run's layout (process groups must be set up)."""
    p = cfg.parallel
    return Layout(p.tensor_model_parallel_size, p.pipeline_model_parallel_size,
                  ps.get_data_parallel_world_size(), p.zero_stage)


def saved_layout(directory: str | Path, tag: str, saved: dict) -> Layout:
    """The layout a checkpoint was written at: its ``plmscale.json`` "layout", or (checkpoints
    written before it was recorded) the saved config plus DeepSpeed's recorded data-parallel size."""
    if "layout" in saved:
        return Layout(**saved["layout"])
    p = saved["config"]["parallel"]
    data = safe_load(Path(directory) / tag / "mp_rank_00_model_states.pt",
                     map_location="cpu")["dp_world_size"]
    return Layout(p["tensor_model_parallel_size"], p["pipeline_model_parallel_size"], int(data),
                  p["zero_stage"])


def data_position(micro_batches: int, saved: dict, before: Layout, cfg: ExperimentConfig) -> int:
    """The global micro-batch index at which the new layout goes on reading. A global micro-batch
    is ``micro_batch_size`` x DP samples (``plmscale.data.loader``), so the saved index is turned
    into samples read and back; a position between two of the new micro-batches moves on to the
    next one (those few samples are not read)."""
    samples = micro_batches * saved["config"]["train"]["micro_batch_size"] * before.data
    per_micro_batch = cfg.train.micro_batch_size * ps.get_data_parallel_world_size()
    return math.ceil(samples / per_micro_batch)


def load_resliced(engine, directory: str | Path, tag: str, cfg: ExperimentConfig, step: int,
                  module_only: bool = False) -> None:
    """Collective. Set the engine built for ``cfg``'s layout to the state of checkpoint ``tag``
    saved at another layout: weights, and (unless ``module_only``) Adam's moments and step, the LR
    schedule and the engine's step counters. Raises ``CheckpointError`` (from the reader) for a
    checkpoint it cannot move (pipeline-parallel, ZeRO-3 or with experts)."""
    from plmscale.training.checkpoint import CheckpointError
    if cfg.parallel.zero_stage == 3 and not module_only:
        raise CheckpointError(f"{directory}/{tag} was saved at another layout; plmscale moves "
                              f"optimizer state onto ZeRO 0-2 only: resume at parallel.zero_stage"
                              f" <= 2, or at the saved layout")
    state = read_full_state(directory, tag)
    module = engine.module
    canonical = getattr(module, "canonical_name", lambda name: name)
    vocab = cfg.model.vocab_size
    load_full_tensors(module, state.params, vocab, canonical)
    if module_only:
        return
    if cfg.parallel.zero_stage == 0:
        _set_torch_state(engine.optimizer, module, canonical, state, vocab)
    else:
        _set_zero_state(engine.optimizer, module, canonical, state, vocab)
    continue_schedule(engine, step)


def continue_schedule(engine, step: int, counters: bool = True) -> None:
    """The LR schedule (the resumed config's curve) goes on from ``step`` applied steps, and with
    ``counters`` the engine's step counters (which DeepSpeed restores itself only when it loads
    the checkpoint's engine state)."""
    engine.lr_scheduler.load_state_dict({"last_epoch": step, "_step_count": step + 1})
    if not counters:
        return
    engine.global_steps = step
    engine.global_samples = step * engine.train_batch_size()


def _adam_step(step: int) -> torch.Tensor:
    """Adam's step count as torch keeps it (a float scalar tensor on the CPU, not capturable)."""
    return torch.tensor(float(step), dtype=torch.float32)


def _set_torch_state(optimizer, module, canonical, state, vocab: int) -> None:
    """ZeRO-0: DeepSpeed steps the torch optimizer on the module's parameters directly."""
    for local, param in module.named_parameters():
        name = canonical(local)
        optimizer.state[param] = {
            "step": _adam_step(state.optimizer_step),
            **{key: local_slice(state.moments[key][name], param, vocab).to(param).clone()
               for key in MOMENTS}}


def _set_zero_state(optimizer, module, canonical, state, vocab: int) -> None:
    """ZeRO-1/2: torch's Adam state lives on the flat fp32 partitions, created at the first step;
    it is created here (zeros, the saved step), linked to the parameters' fragments the way
    DeepSpeed links it before its own loads, then filled through the fragment API."""
    from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state
    base = optimizer.optimizer
    for flat in optimizer.single_partition_of_fp32_groups:
        base.state[flat] = {"step": _adam_step(state.optimizer_step),
                            **{key: torch.zeros_like(flat) for key in MOMENTS}}
    optimizer._hp_optimizer_states_linked = False
    optimizer._lazy_init_hp_params_optimizer_state()
    for local, param in module.named_parameters():
        name = canonical(local)
        safe_set_full_fp32_param(param, local_slice(state.params[name], param, vocab).to(param))
        for key in MOMENTS:
            safe_set_full_optimizer_state(param, local_slice(state.moments[key][name], param,
                                                             vocab).to(param), key)
