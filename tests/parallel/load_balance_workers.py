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


def _train(shards: str, overrides: list[str]):
    """(per-step metrics, trained model) of configs/gpt_moe_tiny.yaml on one rank."""
    from plmscale.training.engine import build_initialised_model
    from plmscale.training.loop import train
    cfg = load_config(REPO / "configs" / "gpt_moe_tiny.yaml",
                      ONE_RANK + [f"data.path={shards}"] + overrides)
    init_model_parallel(cfg)
    seed_all(cfg.train.seed)
    model = build_initialised_model(cfg)
    return train(cfg, model), model


def collapse_then_train(shards: str, save_dir: str, collapse_steps: int, steps: int,
                        coefficients: dict[str, float]) -> dict[str, list[float]]:
    """Train without the balancing loss for ``collapse_steps`` (the router sends nearly every token
    to one expert), save; then, from that checkpoint, continue to step ``steps`` once per
    auxiliary-loss coefficient (name -> coefficient). Returns each continuation's per-step
    ``moe_load_max_over_mean`` as the progress line reports it (max over the MoE layers)."""
    _train(shards, ["model.moe_aux_loss_coeff=0", f"train.train_steps={collapse_steps}",
                    f"train.save_dir={save_dir}"])
    return {name: [step["moe_load_max_over_mean"] for step in _train(shards, [
                f"model.moe_aux_loss_coeff={coefficient}", f"train.load_dir={save_dir}",
                f"train.train_steps={steps}"])[0]]
            for name, coefficient in coefficients.items()}


def routing_biases_saved_and_resumed(shards: str, save_dir: str) -> tuple[list, list]:
    """The aux-loss-free routing biases after 2 steps at rate 0.01 (saved to ``save_dir``), and those
    a model resumed from that checkpoint holds."""
    from plmscale.models.moe.balance import BiasedTopKGate

    def biases(model):
        return [m.routing_bias.tolist() for m in model.modules() if isinstance(m, BiasedTopKGate)]

    common = ["model.moe_expert_bias_rate=0.01", "train.train_steps=2"]
    saved = biases(_train(shards, common + [f"train.save_dir={save_dir}"])[1])
    return saved, biases(_train(shards, common + [f"train.load_dir={save_dir}"])[1])


def balance_runs(shards: str, tmp: str, collapse_steps: int, steps: int,
                 coefficients: dict[str, float]) -> dict:
    """Both of the above in one process: {"loads": ..., "biases": (saved, resumed)}."""
    init_distributed()
    return {"loads": collapse_then_train(shards, f"{tmp}/collapse", collapse_steps, steps,
                                         coefficients),
            "biases": routing_biases_saved_and_resumed(shards, f"{tmp}/bias")}
