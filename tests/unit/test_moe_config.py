"""Mixture-of-experts settings: refused before anything is built when they cannot work (ZeRO-3, an
expert-parallel size that does not fit, a family without MoE layers), and the total and active
parameter counts that ``--dry-run`` prints."""

import pytest
import torch

from plmscale.config import ConfigError, load_config, validate_config
from plmscale.families import build_model, count_parameters
from plmscale.parallel import init_model_parallel

MOE = ["model.preset=gpt-tiny", "model.vocab_size=1000", "model.num_experts=4"]
# 48 tokens per rank's micro-batch, TP 2: DeepSpeed splits each expert's capacity over the TP ranks.
CAPACITY = ["parallel.tensor_model_parallel_size=2", "train.micro_batch_size=2", "data.seq_length=24"]


@pytest.mark.parametrize("overrides, world, fragment", [
    (["parallel.zero_stage=3"], 2, r"zero_stage=3 cannot be combined .* set parallel.zero_stage to 0, 1 or 2"),
    (["model.expert_model_parallel_size=3"], 4, r"expert_model_parallel_size=3 must divide .*valid values: \[1, 2, 4\]"),
    (["model.expert_model_parallel_size=4"], 2, r"data-parallel size 2 .*valid values: \[1, 2\]"),
    (["model.expert_model_parallel_size=2", "parallel.tensor_model_parallel_size=2"], 2,
     r"valid values: \[1\]"),
    (["model.moe_top_k=5"], 1, r"moe_top_k=5 must be in 1..model.num_experts=4"),
    (["model.num_experts=0", "model.expert_model_parallel_size=2"], 2, r"needs experts"),
    (["model.moe_expert_bias_rate=-0.001"], 1, r"moe_expert_bias_rate=-0.001 must be >= 0"),
    (CAPACITY + ["model.moe_capacity_factor=1.25"], 2,
     r"the decoder experts' capacity ceil\(moe_top_k 1 x 1.25 x 48 tokens .*\) = 15 is not divisible "
     r"by parallel.tensor_model_parallel_size=2 .*set model.moe_capacity_factor=1.2917 \(capacity "
     r"16\) or model.moe_dropless=true"),
])
def test_impossible_moe_settings_are_refused_naming_valid_values(overrides, world, fragment):
    with pytest.raises(ConfigError, match=fragment):
        validate_config(load_config(None, MOE + overrides), world)


def test_the_suggested_capacity_factor_and_dropless_pass():
    for extra in (["model.moe_capacity_factor=1.2917"], ["model.moe_capacity_factor=1.25",
                                                         "model.moe_dropless=true"]):
        validate_config(load_config(None, MOE + CAPACITY + extra), 2)


def test_families_without_moe_layers_refuse_the_fields():
    cfg = load_config(None, ["model.preset=bart-tiny", "model.num_experts=4"])
    with pytest.raises(ConfigError, match=r"num_experts=4 \(read by: bert, gpt, mixtral, qwen2_moe, roberta, switch, t5\)"):
        validate_config(cfg, 1)


@pytest.mark.usefixtures("single_rank")
@pytest.mark.parametrize("ep", [1, 2])
def test_total_and_active_parameters(ep):
    """Total = dense model + (E - 1) more experts + a router per layer; active (top-2) = dense + one
    more expert + routers: by hand from the dense GPT, whatever the expert-parallel size."""
    dense_cfg = load_config(None, MOE + ["model.num_experts=0"])
    cfg = load_config(None, MOE + ["model.moe_top_k=2", f"model.expert_model_parallel_size={ep}"])
    init_model_parallel(cfg)
    with torch.device("meta"):
        dense, moe = build_model(dense_cfg), build_model(cfg)
    h, f, layers = 128, 512, 2  # gpt-tiny
    expert = h * f + f + f * h + h
    router = h * 4
    base = count_parameters(dense, dense_cfg.model)
    assert count_parameters(moe, cfg.model) == base + layers * (3 * expert + router)
    assert count_parameters(moe, cfg.model, active=True) == base + layers * (expert + router)
