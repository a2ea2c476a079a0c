"""Rank functions of the fault-injection tests (module-level so spawned ranks can import them).
Faults are injected into the real run: a forward hook that turns one rank's loss into NaN, a rank
that exits inside the checkpoint commit, files truncated or bit-flipped on disk."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from plmscale.config import load_config
from plmscale.parallel import init_distributed, init_model_parallel, seed_all

TINY = ["model.preset=bert-tiny", "model.vocab_size=8000", "model.max_position_embeddings=64",
        "model.hidden_dropout=0", "model.attention_dropout=0", "data.seq_length=32",
        "data.num_workers=0", "train.micro_batch_size=4", "train.lr=1e-3", "train.warmup_steps=2",
        "train.progress_bar=false", "train.log_interval=1000"]


def config(shards: str, overrides: list[str]):
    cfg = load_config(None, TINY + [f"data.path={shards}"] + overrides)
    init_model_parallel(cfg)
    seed_all(cfg.train.seed)
    return cfg


def flat_state(obj, prefix: str = "") -> dict:
    """Every tensor and number inside ``obj`` (nested dicts, lists) under a path name, copied."""
    if torch.is_tensor(obj):
        return {prefix: obj.detach().clone()}
    if isinstance(obj, dict):
        return {k: v for key, value in obj.items() for k, v in flat_state(value, f"{prefix}/{key}").items()}
    if isinstance(obj, (list, tuple)):
        return {k: v for i, value in enumerate(obj) for k, v in flat_state(value, f"{prefix}/{i}").items()}
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return {prefix: obj}
    return {}


def engine_state(engine) -> dict:
    """This rank's weights (ZeRO-3: its partitions), optimizer state (Adam moments and step
    counts), LR and the engine's step counters."""
    params = {n: (p.ds_tensor if hasattr(p, "ds_tensor") else p).detach().clone()
              for n, p in engine.module.named_parameters()}
    return {**{f"param/{k}": v for k, v in params.items()},
            **flat_state(engine.optimizer.state_dict(), "optimizer"),
            "global_steps": engine.global_steps, "global_samples": engine.global_samples,
            "lr": engine.lr_scheduler.get_last_lr()[0]}


def identical(a: dict, b: dict) -> list[str]:
    """Names whose values differ in any bit (empty: bit-identical)."""
    assert a.keys() == b.keys(), sorted(a.keys() ^ b.keys())[:5]
    return [k for k in a if not (torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k])]


def nan_on_calls(model, rank: int, calls: set[int], factor: float = float("nan")):
    """Multiply the loss on ``rank`` by ``factor`` (NaN: make it NaN) at these forward calls
    (1-based)."""
    seen = {"n": 0}

    def hook(module, args, out):
        seen["n"] += 1
        if dist.get_rank() == rank and seen["n"] in calls:
            return dict(out, loss=out["loss"] * factor)
    model.register_forward_hook(hook)


def _states_of_run(cfg, model) -> tuple[list, list, str | None]:
    """Train; the engine state and metrics after every step, and the stop message if any."""
    from plmscale.training.guards import TrainingStopped
    from plmscale.training.loop import train
    states, history = [], []

    def on_step(engine, step, metrics):
        states.append(engine_state(engine))
        history.append(metrics)
    try:
        train(cfg, model, on_step=on_step)
    except TrainingStopped as stop:
        return states, history, str(stop)
    return states, history, None


