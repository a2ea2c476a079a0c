"""Rank function of the load-balancing run test (module-level so the spawned rank can import it)."""

from __future__ import annotations

from pathlib import Path

from plmscale.config import load_config
from plmscale.parallel import init_distributed, init_model_parallel, seed_all

REPO = Path(__file__).resolve().parents[2]

# configs/gpt_moe_tiny.yaml (4 experts per layer, Switch top-1, capacity 1.25, aux coefficient 0.01,
# z-loss 0.001) on one rank: expert parallel 1, 8 sequences of 64 tokens a step.
ONE_RANK = ["model.expert_model_parallel_size=1", "train.micro_batch_size=8", "data.num_workers=0",
            "train.progress_bar=false", "train.tensorboard_dir=null", "train.save_dir=null"]


def collapse_then_train(shards: str, save_dir: str, collapse_steps: int, steps: int,
                        coefficients: dict[str, float]) -> dict[str, list[float]]:
    """Train without the balancing loss for ``collapse_steps`` (the router sends nearly every token
    to one expert), save; then, from that checkpoint, continue to step ``steps`` once per
    auxiliary-loss coefficient (name -> coefficient). Returns each continuation's per-step
    ``moe_load_max_over_mean`` as the progress line reports it (max over the MoE layers)."""
    from plmscale.training.loop import train
    init_distributed()

    def run(overrides: list[str]) -> list[float]:
        cfg = load_config(REPO / "configs" / "gpt_moe_tiny.yaml",
                          ONE_RANK + [f"data.path={shards}"] + overrides)
        init_model_parallel(cfg)
        seed_all(cfg.train.seed)
        return [step["moe_load_max_over_mean"] for step in train(cfg)]

    run(["model.moe_aux_loss_coeff=0", f"train.train_steps={collapse_steps}",
         f"train.save_dir={save_dir}"])
    return {name: run([f"model.moe_aux_loss_coeff={coefficient}", f"train.load_dir={save_dir}",
                       f"train.train_steps={steps}"])
            for name, coefficient in coefficients.items()}
