"""bench/train_step.py builds both sides of every family in its table (one training step each, tiny
width), and for the families whose batch comes from their own sample builder (bench/hf_steps.py)
HF's loss on the HF arguments equals plmscale's loss on the same weights, copied through the
family's export map: the two sides do the same computation."""

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from closeness import assert_within, closeness

from plmscale.export.gather import full_tensors
from plmscale.families import build_model
from plmscale.parallel import init_model_parallel, initialize_parameters

# appended, never first: bench/data_prep.py would hide the data_prep package from every
# process spawned later in this test session (they inherit sys.path)
sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))
_PORT = os.environ.get("MASTER_PORT")
import train_step  # noqa: E402
from hf_steps import HF_STEPS, hf_modules  # noqa: E402

if _PORT is None:  # the script's fixed port is for its own runs; the fixture picks a free one
    os.environ.pop("MASTER_PORT", None)

pytestmark = pytest.mark.usefixtures("single_rank")

ARGS = SimpleNamespace(size="tiny", attention_backend="sdpa", batch=8, seq=32)  # UniLM: a bidirectional sample in each batch


def _tiny(family: str):
    cfg = train_step.config(family, ARGS)
    init_model_parallel(cfg)
    return cfg


def _plmscale(cfg):
    if cfg.model.family == "distilbert":
        return train_step.plmscale_engine(cfg).module  # the student with its teacher attached
    model = build_model(cfg)
    initialize_parameters(model, 0, cfg.model.init_std, cfg.model.vocab_size)
    return model


@pytest.mark.parametrize("family", list(train_step.FAMILIES))
def test_both_sides_build_and_take_a_step(family):
    cfg = _tiny(family)
    ours, hf = train_step.batches(family, cfg, torch.Generator().manual_seed(0))
    model = _plmscale(cfg)
    modules, hf_loss = train_step.hf_reference(family, cfg)
    for side, loss, params in (("plmscale", lambda: model(ours)["loss"], model.parameters()),
                               ("hf", lambda: hf_loss(hf), [p for m in modules for p in m.parameters()])):
        value = loss()
        value.backward()
        grads = [p.grad for p in params if p.grad is not None]
        assert torch.isfinite(value) and value > 0, (family, side, value)
        assert grads and all(torch.isfinite(g).all() for g in grads), (family, side)
        assert any(g.abs().max() > 0 for g in grads), (family, side)


@pytest.mark.parametrize("family", sorted(HF_STEPS))
def test_hf_loss_equals_plmscale_on_the_same_weights(family):
    cfg = _tiny(family)
    ours, hf = train_step.batches(family, cfg, torch.Generator().manual_seed(1))
    model = _plmscale(cfg).train()
    with torch.no_grad():  # non-zero biases and norms, so a dropped or misplaced tensor shows
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    expected = model(ours)["loss"]
    modules = hf_modules(cfg, full_tensors(model, cfg.model.vocab_size))
    got = HF_STEPS[family].loss(modules, hf)
    assert torch.isfinite(expected) and expected > 0
    assert_within(closeness(got.detach(), expected.detach(), f"{family} loss"), family)
