"""Llama (the GPT decoder with Llama's switches) on one rank: parameter counts equal HF
``LlamaForCausalLM``'s and the released checkpoints' for every preset (meta device); the two-way
name map is lossless and HF computes our logits from the exported tensors (GQA and untied, and
multi-head with biases and a tied head); the new fields are validated and refused elsewhere."""

import pytest
import torch
from closeness import assert_within, closeness
from meta_counts import meta_counts

from plmscale.config import ConfigError, load_config, validate_config
from plmscale.export import full_tensors
from plmscale.families.llama.hf import from_hf_state_dict, hf_config, to_hf_state_dict
from plmscale.families.llama.presets import LLAMA_COUNTS, PRESETS
from plmscale.parallel import init_model_parallel

LLAMA_PRESETS = sorted(PRESETS)
TINY = ["model.preset=llama-tiny", "model.vocab_size=1100", "model.max_position_embeddings=64"]

pytestmark = pytest.mark.usefixtures("single_rank")


@pytest.mark.parametrize("preset", LLAMA_PRESETS)
def test_count_matches_hf(preset):
    counts = meta_counts(preset)  # HF LlamaForCausalLM
    assert counts.ours == counts.hf
    assert counts.hf == LLAMA_COUNTS.get(preset, counts.hf)


def test_published_presets_exist():
    assert set(LLAMA_COUNTS) <= set(LLAMA_PRESETS) and "llama-tiny" in LLAMA_PRESETS


@pytest.mark.parametrize("overrides", [
    [],  # GQA: 4 query heads in 2 groups, untied head, no biases
    ["model.num_query_groups=null", "model.tie_word_embeddings=true",
     "model.add_bias_linear=true", "model.rotary_base=500000.0"],
    ["model.num_query_groups=1"],  # multi-query
], ids=["gqa-untied", "mha-tied-bias", "mqa"])
def test_two_way_map_and_hf_logits(overrides):
    from transformers import LlamaForCausalLM

    from plmscale.training.engine import build_initialised_model
    cfg = load_config(None, TINY + overrides)
    init_model_parallel(cfg)
    model = build_initialised_model(cfg).eval()
    full = full_tensors(model, cfg.model.vocab_size)
    hf_state = to_hf_state_dict(full, cfg.model)
    back = from_hf_state_dict(hf_state, cfg.model)
    assert back.keys() == full.keys()
    assert all(torch.equal(back[k], full[k]) for k in full)  # lossless both ways
    hf = LlamaForCausalLM(hf_config(cfg.model)).eval()
    missing, unexpected = hf.load_state_dict(hf_state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    ids = torch.randint(0, cfg.model.vocab_size, (2, 24), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert_within(closeness(model.logits(ids), hf(input_ids=ids).logits, "HF logits"))


def test_family_defaults_and_validation():
    m = load_config(None, ["model.family=llama"]).model
    assert (m.normalization, m.activation, m.position_embedding_type, m.add_bias_linear,
            m.tie_word_embeddings) == ("rmsnorm", "swiglu", "rotary", False, False)
    bad = {"model.num_query_groups=3": "does not divide model.num_attention_heads=4; valid values: "
                                       r"\[1, 2, 4\]",
           "model.num_query_groups=1": r"not divisible by tensor_model_parallel_size=2 .*valid "
                                       r"tensor_model_parallel_size values: \[1\]",
           "model.position_embedding_type=absolute": "valid: ",
           "model.kv_channels=33": "rotary.*even head width"}
    for override, message in bad.items():
        cfg = load_config(None, TINY + [override, "parallel.tensor_model_parallel_size=2"])
        with pytest.raises(ConfigError, match=message):
            validate_config(cfg, world_size=2)
    # GPT-2 has no key/value groups or rotary base: refused, naming the family that reads them.
    for field in ("num_query_groups=2", "rotary_base=1000.0"):
        cfg = load_config(None, ["model.preset=gpt-tiny", f"model.{field}"])
        with pytest.raises(ConfigError, match=r"read by: llama, mixtral, qwen2_moe\)"):
            validate_config(cfg, world_size=1)
    with pytest.raises(ValueError, match="HF Llama needs model.normalization='rmsnorm'"):
        hf_config(load_config(None, TINY + ["model.normalization=layernorm"]).model)
