"""The files DeepSpeed's MoE checkpoint leaves out under tensor parallelism, written after
``engine.save_checkpoint`` (``plmscale.training.checkpoint.save``).

``DeepSpeedEngine._save_moe_checkpoint`` (deepspeed 0.19.8) returns before writing the non-expert
``mp_rank_{tp}_model_states.pt`` on every rank whose expert-data-parallel rank is not 0, and writes
the expert files ``layer_{L}_expert_{E}_mp_rank_{tp}_model_states.pt`` only from those writers. With
TP > 1 the expert-data-parallel group holds the TP peers (they keep the same experts), so only TP
rank 0 writes: the other TP ranks' dense shards are missing (no resume, no export), and so are the
expert files their ``load_moe_state_dict`` opens under their own TP rank and, without ZeRO, the
optimizer files ``expp_rank_{E}_mp_rank_{tp}_optim_states.pt`` their ``_load_checkpoint`` opens.
``complete_moe_checkpoint`` writes the dense shard and the optimizer file as DeepSpeed's writers do,
and copies TP rank 0's expert files (experts are whole on every TP rank) to the other TP ranks'
names.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch.distributed as dist


def complete_moe_checkpoint(engine, directory: str, tag: str, client_state: dict) -> None:
    """Collective over all ranks, after ``engine.save_checkpoint`` of an MoE model without a
    pipeline; a no-op otherwise."""
    from megatron.core import parallel_state as ps
    tp = ps.get_tensor_model_parallel_world_size()
    if not getattr(engine, "has_moe_layers", False) or tp == 1 or hasattr(engine.module, "canonical_name"):
        return
    from deepspeed.runtime.engine import DeepSpeedEngine
    from deepspeed.utils import groups
    dist.barrier()  # DeepSpeed's own writers are done
    path = Path(engine._get_ckpt_name(directory, tag))
    if ps.get_data_parallel_rank() == 0 and not path.is_file():
        module = engine._get_non_moe_state_dict(DeepSpeedEngine.module_state_dict(engine))
        state = engine._common_checkpoint_state(module, engine.zero_optimization(),
                                                engine.zero_optimization_partition_gradients())
        state.update(num_experts=engine.num_experts, ds_autoep_layers=None, **client_state)
        engine.checkpoint_engine.save(state, str(path))
    if not engine.zero_optimization():  # (ZeRO saves every rank's optimizer partition itself)
        # One writer per (expert-parallel rank, TP rank): its data-parallel copies hold the same.
        expert_rank = groups._get_expert_parallel_rank(groups._get_max_expert_size_name())
        mine = (expert_rank, ps.get_tensor_model_parallel_rank())
        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, mine)
        optimizer_path = Path(engine._get_optimizer_ckpt_name(directory, tag, expert_rank))
        if everyone.index(mine) == dist.get_rank() and not optimizer_path.is_file():
            engine.checkpoint_engine.save({"optimizer": engine.optimizer.state_dict()},
                                          str(optimizer_path))
    dist.barrier()
    if dist.get_rank() == 0:
        for source in sorted((Path(directory) / tag).glob("layer_*_expert_*_mp_rank_00_model_states.pt")):
            for rank in range(1, tp):
                target = source.with_name(source.name.replace("_mp_rank_00_", f"_mp_rank_{rank:02d}_"))
                if not target.exists():
                    shutil.copyfile(source, target)
    dist.barrier()
