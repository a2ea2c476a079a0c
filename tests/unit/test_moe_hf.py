"""The MoE families against their Hugging Face classes on one rank: parameter counts equal HF's on
the meta device (Mixtral 8x7B also the released total); the name map runs both ways exactly
(``plmscale.export.inverse`` and Llama's hand-written inverse); HF computes our logits from the
exported tensors (Mixtral top-2, Qwen2-MoE top-4 with a gated shared expert and a dense layer,
Switch top-1 every other layer, all dropless); settings HF cannot hold are refused by name."""

import pytest
import torch
from closeness import assert_within, closeness
from meta_counts import meta_counts

from plmscale.config import load_config
from plmscale.export import full_tensors
from plmscale.export.inverse import from_hf_state_dict
from plmscale.families import get_family
from plmscale.families.mixtral.presets import MIXTRAL_COUNTS
from plmscale.parallel import init_model_parallel

pytestmark = pytest.mark.usefixtures("single_rank")

SMALL = ["model.vocab_size=1100", "model.max_position_embeddings=64"]
CASES = {
    "mixtral": ["model.preset=mixtral-tiny"],
    "qwen2_moe": ["model.preset=qwen2-moe-tiny", "model.moe_layer_frequency=2"],  # layer 0 dense
    "switch": ["model.preset=switch-tiny", "model.moe_dropless=true", "model.hidden_dropout=0",
               "model.attention_dropout=0"],
}


@pytest.mark.parametrize("preset", ["mixtral-tiny", "mixtral-8x7b", "qwen2-moe-tiny", "switch-tiny",
                                    "switch-base-8"])
def test_count_matches_hf(preset):
    counts = meta_counts(preset)
    assert counts.ours == counts.hf
    assert counts.hf == MIXTRAL_COUNTS.get(preset, counts.hf)


def _inputs(cfg):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(4, cfg.model.vocab_size, (2, 24), generator=g)
    if cfg.model.family == "switch":
        dec = torch.randint(4, cfg.model.vocab_size, (2, 9), generator=g)
        mask = torch.ones_like(ids)
        return ({"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec},) * 2
    return {"input_ids": ids}, {"input_ids": ids}


@pytest.mark.parametrize("family", sorted(CASES))
def test_two_way_map_and_hf_logits(family):
    import transformers

    from plmscale.training.engine import build_initialised_model
    cfg = load_config(None, CASES[family] + SMALL)
    init_model_parallel(cfg)
    fam = get_family(family)
    model = build_initialised_model(cfg).eval()
    full = full_tensors(model, cfg.model.vocab_size)
    hf_state = fam.to_hf_state_dict(full, cfg.model)
    shapes = {name: tuple(t.shape) for name, t in full.items()}
    back = from_hf_state_dict(fam.to_hf_state_dict, hf_state, shapes, cfg.model)
    assert back.keys() == full.keys() and all(torch.equal(back[k], full[k]) for k in full)
    if family != "switch":  # Llama's hand-written inverse handles experts too
        from plmscale.families.llama.hf import from_hf_state_dict as llama_back
        by_hand = llama_back(hf_state, cfg.model)
        assert all(torch.equal(by_hand[k], full[k]) for k in full) and by_hand.keys() == full.keys()
    hf = getattr(transformers, fam.hf_model_class)(fam.hf_config(cfg.model)).eval()
    missing, unexpected = hf.load_state_dict(hf_state, strict=False)
    assert not unexpected and not set(missing) - set(hf.all_tied_weights_keys), (missing, unexpected)
    ours, theirs = _inputs(cfg)
    with torch.no_grad():
        assert_within(closeness(model.logits(**ours), hf(**theirs).logits, f"{family} HF logits"))


@pytest.mark.parametrize("family, overrides, message", [
    ("mixtral", ["model.moe_top_k=1"], r"MixtralForCausalLM needs model.moe_top_k in 2..4"),
    ("mixtral", ["model.moe_layer_frequency=2"], r"needs model.moe_layer_frequency in 1 \(got 2\)"),
    ("qwen2_moe", ["model.moe_shared_experts=0"], r"needs model.moe_shared_experts in 1\.\."),
    ("switch", ["model.moe_layer_frequency=3"], r"moe_layer_frequency in 1 or 2 \(got 3\)"),
    ("switch", ["model.moe_top_k=2"], r"SwitchTransformersForConditionalGeneration needs model.moe_top_k"),
])
def test_settings_hf_cannot_hold_are_refused(family, overrides, message):
    cfg = load_config(None, CASES[family] + SMALL + overrides)
    with pytest.raises(ValueError, match=message):
        get_family(family).hf_config(cfg.model)
