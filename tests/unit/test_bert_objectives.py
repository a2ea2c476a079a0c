"""BERT with SpanBERT's span boundary objective and with a masking schedule, end to end on real
shards in one process: samples -> model -> loss -> gradients."""

import numpy as np
import pytest
import torch
from closeness import assert_close

from plmscale.config import load_config
from plmscale.data import Corpus
from plmscale.families import get_family
from plmscale.parallel import init_model_parallel
from plmscale.training.engine import build_initialised_model

pytestmark = pytest.mark.usefixtures("single_rank")


def _batch(samples, indices):
    items = [samples(i) for i in indices]
    return {k: torch.from_numpy(np.stack([x[k] for x in items])) for k in items[0]}


def test_span_boundary_objective_trains_the_sbo_head(demo_shards):
    cfg = load_config(None, ["model.preset=bert-tiny", "model.vocab_size=8000",
                             f"data.path={demo_shards}", "data.seq_length=64",
                             "model.max_position_embeddings=64", "objective.masking=span",
                             "objective.span_boundary_objective=true"])
    init_model_parallel(cfg)
    family = get_family("bert")
    samples = family.samples(Corpus(demo_shards), cfg)
    model = build_initialised_model(cfg)
    out = model(_batch(samples, range(8)))
    assert torch.isfinite(out["loss"]) and out["sbo_loss"] > 0
    assert_close(out["loss"], out["mlm_loss"] + out["nsp_loss"] + out["sbo_loss"], "total loss")
    out["loss"].backward()
    assert model.sbo_head.dense1.weight.grad.abs().sum() > 0


def test_masking_schedule_reaches_the_samples(demo_shards):
    """ERNIE-1.0-style stages: the strategy in force depends on the step of the sample."""
    cfg = load_config(None, ["model.preset=bert-tiny", "model.vocab_size=8000",
                             f"data.path={demo_shards}", "train.micro_batch_size=4",
                             "objective.masking_schedule=token:0,whole_word:10"])
    init_model_parallel(cfg)
    samples = get_family("bert").samples(Corpus(demo_shards), cfg)
    assert samples.masking_strategy(0) == "token"
    assert samples.masking_strategy(4 * 10) == "whole_word"  # step 10 with a global batch of 4
