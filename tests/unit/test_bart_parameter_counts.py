"""BART parameter counts on the meta device equal HF BartForConditionalGeneration's for every BART
preset (SPEC.md's figures for base and large; padding excluded; final_logits_bias is an HF buffer,
not a parameter, so neither side counts it)."""

import os

import pytest
import torch

from plmscale.config import PRESETS, load_config
from plmscale.models import build_model, count_parameters
from plmscale.parallel import init_distributed, init_model_parallel

SPEC_COUNTS = {"bart-base": 139_420_416, "bart-large": 406_291_456}
BART_PRESETS = sorted(name for name, fields in PRESETS.items() if fields.get("family") == "bart")


@pytest.fixture(scope="module", autouse=True)
def single_rank():
    from harness import free_port
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    os.environ.update(WORLD_SIZE="1", RANK="0")
    init_distributed()


def test_presets_cover_the_spec():
    assert set(SPEC_COUNTS) < set(BART_PRESETS) and "bart-tiny" in BART_PRESETS


@pytest.mark.parametrize("preset", BART_PRESETS)
def test_count_matches_hf(preset):
    from transformers import BartForConditionalGeneration

    from plmscale.export.bart import hf_config
    cfg = load_config(None, [f"model.preset={preset}"])
    init_model_parallel(cfg)
    with torch.device("meta"):
        ours = build_model(cfg)
        theirs = BartForConditionalGeneration(hf_config(cfg.model))
    hf_count = sum(p.numel() for p in theirs.parameters())
    assert count_parameters(ours, cfg.model) == hf_count
    if preset in SPEC_COUNTS:
        assert hf_count == SPEC_COUNTS[preset]
    # The buffer HF does not count is all it has beyond its parameters.
    assert [name for name, _ in theirs.named_buffers()] == ["final_logits_bias"]
