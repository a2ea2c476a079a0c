"""Pipeline parallelism through DeepSpeed's ``PipelineModule``.

A family expresses its model as a flat list of ``LayerSpec``s: an embedding piece, one piece per
transformer layer, and head pieces; the input embedding and the tied output projection are
``TiedLayerSpec``s with the same key, so the first and the last stage each hold a copy of the word
embedding that DeepSpeed keeps identical (it all-reduces their gradients). Pieces pass tuples of
tensors between stages; their shapes must not change from one micro-batch to the next.

Parameter names inside a PipelineModule depend on the stage layout ("5.mlp..." for layer spec 5,
"tied_modules.embed..."); ``canonical_name`` maps them back to the names of the family's ordinary
model, so initialisation (seeded by name) and export are the same for every PP x TP layout.
"""

from __future__ import annotations

from typing import Callable

import torch
from deepspeed.pipe import PipelineModule
from deepspeed.runtime.pipe.topology import PipeModelDataParallelTopology
from megatron.core import parallel_state as ps


def topology() -> PipeModelDataParallelTopology:
    """DeepSpeed's rank grid for the current megatron-core groups (both order ranks with tensor
    parallel fastest, then data, then pipeline)."""
    return PipeModelDataParallelTopology(
        num_pp=ps.get_pipeline_model_parallel_world_size(),
        num_mp=ps.get_tensor_model_parallel_world_size(),
        num_dp=ps.get_data_parallel_world_size())


class FamilyPipeline(PipelineModule):
    """A family's model as pipeline stages.

    ``layer_type`` names the class of the repeated transformer piece: stages get equal numbers of
    them (DeepSpeed's ``type:`` partitioning), the embedding lands on the first stage and the heads on
    the last. ``renames`` are (pipeline prefix, ordinary-model prefix) pairs, e.g.
    ("3.", "bert.layers.2.") or ("tied_modules.embed.", "bert.embeddings."); the longest matching
    prefix wins.
    """

    def __init__(self, specs: list, loss_fn: Callable, layer_type: str,
                 renames: list[tuple[str, str]], split_batch: Callable[[dict], tuple]):
        super().__init__(layers=specs, topology=topology(), loss_fn=loss_fn,
                         partition_method=f"type:{layer_type}", activation_checkpoint_interval=0)
        self._renames = sorted(renames, key=lambda pair: -len(pair[0]))
        self.split_batch = split_batch
        """dict batch (as the family's samples give) -> (stage-0 inputs tuple, loss labels tuple)."""
        last = len(specs) - 1
        if self.stage_owner(last) != self.num_stages - 1 or self.stage_owner(0) != 0:
            raise RuntimeError("pipeline partitioning put the embedding or the heads on the wrong stage")

    def canonical_name(self, name: str) -> str:
        """Pipeline parameter name -> the ordinary model's parameter name."""
        for prefix, canonical in self._renames:
            if name.startswith(prefix):
                return canonical + name[len(prefix):]
        raise KeyError(f"no canonical name for pipeline parameter {name}")


def full_pipeline_tensors(pipe: FamilyPipeline, true_vocab_size: int, grads: bool = False
                          ) -> dict[str, torch.Tensor]:
    """Every parameter (or gradient) of the whole model under its ordinary name, on every rank.

    Collective over all ranks: tensors are TP-gathered within each stage, then each stage's
    canonical tensors are shared across the pipeline group (a tied weight appears on several
    stages with equal values; the first stage's copy wins).
    """
    import torch.distributed as dist

    from plmscale.export.gather import full_tensors
    local = {pipe.canonical_name(n): t for n, t in full_tensors(pipe, true_vocab_size, grads).items()}
    stages = [None] * ps.get_pipeline_model_parallel_world_size()
    dist.all_gather_object(stages, local, group=ps.get_pipeline_model_parallel_group())
    merged: dict[str, torch.Tensor] = {}
    for stage in stages:
        for name, tensor in stage.items():
            merged.setdefault(name, tensor)
    return merged
