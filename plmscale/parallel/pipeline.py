"""Pipeline parallelism through DeepSpeed's ``PipelineModule``, derived from a family's pieces.

Each piece (``plmscale.families.pieces``) becomes one ``LayerSpec``; a module run by several pieces
becomes one ``TiedLayerSpec`` key, so the stages holding it keep its tied parameters equal (DeepSpeed
all-reduces their gradients). A stage holds its pieces' modules at their paths in the ordinary
model, so a parameter's pipeline name is its ordinary name behind one prefix ("7." or
"tied_modules.<key>."): ``canonical_name`` strips it, the one rule for every family.

Between stages the state travels through ``pack`` / ``unpack``: DeepSpeed sends tuples of tensors
with fixed shapes, and under TP it splits the first tensor over the TP ranks and sends gradients
for that one only. So every floating-point entry (hidden states, encoder output, auxiliary losses,
metric values) is flattened into the first tensor, a byte tensor describes the layout, and the
integer entries (ids, masks, labels) follow. Entries whose shape depends on the data (e.g. the
masked positions) must stay within a stage: families create them in their last pieces.
"""

from __future__ import annotations

import contextlib
import json
from functools import partial, reduce

import torch
import torch.distributed as dist
from deepspeed.pipe import LayerSpec, PipelineModule, TiedLayerSpec
from deepspeed.runtime.pipe.topology import PipeModelDataParallelTopology
from megatron.core import parallel_state as ps
from torch import nn

from plmscale.families.pieces import Piece, place, run_piece


def topology() -> PipeModelDataParallelTopology:
    """DeepSpeed's rank grid for the current megatron-core groups (both order ranks with tensor
    parallel fastest, then data, then pipeline)."""
    return PipeModelDataParallelTopology(
        num_pp=ps.get_pipeline_model_parallel_world_size(),
        num_mp=ps.get_tensor_model_parallel_world_size(),
        num_dp=ps.get_data_parallel_world_size())


def pack(state: dict) -> tuple:
    """A state dict -> (flat floats, layout bytes, *other tensors), the form stages exchange."""
    floats = {k: v for k, v in state.items() if v.is_floating_point()}
    others = {k: v for k, v in state.items() if not v.is_floating_point()}
    device = next(iter(state.values())).device
    dtypes = [v.dtype for v in floats.values()]  # one that holds them all (fp32 for mixed halves)
    dtype = reduce(torch.promote_types, dtypes) if dtypes else torch.float32
    parts = [v.reshape(-1).to(dtype) for v in floats.values()]
    numel = sum(p.numel() for p in parts)
    padding = -numel % ps.get_tensor_model_parallel_world_size()  # DeepSpeed splits it evenly
    flat = torch.cat(parts + [torch.zeros(padding, dtype=dtype, device=device)])
    layout = {"floats": [[k, str(v.dtype), list(v.shape)] for k, v in floats.items()],
              "others": [[k, str(v.dtype), list(v.shape)] for k, v in others.items()]}
    header = torch.tensor(list(json.dumps(layout).encode()), dtype=torch.uint8, device=device)
    # DeepSpeed's transport treats a trailing bool tensor as a mask of its own: send bytes.
    return (flat, header, *(v.to(torch.uint8) if v.dtype == torch.bool else v
                            for v in others.values()))


def unpack(packed: tuple) -> dict:
    """Inverse of ``pack``."""
    flat, header, *others = packed
    layout = json.loads(bytes(header.tolist()).decode())
    state, offset = {}, 0
    for name, dtype, shape in layout["floats"]:
        numel = int(torch.Size(shape).numel())
        state[name] = flat[offset:offset + numel].view(shape).to(getattr(torch, dtype.split(".")[1]))
        offset += numel
    for (name, dtype, _), tensor in zip(layout["others"], others):
        state[name] = tensor.to(getattr(torch, dtype.split(".")[1]))
    return state


class _Stage(nn.Module):
    """One piece as a pipeline layer: its modules at their model paths."""

    def __init__(self, piece: Piece):
        super().__init__()
        self.piece = piece
        for path, build in piece.modules.items():
            place(self, path, build(), lists=False)

    def forward(self, state):
        return run_piece(self.piece, self, state)


class _LayerStage(_Stage):
    """A transformer-layer piece (partitioning balances the number of these per stage)."""