def nan_guard_runs(shards: str, save_root: str) -> dict:
    """Per ZeRO stage: NaN on rank 1 at step 3's forward (skipped, run continues), then at the 6th
    and 7th forwards (two in a row = train.max_consecutive_skips: the run stops with a checkpoint).
    Returns what the test checks: differing state names across the skipped step, the history's
    skip flags, whether a later step changed the state, the stop message and the saved tag."""
    from plmscale.training import checkpoint
    from workers_common import initialised_model
    init_distributed()
    results = {}
    for stage in (0, 1, 2, 3):
        save_dir = os.path.join(save_root, f"zero{stage}")
        cfg = config(shards, [f"parallel.zero_stage={stage}", "train.train_steps=10",
                              "train.max_consecutive_skips=2", f"train.save_dir={save_dir}"])
        model = initialised_model(cfg)
        nan_on_calls(model, rank=1, calls={3, 6, 7})
        states, history, stopped = _states_of_run(cfg, model)
        results[stage] = {
            "skip_flags": [h.get("skipped", 0.0) for h in history],
            "changed_by_skip": identical(states[1], states[2]),
            "changed_after": len(identical(states[2], states[3])) > 0,
            "stopped": stopped, "latest": checkpoint.latest_checkpoint(save_dir),
            "final_equals_saved": not identical(states[4], states[-1]),
        }
    # Control: the same NaN without the guard (ZeRO-0) reaches the weights.
    cfg = config(shards, ["parallel.zero_stage=0", "train.train_steps=3",
                          "train.skip_nonfinite=false"])
    model = initialised_model(cfg)
    nan_on_calls(model, rank=1, calls={3})
    states, _, _ = _states_of_run(cfg, model)
    results["control"] = {"changed_by_skip": identical(states[1], states[2])}
    # Spike rule (ZeRO-1): a finite loss 50x the rolling mean of the last 3 steps is skipped too.
    cfg = config(shards, ["parallel.zero_stage=1", "train.train_steps=5", "train.spike_window=3",
                          "train.spike_std_factor=6"])
    model = initialised_model(cfg)
    nan_on_calls(model, rank=0, calls={5}, factor=50.0)
    states, history, _ = _states_of_run(cfg, model)
    results["spike"] = {"skip_flags": [h.get("skipped", 0.0) for h in history],
                        "changed_by_skip": identical(states[3], states[4])}
    results["grad_spike"] = grad_norm_spike_runs(shards)
    return results


def gradient_times(model, rank: int, calls: set[int], factor: float):
    """Multiply the gradient (not the value) of the loss on ``rank`` by ``factor`` at these forward
    calls (1-based): loss + (factor - 1) * (loss - loss.detach())."""
    seen = {"n": 0}

    def hook(module, args, out):
        seen["n"] += 1
        if dist.get_rank() == rank and seen["n"] in calls:
            loss = out["loss"]
            return dict(out, loss=loss + (factor - 1) * (loss - loss.detach()))
    model.register_forward_hook(hook)


def grad_norm_spike_runs(shards: str) -> dict:
    """Per ZeRO stage, with the gradient-norm rule on (window 3, 6 x std): rank 0's gradient x100
    at the 5th step (its loss unchanged). Returns the skip flags, the skip reason, the state names
    changed across that step, the guard's norms against DeepSpeed's own (``get_global_grad_norm``,
    ZeRO-1-3) after the applied steps, and for the control (rule off, ZeRO-1) the changed names."""
    from workers_common import initialised_model

    from plmscale.training.loop import train
    results = {}
    for stage, factor in ((0, 6), (1, 6), (2, 6), (3, 6), ("control", 0)):
        zero = 1 if stage == "control" else stage
        cfg = config(shards, [f"parallel.zero_stage={zero}", "train.train_steps=5",
                              "train.spike_window=3", f"train.grad_norm_spike_std_factor={factor}"])
        model = initialised_model(cfg)
        gradient_times(model, rank=0, calls={5}, factor=100.0)
        states, history, norms, reasons = [], [], [], []

        def on_step(engine, step, metrics):
            states.append(engine_state(engine))
            history.append(metrics)
            guard = engine._take_model_step.__self__
            theirs = engine.get_global_grad_norm()
            norms.append((guard.grad_norm, None if theirs is None else float(theirs)))
            reasons.append(guard.reason)
        train(cfg, model, on_step=on_step)
        results[stage] = {"skip_flags": [h.get("skipped", 0.0) for h in history],
                          "changed_by_skip": identical(states[3], states[4]),
                          "reasons": reasons, "norms": norms}
    return results


def crash_in_commit(shards: str, save_dir: str) -> None:
    """Save at steps 2 and 4; rank 1 dies after writing its step-4 files, before the commit."""
    from plmscale.training import checkpoint
    from plmscale.training.loop import train
    init_distributed()
    commit = checkpoint.commit

    def dying_commit(directory, tag, metadata, cfg):
        if tag == "step4" and dist.get_rank() == 1:
            os._exit(9)
        commit(directory, tag, metadata, cfg)
    checkpoint.commit = dying_commit
    train(config(shards, ["parallel.zero_stage=1", "train.train_steps=6",
                          "train.save_interval=2", f"train.save_dir={save_dir}",
                          "train.collective_timeout_s=60"]))


