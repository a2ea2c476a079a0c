"""BART parameter counts on the meta device equal HF BartForConditionalGeneration's for every BART
preset (SPEC.md's figures for base and large; padding excluded; final_logits_bias is an HF buffer,
not a parameter, so neither side counts it)."""

import pytest
from meta_counts import meta_counts

from plmscale.families import get_family

SPEC_COUNTS = {"bart-base": 139_420_416, "bart-large": 406_291_456}
BART_PRESETS = sorted(get_family("bart").presets)

pytestmark = pytest.mark.usefixtures("single_rank")


def test_presets_cover_the_spec():
    assert set(SPEC_COUNTS) < set(BART_PRESETS) and "bart-tiny" in BART_PRESETS


@pytest.mark.parametrize("preset", BART_PRESETS)
def test_count_matches_hf(preset):
    counts = meta_counts(preset)  # HF BartForConditionalGeneration
    assert counts.ours == counts.hf
    if preset in SPEC_COUNTS:
        assert counts.hf == SPEC_COUNTS[preset]
    # The buffer HF does not count is all it has beyond its parameters.
    assert [name for name, _ in counts.hf_model.named_buffers()] == ["final_logits_bias"]
