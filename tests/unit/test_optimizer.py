"""plmscale's optimizer on the CPU is torch's fused AdamW (one kernel over every tensor, several
times faster than the per-tensor loop: bench/RESULTS.md), and it trains as the per-tensor AdamW
does, within fp32 rounding: the same losses and parameters after three steps of a tiny BERT
through the DeepSpeed engine, with weight decay and gradient clipping, at ZeRO-0 and ZeRO-1."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from closeness import adam_movement_atol, assert_close

from plmscale.config import load_config
from plmscale.parallel import init_model_parallel
from plmscale.training.engine import build_engine

# appended, never first: bench/data_prep.py would hide the data_prep package from every
# process spawned later in this test session (they inherit sys.path)
sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))
import train_step  # noqa: E402  (its batch builder)

pytestmark = pytest.mark.usefixtures("single_rank")

STEPS = 3


def _train(zero_stage: int, fused: bool):
    cfg = load_config(None, ["model.preset=bert-tiny", "model.vocab_size=512", "model.hidden_dropout=0",
                             "model.attention_dropout=0", "train.micro_batch_size=4",
                             "data.seq_length=32", f"parallel.zero_stage={zero_stage}",
                             "train.lr=1e-3", "train.warmup_steps=0", "train.weight_decay=0.01",
                             "train.grad_clip=0.5"])
    init_model_parallel(cfg)
    engine, _ = build_engine(cfg)
    adamw = getattr(engine.optimizer, "optimizer", engine.optimizer)  # ZeRO wraps torch's
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["fused"], adamw.defaults
    for group in adamw.param_groups:  # torch reads the switch at every step
        group["fused"] = fused
    batch, _ = train_step.batches("bert", cfg, torch.Generator().manual_seed(0))
    start = {n: p.detach().clone() for n, p in engine.module.named_parameters()}
    losses, lrs = [], []
    for _ in range(STEPS):
        lrs.append(adamw.param_groups[0]["lr"])
        loss = engine(batch)["loss"]
        engine.backward(loss)
        engine.step()
        losses.append(loss.detach())
    end = {n: p.detach().clone() for n, p in engine.module.named_parameters()}
    return torch.stack(losses), start, end, lrs


@pytest.mark.parametrize("zero_stage", [0, 1])
def test_fused_adamw_trains_as_the_per_tensor_loop(zero_stage):
    losses, start, params, lrs = _train(zero_stage, fused=True)
    want_losses, want_start, want_params, _ = _train(zero_stage, fused=False)
    assert all((start[n] - want_start[n]).abs().max() == 0 for n in start)  # the same model
    assert losses[0] == want_losses[0]
    atol = adam_movement_atol(lrs)
    assert_close(losses, want_losses, "losses")
    assert_close(params, want_params, "parameters", atol=atol)
    # Training moved the weights by ~lr per element, 100 times the tolerance: the check can fail.
    assert max((params[n] - start[n]).abs().max() for n in params) > 50 * atol