def _damage(path: str, how: str, where: float = 0.5) -> None:
    """Truncate ``path`` at ``where`` of its length, or flip one bit there."""
    position = min(int(os.path.getsize(path) * where), os.path.getsize(path) - 1)
    if how == "truncate":
        os.truncate(path, position)
    else:
        with open(path, "r+b") as f:
            f.seek(position)
            byte = f.read(1)[0]
            f.seek(-1, 1)
            f.write(bytes([byte ^ 0x10]))


def resume_after_faults(shards: str, save_dir: str, other_shards: str) -> dict:
    """After ``crash_in_commit``: the straight 6 steps; a resume (step4 is incomplete: step2 is
    taken) to 6 with saves at 4 and 6; then step6 truncated and step4 bit-flipped: a strict resume
    fails naming the file, a falling-back one resumes from step2; shards of another tokenizer are
    refused."""
    from plmscale.training import checkpoint
    from plmscale.training.loop import train
    init_distributed()
    layout = ["parallel.zero_stage=1", "train.train_steps=6"]
    straight = [h["loss"] for h in train(config(shards, layout))]
    resumed = train(config(shards, layout + [f"train.load_dir={save_dir}", "train.save_interval=2",
                                             f"train.save_dir={save_dir}"]))
    complete = checkpoint.complete_tags(save_dir)
    damaged = {"step6": os.path.join(save_dir, "step6", "mp_rank_00_model_states.pt"),
               "step4": os.path.join(save_dir, "step4",
                                     "zero_pp_rank_1_mp_rank_00_optim_states.pt")}
    if dist.get_rank() == 0:
        _damage(damaged["step6"], "truncate")
        _damage(damaged["step4"], "flip")
    dist.barrier()
    errors = {}
    for name, extra in (("strict", ["train.resume_fallback=false"]),
                        ("other_tokenizer", [f"data.path={other_shards}"])):
        try:
            train(config(shards, layout + [f"train.load_dir={save_dir}"] + extra))
        except checkpoint.CheckpointError as error:
            errors[name] = str(error)
    fallback = train(config(shards, layout + [f"train.load_dir={save_dir}"]))
    return {"straight": straight, "resumed": [h["loss"] for h in resumed], "complete": complete,
            "damaged": damaged, "errors": errors, "fallback": [h["loss"] for h in fallback]}


FAMILIES = {
    "bert": ["model.preset=bert-tiny", "model.vocab_size=8000"],
    "t5": ["model.preset=t5-tiny", "model.vocab_size=8000"],
    "gpt": ["model.preset=gpt-tiny", "model.vocab_size=8000"],
}


def three_times_three(shards: str, save_root: str) -> dict:
    """Per family at PP=2 with dropout on: 9 straight steps, and 3 + resume 3 + resume 3."""
    from plmscale.training.loop import train
    init_distributed()
    out = {}
    for family, preset in FAMILIES.items():
        common = ["data.seq_length=32", "data.num_workers=0", "train.micro_batch_size=4",
                  "train.gradient_accumulation_steps=2", "train.lr=1e-3", "train.warmup_steps=2",
                  "train.progress_bar=false", "parallel.pipeline_model_parallel_size=2",
                  "parallel.zero_stage=1", f"data.path={shards}"] + preset

        def run(*extra, stop_at=None):
            cfg = load_config(None, common + ["train.train_steps=9", *extra])
            init_model_parallel(cfg)
            seed_all(cfg.train.seed)
            losses = []

            def on_step(engine, step, metrics):
                losses.append(metrics["loss"])
                if step == stop_at:
                    raise Interrupted
            try:
                train(cfg, on_step=on_step)
            except Interrupted:
                pass
            return losses
        saving = [f"train.save_dir={os.path.join(save_root, family)}", "train.save_interval=3",
                  "train.keep_last_n=1"]
        pieces = [run(*saving, stop_at=3)]
        for stop in (6, 9):
            pieces.append(run(*saving, f"train.load_dir={saving[0].split('=')[1]}", stop_at=stop))
        kept = sorted(p for p in os.listdir(os.path.join(save_root, family)) if p.startswith("step"))
        out[family] = {"straight": run(), "pieces": pieces, "kept": kept}
    return out


class Interrupted(Exception):
    """The run is cut off right after a checkpoint (as a crash or preemption would)."""
