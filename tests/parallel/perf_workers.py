"""Rank function of the memory-state test: what DeepSpeed actually allocates, tensor by tensor."""

from __future__ import annotations

import torch
from gpt_workers import TINY, fixed_batch

from plmscale.config import load_config
from plmscale.parallel import init_distributed, init_model_parallel, seed_all


def _optimizer_elements(optimizer) -> int:
    return sum(state[key].numel() for state in optimizer.state.values()
               for key in ("exp_avg", "exp_avg_sq") if key in state)


def allocated_elements(layouts: list[list[str]]) -> list[dict]:
    """Per layout (config overrides): elements of parameters, gradients (ZeRO 0-1, where they are
    the model's own ``.grad``), fp32 master partitions and Adam moments on this rank after one step."""
    from plmscale.training.engine import build_engine
    init_distributed()
    out = []
    for overrides in layouts:
        cfg = load_config(None, TINY + ["train.micro_batch_size=4", "data.seq_length=24"]
                          + overrides)
        init_model_parallel(cfg)
        seed_all(0)
        engine, _ = build_engine(cfg)
        batch = fixed_batch(cfg.model.vocab_size)
        del batch["document_ids"]
        stage = cfg.parallel.zero_stage
        ds_opt = engine.optimizer
        params = list(engine.module.parameters())
        if stage in (1, 2):
            param_elements = sum(flat.numel() for flat in ds_opt.bit16_groups_flat)
            master = sum(t.numel() for t in ds_opt.single_partition_of_fp32_groups)
        elif stage == 3:
            param_elements = sum(p.ds_tensor.numel() for p in params)
            master = sum(t.numel() for t in ds_opt.fp32_partitioned_groups_flat)
        else:
            param_elements, master = sum(p.numel() for p in params), 0
        grads = None
        if cfg.parallel.pipeline_model_parallel_size > 1:
            engine.train_batch(iter([engine.module.split_batch(batch)]))
        else:
            engine.backward(engine(batch)["loss"])
            if stage < 2:
                grads = sum(p.grad.numel() for p in params if p.grad is not None)
            engine.step()
        inner = ds_opt.optimizer if stage else ds_opt
        out.append({"parameters": param_elements, "gradients": grads, "master": master,
                    "optimizer": _optimizer_elements(inner),
                    "stage": int(engine.module.stage_id) if hasattr(engine.module, "stage_id") else 0})
        del engine, ds_opt
        torch.distributed.barrier()
    return out
