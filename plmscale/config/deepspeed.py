"""Generate DeepSpeed's configuration dict from the experiment config (never maintained by hand)."""

from __future__ import annotations

import torch

from plmscale.config.schema import ExperimentConfig, TrainConfig


def data_parallel_size(cfg: ExperimentConfig, world_size: int) -> int:
    p = cfg.parallel
    return world_size // (p.tensor_model_parallel_size * p.pipeline_model_parallel_size)


def adamw_params(train: TrainConfig) -> dict:
    """AdamW's keyword arguments: the config's hyper-parameters and, on the CPU, torch's fused
    implementation (one kernel over every tensor: 33 vs 169 ms per step at BERT-base's shapes,
    bench/RESULTS.md; the same update within fp32 rounding). DeepSpeed's optimizer takes them,
    and so does any reference that must train with the same optimizer (bench/train_step.py)."""
    params = {"lr": train.lr, "betas": [train.adam_beta1, train.adam_beta2], "eps": train.adam_eps,
              "weight_decay": train.weight_decay}
    if not torch.cuda.is_available():  # DeepSpeed's GPU FusedAdam takes no such argument
        params["fused"] = True
    return params


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
            # DeepSpeed's fused Adam needs a CUDA build; torch's AdamW is the same math on CPU
            # (DeepSpeed passes the other params on to it).
            "params": {**adamw_params(t), "torch_adam": not on_gpu},
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
