"""Generate DeepSpeed's configuration dict from the experiment config (never maintained by hand)."""

from __future__ import annotations

import torch

from plmscale.config.schema import ExperimentConfig


def data_parallel_size(cfg: ExperimentConfig, world_size: int) -> int:
    p = cfg.parallel
    return world_size // (p.tensor_model_parallel_size * p.pipeline_model_parallel_size)


def deepspeed_config(cfg: ExperimentConfig, world_size: int) -> dict:
    """The ``config`` argument of ``deepspeed.initialize`` for this experiment and world size."""
    t = cfg.train
    dp = data_parallel_size(cfg, world_size)
    on_gpu = torch.cuda.is_available()
    return {
        "train_micro_batch_size_per_gpu": t.micro_batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "train_batch_size": t.micro_batch_size * t.gradient_accumulation_steps * dp,
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": t.lr,
                "betas": [t.adam_beta1, t.adam_beta2],
                "eps": t.adam_eps,
                "weight_decay": t.weight_decay,
                # DeepSpeed's fused Adam needs a CUDA build; torch's AdamW is the same math on CPU.
                "torch_adam": not on_gpu,
            },
        },
        # No "scheduler": the LR schedule is plmscale's own (plmscale.training.schedules), handed
        # to deepspeed.initialize as lr_scheduler, so every schedule (DeepSpeed has no inverse-sqrt
        # or WSD) has one definition.
        "gradient_clipping": t.grad_clip,
        "zero_optimization": {"stage": cfg.parallel.zero_stage},
        "bf16": {"enabled": t.precision == "bf16"},
        "fp16": {"enabled": t.precision == "fp16", "initial_scale_power": 16},
        # plmscale logs itself; DeepSpeed's own per-step prints would interleave with the bar.
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
