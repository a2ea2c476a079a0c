"""Parameter counts on the meta device equal HF's for the SPEC presets (padding excluded)."""

import pytest
from meta_counts import meta_counts

SPEC_COUNTS = {"bert-base": 110_106_428, "bert-large": 336_226_108}

pytestmark = pytest.mark.usefixtures("single_rank")


@pytest.mark.parametrize("preset", sorted(SPEC_COUNTS))
def test_count_matches_spec_and_hf(preset):
    counts = meta_counts(preset)  # HF BertForPreTraining
    assert counts.ours == counts.hf == SPEC_COUNTS[preset]
