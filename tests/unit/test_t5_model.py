"""T5 building blocks against HF's own (single rank): relative position buckets, RMSNorm, and the whole
model's logits after export for v1.0 and v1.1 (the 2-rank tests repeat this under TP=2)."""

import sys
from pathlib import Path

import pytest
import torch
from closeness import assert_close, assert_within

from plmscale.config import load_config
from plmscale.models.common.norms import RMSNorm
from plmscale.models.common.relative_position import relative_position_bucket

sys.path.insert(0, str(Path(__file__).parents[1] / "parallel"))  # t5_workers: the shared batch + HF check


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("buckets,distance", [(32, 128), (8, 16), (16, 300)])
def test_relative_buckets_match_hf(bidirectional, buckets, distance):
    from transformers.models.t5.modeling_t5 import T5Attention
    relative = torch.arange(-1500, 1500)[None, :] - torch.arange(0, 3)[:, None]
    ours = relative_position_bucket(relative, bidirectional, buckets, distance)
    theirs = T5Attention._relative_position_bucket(relative, bidirectional, buckets, distance)
    assert torch.equal(ours, theirs)
    assert ours.min() >= 0 and ours.max() == buckets - 1


def test_rmsnorm_matches_t5_layer_norm():
    from transformers.models.t5.modeling_t5 import T5LayerNorm
    x = torch.randn(3, 5, 16) * 4 + 1
    ours, theirs = RMSNorm(16, eps=1e-6), T5LayerNorm(16, eps=1e-6)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        theirs.weight.copy_(ours.weight)
    assert_close(ours(x), theirs(x), "RMSNorm")
    assert not torch.allclose(ours(x), torch.nn.functional.layer_norm(x, (16,)) * ours.weight)


@pytest.mark.parametrize("version", ["v1.0", "v1.1"])
def test_logits_match_hf_single_rank(single_rank, version):
    from t5_workers import TINY, V1_1, fixed_batch, hf_logit_diff

    from plmscale.export import full_tensors
    from plmscale.parallel import init_model_parallel, seed_all
    from plmscale.training.engine import build_initialised_model
    cfg = load_config(None, TINY + (V1_1 if version == "v1.1" else []))
    init_model_parallel(cfg)
    seed_all(0)
    model = build_initialised_model(cfg)
    batch = fixed_batch(cfg.model.vocab_size)
    logits = model.logits(batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"],
                          batch["decoder_attention_mask"])
    assert logits.shape == (*batch["labels"].shape, cfg.model.vocab_size)
    assert_within(hf_logit_diff(cfg, full_tensors(model, cfg.model.vocab_size), logits, batch))
    out = model(batch)
    assert set(out) == {"loss", "lm_loss", "lm_accuracy"} and torch.isfinite(out["loss"])