class PiecewisePipeline(PipelineModule):
    """A family's pieces as pipeline stages. ``forward`` unpacks a stage's input and packs its
    output; the last stage returns the metrics, whose ``loss`` DeepSpeed back-propagates and which
    are kept (``metrics``, one dict of floats per micro-batch) for the training step to report."""

    def __init__(self, pieces: list[Piece]):
        uses: dict[str, list[Piece]] = {}
        for piece in pieces:
            for path in piece.modules:
                uses.setdefault(path, []).append(piece)
        specs = []
        for piece in pieces:
            stage_type = _LayerStage if piece.layer else _Stage
            path = next(iter(piece.modules))
            if len(uses[path]) == 1:
                specs.append(LayerSpec(stage_type, piece))
                continue
            if len(piece.modules) != 1:
                raise ValueError(f"{path} is run by several pieces, so its pieces may run nothing else")
            first = uses[path][0]
            tied = sorted({a for p in uses[path] if p.tie is not None for a in p.tie})
            if not tied:
                with torch.device("meta"):
                    tied = [n for n, _ in first.modules[path]().named_parameters()]
            specs.append(TiedLayerSpec(path.replace(".", "__"), stage_type, first,
                                       forward_fn=partial(run_piece, piece),
                                       tied_weight_attr=[f"{path}.{a}" for a in tied]))
        super().__init__(layers=specs, topology=topology(), loss_fn=self._loss,
                         partition_method="type:_LayerStage", activation_checkpoint_interval=0)
        self.metrics: list[dict[str, float]] = []
        # Pieces after the last layer may hand data-dependent shapes to each other: one stage.
        last_layer = max(i for i, p in enumerate(pieces) if p.layer)
        heads = range(min(last_layer + 1, len(pieces) - 1), len(pieces))
        if {self.stage_owner(i) for i in heads} != {self.num_stages - 1} or self.stage_owner(0):
            raise RuntimeError("pipeline partitioning put the embedding or the heads on the wrong stage")

    def layers_with_state(self) -> list:
        """This stage's ``forward_funcs`` with each use of a tied module replaced by the module.
        DeepSpeed keeps a ``forward_fn`` partial there, which has no state dict, so its own save
        and load would skip the tied module (the embeddings!) and a resumed or exported pipeline
        run would silently keep fresh weights."""
        # partial(partial(run_piece, piece), module) is flattened by Python: the module is last.
        return [f.args[-1] if isinstance(f, partial) and f.args and isinstance(f.args[-1], nn.Module)
                else f for f in self.forward_funcs]

    @contextlib.contextmanager
    def _tied_modules_as_layers(self):
        funcs, self.forward_funcs = self.forward_funcs, self.layers_with_state()
        try:
            yield
        finally:
            self.forward_funcs = funcs

    def save_state_dict(self, save_dir, checkpoint_engine, exclude_frozen_params=False):
        """DeepSpeed's layer files, tied modules included (see ``layers_with_state``)."""
        with self._tied_modules_as_layers():
            super().save_state_dict(save_dir, checkpoint_engine, exclude_frozen_params)

    def load_state_dir(self, load_dir, checkpoint_engine, strict=True):
        """DeepSpeed's layer files, tied modules included (see ``layers_with_state``)."""
        with self._tied_modules_as_layers():
            super().load_state_dir(load_dir, checkpoint_engine, strict)

    def forward(self, inputs):
        state = super().forward(unpack(inputs) if isinstance(inputs, tuple) else inputs)
        return state if self.stage_id == self.num_stages - 1 else pack(state)

    def _loss(self, metrics: dict, _labels) -> torch.Tensor:
        self.metrics.append({k: float(v.detach()) for k, v in metrics.items()})
        return metrics["loss"]

    @staticmethod
    def split_batch(batch: dict) -> tuple:
        """A micro-batch -> DeepSpeed's (first-stage inputs, labels): the whole batch travels with
        the state, so the last stage needs no labels of its own."""
        packed = pack(batch)
        return packed, packed[1]

    @staticmethod
    def canonical_name(name: str) -> str:
        """Pipeline parameter name -> the ordinary model's parameter name."""
        prefix = 2 if name.startswith("tied_modules.") else 1
        return name.split(".", prefix)[prefix]


def full_pipeline_tensors(pipe: PiecewisePipeline, true_vocab_size: int, grads: bool = False
                          ) -> dict[str, torch.Tensor]:
    """Every parameter (or gradient) of the whole model under its ordinary name, on every rank.

    Collective over all ranks: tensors are TP-gathered within each stage, then each stage's
    canonical tensors are shared across the pipeline group (a tied module appears on several
    stages; the first stage's copy, the one its first piece uses whole, wins).
    """
    from plmscale.export.gather import full_tensors
    local = {pipe.canonical_name(n): t for n, t in full_tensors(pipe, true_vocab_size, grads).items()}
    stages = [None] * ps.get_pipeline_model_parallel_world_size()
    dist.all_gather_object(stages, local, group=ps.get_pipeline_model_parallel_group())
    merged: dict[str, torch.Tensor] = {}
    for stage in stages:
        for name, tensor in stage.items():
            merged.setdefault(name, tensor)
    return merged
