"""Rank functions for resuming on another layout (tests/parallel/test_relayout.py): module-level so
spawned ranks can import them."""

from __future__ import annotations

from bert_workers import train_runs
from closeness import closeness

from plmscale.config import load_config
from plmscale.parallel import init_distributed, init_model_parallel, seed_all


def runs_and_moment_checks(shards: str, runs: list[list[str]], checks: list[list[str]],
                           drop_moments: list[str] | None = None) -> dict:
    """``train_runs`` of ``runs``, then per override list of ``checks`` the closeness of the Adam
    moments and weights a resumed engine holds to those its checkpoint's files hold, and, with
    ``drop_moments`` (overrides), a run whose resume reads zero moments (to show the comparison
    of losses can fail)."""
    from bert_workers import TRAIN
    result = {"histories": train_runs(shards, runs), "moments": []}
    for overrides in checks:
        cfg = load_config(None, TRAIN + [f"data.path={shards}"] + overrides)
        result["moments"].append(resumed_state_vs_files(cfg))
    if drop_moments is not None:
        import plmscale.training.relayout as relayout
        read = relayout.read_full_state

        def without_moments(*args):
            state = read(*args)
            state.moments = {k: {n: t * 0 for n, t in v.items()} for k, v in state.moments.items()}
            return state
        relayout.read_full_state = without_moments
        try:
            result["dropped"] = train_runs(shards, [drop_moments])[0]
        finally:
            relayout.read_full_state = read
    return result


def resumed_state_vs_files(cfg) -> dict:
    """Build ``cfg``'s engine (no pipeline), resume it from ``train.load_dir`` and compare what
    its optimizer holds for every parameter (weights, fp32 master, Adam moments, step) with the
    checkpoint files' whole tensors: the re-slicing must be exact."""
    import torch
    from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

    from plmscale.export.shards import local_slice, read_full_state
    from plmscale.training import checkpoint
    from plmscale.training.engine import build_engine
    init_distributed()
    init_model_parallel(cfg)
    seed_all(cfg.train.seed)
    engine, _ = build_engine(cfg)
    step, _, _ = checkpoint.load(engine, cfg.train.load_dir, cfg=cfg)
    saved = read_full_state(cfg.train.load_dir)
    vocab = cfg.model.vocab_size
    diff, steps = 0.0, set()
    if cfg.parallel.zero_stage:  # (DeepSpeed links the fragments to the state lazily)
        engine.optimizer._lazy_init_hp_params_optimizer_state()
    for name, param in engine.module.named_parameters():
        if cfg.parallel.zero_stage == 0:
            state = engine.optimizer.state[param]
            held = {"fp32": param.detach(), **{k: state[k] for k in ("exp_avg", "exp_avg_sq")}}
            steps.add(int(state["step"]))
        else:
            held = {"fp32": safe_get_full_fp32_param(param),
                    **{k: safe_get_full_optimizer_state(param, k) for k in ("exp_avg", "exp_avg_sq")}}
        held["module"] = param.detach()
        want = {"fp32": saved.params[name], "module": saved.params[name],
                **{k: saved.moments[k][name] for k in saved.moments}}
        for key, tensor in held.items():
            diff = max(diff, (tensor - local_slice(want[key], param, vocab)).abs().max().item())
    if cfg.parallel.zero_stage:
        steps |= {int(s["step"]) for s in engine.optimizer.optimizer.state.values()}
    moved = max(t.abs().max().item() for t in saved.moments["exp_avg"].values())
    return {"max_diff": diff, "steps": sorted(steps), "saved_step": saved.optimizer_step,
            "lr_step": engine.lr_scheduler.last_epoch, "step": step, "moment_scale": moved,
            "zero": torch.tensor(0.0).item()}


def loss_closeness(got: list[dict], want: list[dict], name: str):
    return closeness([h["loss"] for h in got], [h["loss"] for h in want], name)
