"""``train.compile`` (plmscale.training.compile): every transformer layer compiled by Inductor
computes the eager model's loss and gradients (an encoder, a decoder-only and an encoder-decoder
family; dropout 0, the suite's tolerance), keeps the parameter names, is reproducible with dropout
under the same seed, and is refused with tensor parallelism.

Compilation dominates the cost: the shapes are the smallest the bench's tiny configs take, and
Inductor caches its kernels under /tmp (torch's default cache directory), so reruns are faster."""

import dataclasses
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from closeness import assert_close

from plmscale.config import ConfigError, load_config
from plmscale.config.validation import validate_config
from plmscale.families import build_model
from plmscale.parallel import init_model_parallel, initialize_parameters, seed_all
from plmscale.training.compile import compile_layers

# appended, never first: bench/data_prep.py would hide the data_prep package (see
# tests/unit/test_train_step_bench.py)
sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))
_PORT = os.environ.get("MASTER_PORT")
import train_step  # noqa: E402

if _PORT is None:  # the script's fixed port is for its own runs; the fixture picks a free one
    os.environ.pop("MASTER_PORT", None)

pytestmark = pytest.mark.usefixtures("single_rank")

ARGS = SimpleNamespace(size="tiny", attention_backend="sdpa", batch=2, seq=16)


def _models(family: str, **model_fields):
    """(config, batch, eager model, the same weights with compiled layers)."""
    cfg = train_step.config(family, ARGS)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_layers=2, **model_fields))
    init_model_parallel(cfg)
    eager = build_model(cfg)
    initialize_parameters(eager, 0, cfg.model.init_std, cfg.model.vocab_size)
    with torch.no_grad():  # non-zero biases and norms, so a dropped or misplaced tensor shows
        for p in eager.parameters():
            p.add_(0.02 * torch.randn_like(p))
    compiled = build_model(cfg)
    compiled.load_state_dict(eager.state_dict())
    names = list(compiled.state_dict())
    layers = cfg.model.num_layers + (cfg.model.num_decoder_layers or 0)
    assert compile_layers(compiled) == layers
    assert list(compiled.state_dict()) == names  # checkpoints and export see no difference
    batch, _ = train_step.batches(family, cfg, torch.Generator().manual_seed(0))
    return cfg, batch, eager, compiled


def _step(model, batch) -> dict:
    """The metrics and every parameter's gradient of one forward and backward."""
    model.zero_grad(set_to_none=True)
    metrics = model(batch)
    metrics["loss"].backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return {"metrics": {k: v.detach() for k, v in metrics.items()}, "grads": grads}


@pytest.mark.parametrize("family,decoder_layers", [("bert", None), ("gpt", None), ("t5", 1)])
def test_compiled_layers_compute_the_eager_loss_and_gradients(family, decoder_layers):
    extra = {"num_decoder_layers": decoder_layers} if decoder_layers else {}
    _, batch, eager, compiled = _models(family, **extra)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    got = _step(compiled, batch)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs  # it did run compiled
    want = _step(eager, batch)
    assert sorted(got["grads"]) == sorted(want["grads"])
    assert_close(got, want, family)


def test_compiled_dropout_is_reproducible_with_the_same_seed():
    _, batch, _, compiled = _models("bert", hidden_dropout=0.1, attention_dropout=0.1)
    losses = []
    for seed in (7, 7, 8):
        seed_all(seed)
        losses.append(float(compiled(batch)["loss"].detach()))
    assert losses[0] == losses[1]
    assert losses[0] != losses[2]  # dropout is on: another seed draws other masks


def test_compile_with_tensor_parallelism_is_refused():
    base = ["model.preset=bert-tiny", "train.compile=true"]
    with pytest.raises(ConfigError, match=r"train\.compile=true .*tensor_model_parallel_size=2.*"
                                          r"train\.compile=false"):
        validate_config(load_config(None, base + ["parallel.tensor_model_parallel_size=2"]), 2)
    validate_config(load_config(None, base + ["parallel.pipeline_model_parallel_size=2"]), 2)
