"""Parameter counts on the meta device equal HF's for the SPEC presets (padding excluded)."""

import pytest
import torch

from plmscale.config import load_config
from plmscale.models import build_model, count_parameters
from plmscale.parallel import init_distributed, init_model_parallel

SPEC_COUNTS = {"bert-base": 110_106_428, "bert-large": 336_226_108}


@pytest.fixture(scope="module", autouse=True)
def single_rank(tmp_path_factory):
    import os
    os.environ.update(MASTER_PORT="29611", WORLD_SIZE="1", RANK="0")
    init_distributed()


@pytest.mark.parametrize("preset", sorted(SPEC_COUNTS))
def test_count_matches_spec_and_hf(preset):
    from transformers import BertForPreTraining

    from plmscale.export.bert import hf_config
    cfg = load_config(None, [f"model.preset={preset}"])
    init_model_parallel(cfg)
    with torch.device("meta"):
        ours = build_model(cfg)
        theirs = BertForPreTraining(hf_config(cfg.model))
    hf_count = sum(p.numel() for p in theirs.parameters())
    assert count_parameters(ours, cfg.model) == hf_count == SPEC_COUNTS[preset]
