"""T5 parameter counts on the meta device equal HF's (and SPEC.md's table for the v1.0 presets)."""

import pytest
import torch

from plmscale.config import load_config
from plmscale.config.presets import PRESETS
from plmscale.models import build_model, count_parameters
from plmscale.parallel import init_distributed, init_model_parallel

SPEC_COUNTS = {"t5-small": 60_506_624, "t5-base": 222_903_552, "t5-large": 737_668_096}
T5_PRESETS = sorted(name for name, fields in PRESETS.items() if fields.get("family") == "t5")


@pytest.fixture(scope="module", autouse=True)
def single_rank():
    import os
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29617", WORLD_SIZE="1", RANK="0")
    init_distributed()


def test_spec_presets_exist():
    assert set(SPEC_COUNTS) <= set(T5_PRESETS)


@pytest.mark.parametrize("preset", T5_PRESETS)
def test_count_matches_hf(preset):
    from transformers import T5ForConditionalGeneration

    from plmscale.export.t5 import hf_config
    cfg = load_config(None, [f"model.preset={preset}"])
    init_model_parallel(cfg)
    with torch.device("meta"):
        ours = build_model(cfg)
        theirs = T5ForConditionalGeneration(hf_config(cfg.model))
    hf_count = sum(p.numel() for p in theirs.parameters())
    if not cfg.model.tie_word_embeddings:
        # transformers 5.x ties T5's lm_head to `shared` even for v1.1 (huggingface/transformers
        # #42815); the v1.1 checkpoints, like our model, hold a separate [vocab, d_model] head.
        assert theirs.lm_head.weight is theirs.shared.weight
        hf_count += cfg.model.vocab_size * cfg.model.hidden_size
    assert count_parameters(ours, cfg.model) == hf_count
    if preset in SPEC_COUNTS:
        assert hf_count == SPEC_COUNTS[preset]
