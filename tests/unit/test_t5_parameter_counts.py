"""T5 parameter counts on the meta device equal HF's (and SPEC.md's table for the v1.0 presets)."""

import pytest
from meta_counts import meta_counts

from plmscale.families import get_family

SPEC_COUNTS = {"t5-small": 60_506_624, "t5-base": 222_903_552, "t5-large": 737_668_096}
T5_PRESETS = sorted(get_family("t5").presets)

pytestmark = pytest.mark.usefixtures("single_rank")


def test_spec_presets_exist():
    assert set(SPEC_COUNTS) <= set(T5_PRESETS)


@pytest.mark.parametrize("preset", T5_PRESETS)
def test_count_matches_hf(preset):
    counts = meta_counts(preset)  # HF T5ForConditionalGeneration
    cfg, theirs, hf_count = counts.cfg, counts.hf_model, counts.hf
    if not cfg.model.tie_word_embeddings:
        # transformers 5.x ties T5's lm_head to `shared` even for v1.1 (huggingface/transformers
        # #42815); the v1.1 checkpoints, like our model, hold a separate [vocab, d_model] head.
        assert theirs.lm_head.weight is theirs.shared.weight
        hf_count += cfg.model.vocab_size * cfg.model.hidden_size
    assert counts.ours == hf_count
    if preset in SPEC_COUNTS:
        assert hf_count == SPEC_COUNTS[preset]
