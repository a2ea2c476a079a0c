"""Blocks the per-family rank functions (``*_workers.py``) and their tests share: building a model
for a layout, one forward/backward at TP=2 against TP=1, gathering a trained model, and comparing
named tensors. Module-level, like the workers modules, so spawned ranks can import it."""

from __future__ import annotations

import numpy as np
import torch
from closeness import adam_movement_atol, assert_close, closeness, numerical_zero

from plmscale.export import full_tensors
from plmscale.parallel import init_model_parallel, seed_all
from plmscale.training.engine import build_initialised_model


def max_abs_diff(a: dict, b: dict) -> float:
    """Largest elementwise |a[n] - b[n]| over two dicts of tensors with the same names."""
    assert a.keys() == b.keys(), sorted(a.keys() ^ b.keys())[:10]
    return max((a[n] - b[n]).abs().max().item() for n in a)


def grad_norm(grads: dict) -> float:
    """Global L2 norm of a dict of (gathered) gradients: > 0 shows they are real, not all zero."""
    return sum(g.norm() ** 2 for g in grads.values()).item() ** 0.5


def initialised_model(cfg):
    """The family's initialised model for ``cfg``'s layout. The process groups are set up and the
    seed reset first, so every layout draws the same full weights and the same random streams (e.g.
    ELECTRA's generator samples)."""
    init_model_parallel(cfg)
    seed_all(cfg.train.seed)
    return build_initialised_model(cfg)


def forward_backward(model, cfg, batch: dict, logits_of) -> dict:
    """One forward and backward of ``model`` on ``batch``: its metrics as floats ("out"), the
    gathered gradients ("grads") and parameters ("params"), and ``logits_of(model)`` ("logits")."""
    out = model(batch)
    out["loss"].backward()
    return {"out": {k: float(v) for k, v in out.items()},
            "grads": full_tensors(model, cfg.model.vocab_size, grads=True),
            "params": full_tensors(model, cfg.model.vocab_size),
            "logits": logits_of(model)}


def tp2_and_tp1(cfg, batch: dict, logits_of) -> tuple[dict, dict]:
    """``forward_backward`` of a freshly initialised model at TP=2, then at TP=1 (``cfg`` is left at
    TP=1): the two runs, to compare with ``tp2_vs_tp1``."""
    runs = []
    for tp in (2, 1):
        cfg.parallel.tensor_model_parallel_size = tp
        runs.append(forward_backward(initialised_model(cfg), cfg, batch, logits_of))
    return runs[0], runs[1]


def tp2_vs_tp1(tp2: dict, tp1: dict) -> dict:
    """How far the TP=2 run is from the TP=1 run: the closeness (tests/closeness.py) of the
    metrics ("metrics") and of the gathered gradients ("grads"), the exact largest parameter
    difference ("param_diff": initialisation must not depend on the layout), and the TP=1
    gradients' norm."""
    return {"metrics": closeness(tp2["out"], tp1["out"], "metrics"),
            "grads": closeness(tp2["grads"], tp1["grads"], "grads"),
            "undetected_perturbations": undetected_perturbations(tp2["grads"], tp1["grads"]),
            "param_diff": max_abs_diff(tp2["params"], tp1["params"]),
            "grad_norm": grad_norm(tp1["grads"])}


def undetected_perturbations(got: dict, want: dict, relative: float = 1e-3) -> list[str]:
    """The names of the tensors in ``got`` that, scaled by ``1 + relative`` alone, would still pass
    the suite's tolerance against ``want``: must be none, or the tolerance would hide a real drift
    of that size (issue: a 1e-3 relative error in one TP=2 gradient must fail). Tensors that are
    round-off (below the gradients' ``numerical_zero``) have nothing to perturb and are left out."""
    zero = numerical_zero(want)
    return [name for name, tensor in got.items() if want[name].abs().max() > zero
            and closeness(tensor * (1 + relative), want[name], name, atol=zero).ok]


def whole_model_tensors(model, cfg) -> dict[str, torch.Tensor]:
    """The whole model's parameters under their ordinary names: gathered over TP, and over PP when
    ``cfg`` is a pipeline layout, so any two layouts can be compared."""
    from plmscale.parallel.pipeline import full_pipeline_tensors
    from plmscale.training.engine import uses_pipeline
    gather = full_pipeline_tensors if uses_pipeline(cfg) else full_tensors
    return gather(model, cfg.model.vocab_size)


def gathered_training_run(cfg) -> dict:
    """Train a freshly initialised model of ``cfg`` through ``plmscale.training.loop.train``: the
    per-step losses and learning rates, and the whole model's parameters before ("initial") and
    after ("params")."""
    from plmscale.training.loop import train
    model = initialised_model(cfg)
    initial = whole_model_tensors(model, cfg)
    history = train(cfg, model)
    return {"losses": [h["loss"] for h in history], "lrs": [h["lr"] for h in history],
            "initial": initial,
            "params": whole_model_tensors(model, cfg)}


def held_out_batch(cfg, keys: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
    """Four samples of the family's data from ``cfg.data.path``, from index 10 000 on (beyond what a
    few training steps read), stacked into tensors; only ``keys`` when given."""
    from plmscale.data import Corpus
    from plmscale.families import get_family
    samples = get_family(cfg.model.family).samples(Corpus(cfg.data.path), cfg)
    rows = [samples(10_000 + i) for i in range(4)]
    return {k: torch.from_numpy(np.stack([row[k] for row in rows])) for k in keys or rows[0]}


def restored_from_checkpoint(cfg, directory: str):
    """A fresh model of ``cfg`` loaded from the checkpoint in ``directory`` through DeepSpeed (as a
    resumed run loads it), in eval mode."""
    from plmscale.training import checkpoint
    from plmscale.training.engine import build_engine
    engine, _ = build_engine(cfg)
    checkpoint.load(engine, directory)
    return engine.module.eval()


def assert_trains_as_single_rank(rank: dict, single: dict, layout) -> None:
    """One rank of a parallel layout's ``gathered_training_run`` (or alike) against the single-rank
    run's: the same per-step losses and trained parameters, up to float round-off."""
    assert_close(rank["losses"], single["losses"], f"{layout} losses")
    assert_close(rank["params"], single["params"], f"{layout} params",
                 atol=adam_movement_atol(single["lrs"]))


def load_exported(hf, state: dict) -> None:
    """Load an exported state dict into the HF model ``hf``: every tensor must be used, and only
    HF's ``position_ids`` buffers may be left out."""
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and not [m for m in missing if "position_ids" not in m], (missing, unexpected)
