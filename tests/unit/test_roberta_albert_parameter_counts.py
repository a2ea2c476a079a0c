"""RoBERTa and ALBERT preset parameter counts on the meta device equal HF's (RobertaForMaskedLM,
AlbertForPreTraining) and SPEC.md's table; padding excluded."""

import pytest
from meta_counts import meta_counts


SPEC_COUNTS = {"roberta-base": 124_697_433, "roberta-large": 355_412_057,
               "albert-base": 11_813_810, "albert-large": 17_847_474,
               "albert-xlarge": 59_021_490, "albert-xxlarge": 223_158_450}

pytestmark = pytest.mark.usefixtures("single_rank")


def _counts(preset: str, overrides=()):
    counts = meta_counts(preset, overrides)  # HF RobertaForMaskedLM / AlbertForPreTraining
    return counts.ours, counts.hf, counts.model


@pytest.mark.parametrize("preset", sorted(SPEC_COUNTS))
def test_count_matches_spec_and_hf(preset):
    ours, hf, _ = _counts(preset)
    assert ours == hf == SPEC_COUNTS[preset]


def test_roberta_positions_hold_512_tokens_in_514_rows():
    _, _, model = _counts("roberta-base")
    assert model.roberta.embeddings.position_embeddings.num_embeddings == 514
    assert model.roberta.embeddings.token_type_embeddings.num_embeddings == 1


def test_albert_layers_are_one_parameter_set():
    ours, hf, model = _counts("albert-base")
    assert len(model.albert.layer_groups) == 1
    depths = [next(iter(piece.modules)) for piece in model.pieces if piece.layer]
    assert depths == ["albert.layer_groups.0"] * 12  # every depth runs the one layer
    # Unshared (HF num_hidden_groups = num_layers) adds 11 layer sets, on both sides.
    unshared, hf_unshared, _ = _counts("albert-base", ["model.share_layer_parameters=false"])
    layer = sum(p.numel() for p in model.albert.layer_groups[0].parameters())
    assert unshared == hf_unshared == ours + 11 * layer
