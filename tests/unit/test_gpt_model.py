"""GPT on one rank: parameter counts equal HF's for every preset (meta device), causal and
document-boundary masking really hide what they must, GPT-2's depth-scaled init, HF parity."""

import math

import pytest
import torch
from closeness import assert_close
from meta_counts import meta_counts

from plmscale.config import load_config
from plmscale.parallel import init_model_parallel

SPEC_COUNTS = {"gpt2": 124_439_808, "gpt2-medium": 354_823_168, "gpt2-large": 774_030_080,
               "gpt2-xl": 1_557_611_200}
TINY = ["model.preset=gpt-tiny", "model.vocab_size=1100", "model.hidden_dropout=0",
        "model.attention_dropout=0"]

pytestmark = pytest.mark.usefixtures("single_rank")


def tiny_model(overrides=()):
    from plmscale.training.engine import build_initialised_model
    cfg = load_config(None, TINY + list(overrides))
    init_model_parallel(cfg)
    return cfg, build_initialised_model(cfg).eval()


@pytest.mark.parametrize("preset", sorted(SPEC_COUNTS))
def test_count_matches_spec_and_hf(preset):
    counts = meta_counts(preset)  # HF GPT2LMHeadModel: its tied lm_head is counted once
    assert counts.ours == counts.hf == SPEC_COUNTS[preset]


def test_causal_and_document_masks_hide_what_they_must():
    cfg, model = tiny_model()
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, cfg.model.vocab_size, (2, 16), generator=g)
    changed = ids.clone()
    changed[:, 9] = (changed[:, 9] + 1) % cfg.model.vocab_size
    a, b = model.logits(ids), model.logits(changed)
    assert torch.equal(a[:, :9], b[:, :9])  # the past does not see the future
    assert (a[:, 9:] - b[:, 9:]).abs().max() > 1e-4  # ...but the future sees the past
    # Two documents packed in one window: positions 0-6 and 7-15.
    documents = (torch.arange(16) >= 7).long().expand(2, 16)
    early = ids.clone()
    early[:, 2] = (early[:, 2] + 1) % cfg.model.vocab_size
    c, d = model.logits(ids, documents), model.logits(early, documents)
    assert torch.equal(c[:, 7:], d[:, 7:])  # the second document does not see the first
    assert (c[:, 2:7] - d[:, 2:7]).abs().max() > 1e-4
    assert torch.equal(c[:, :7], a[:, :7])  # the first document is unaffected by the mask
    assert (c[:, 7:] - a[:, 7:]).abs().max() > 1e-4


def test_output_projections_use_depth_scaled_init():
    cfg, model = tiny_model(["model.hidden_size=256", "model.ffn_hidden_size=1024"])
    std = cfg.model.init_std
    layer = model.gpt.layers[0]
    scaled = std / math.sqrt(2 * cfg.model.num_layers)
    assert layer.self_attention.linear_proj.weight.std().item() == pytest.approx(scaled, rel=0.05)
    assert layer.mlp.linear_fc2.weight.std().item() == pytest.approx(scaled, rel=0.05)
    assert layer.mlp.linear_fc1.weight.std().item() == pytest.approx(std, rel=0.05)
    assert layer.self_attention.linear_qkv.weight.std().item() == pytest.approx(std, rel=0.05)


def test_loss_logits_and_greedy_decoding_equal_hf():
    from transformers import GPT2LMHeadModel

    from plmscale.export import full_tensors
    from plmscale.families.gpt.hf import hf_config, to_hf_state_dict
    cfg, model = tiny_model()
    hf = GPT2LMHeadModel(hf_config(cfg.model)).eval()
    hf.load_state_dict(to_hf_state_dict(full_tensors(model, cfg.model.vocab_size), cfg.model))
    ids = torch.randint(5, cfg.model.vocab_size, (3, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(input_ids=ids, labels=ids)
        out = model({"input_ids": ids[:, :-1], "labels": ids[:, 1:]})
        assert_close(model.logits(ids), ref.logits, "HF logits")
        assert_close(out["loss"], ref.loss, "HF loss")
        argmax = ref.logits[:, :-1].argmax(-1)
        assert out["lm_accuracy"].item() == pytest.approx((argmax == ids[:, 1:]).float().mean().item())
        ours = model.greedy_generate(ids[:, :6], 8)
        theirs = hf.generate(ids[:, :6], attention_mask=torch.ones_like(ids[:, :6]),
                             max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(ours, theirs[:, 6:])
