"""Parameter counts on the meta device equal HF's for the SPEC presets (padding excluded)."""

import pytest
from meta_counts import meta_counts

SPEC_COUNTS = {"bert-base": 110_106_428, "bert-large": 336_226_108,
               # UniLM: HF BertForPreTraining with 6 token types and the cased vocabulary.
               "unilm-base-cased": 108_936_006, "unilm-large-cased": 334_666_054}

pytestmark = pytest.mark.usefixtures("single_rank")


@pytest.mark.parametrize("preset", sorted(SPEC_COUNTS))
def test_count_matches_spec_and_hf(preset):
    counts = meta_counts(preset)  # HF BertForPreTraining (both families)
    assert counts.ours == counts.hf == SPEC_COUNTS[preset]


# GLM: HF GPT2LMHeadModel (max_seq + 1 positions) plus GLM's max_seq + 1 rows of block positions.
GLM_COUNTS = {"glm-base": 109_338_624, "glm-large": 334_688_256, "glm-10b": 9_880_682_496}


@pytest.mark.parametrize("preset", sorted(GLM_COUNTS))
def test_glm_count_matches_spec_and_hf(preset):
    counts = meta_counts(preset)
    block_table = counts.cfg.model.max_position_embeddings * counts.cfg.model.hidden_size
    assert counts.ours == counts.hf + block_table == GLM_COUNTS[preset]
