"""ELMo: parameter counts (SPEC.md's 93,600,848 for the original, the word-input formula, LSTMP
against torch's two-bias LSTM), no label leak in either direction (gradients), validation refusing
TP and PP, and the scalar mix."""

import pytest
import torch

from plmscale.config import ConfigError, load_config, validate_config
from plmscale.families import build_model
from plmscale.families.elmo.embed import ScalarMix
from plmscale.families.elmo.model import (CHARACTERS, MAX_CHARACTERS, ElmoBiLM, LstmpCell,
                                          initialize_elmo)
from plmscale.parallel import init_model_parallel

pytestmark = pytest.mark.usefixtures("single_rank")

CHAR_ENCODER, LSTMS = 18_037_840, 75_563_008


def _meta(overrides):
    cfg = load_config(None, ["model.preset=elmo-original", *overrides])
    init_model_parallel(cfg)
    with torch.device("meta"):
        model = build_model(cfg)
    return cfg, {name: sum(p.numel() for n, p in model.named_parameters() if n.startswith(name))
                 for name in ("token_encoder", "forward_lstm", "backward_lstm", "softmax")}


def test_original_count():
    _, counts = _meta(["model.vocab_size=8000"])
    assert counts["token_encoder"] == CHAR_ENCODER
    assert counts["forward_lstm"] + counts["backward_lstm"] == LSTMS
    assert CHAR_ENCODER + LSTMS == 93_600_848  # SPEC.md: softmax excluded
    # allennlp's character table has one more (padding) row of 16: 93,600,864.
    assert CHAR_ENCODER + LSTMS + 16 == 93_600_864


@pytest.mark.parametrize("tied", [True, False])
def test_word_input_count(tied):
    v = 8000
    _, counts = _meta([f"model.vocab_size={v}", "model.token_encoder=words",
                       f"model.tie_word_embeddings={str(tied).lower()}"])
    assert sum(counts.values()) == v * 512 + LSTMS + v + (0 if tied else v * 512)


def test_lstmp_cell_against_torch_lstm_with_projection():
    """One layer and direction: LSTMP's 18,890,752; torch's LSTM(proj_size) has a second bias."""
    with torch.device("meta"):
        ours = sum(p.numel() for p in LstmpCell(512, 4096, 512).parameters())
        theirs = sum(p.numel() for p in torch.nn.LSTM(512, 4096, proj_size=512).parameters())
    assert ours == 18_890_752 and theirs == 18_907_136 == ours + 4 * 4096


@pytest.fixture(scope="module")
def small_char_model():
    cfg = load_config(None, ["model.preset=elmo-original", "model.vocab_size=50",
                             "model.hidden_size=8", "model.ffn_hidden_size=16",
                             "model.char_cnn_filters=1:4,2:4,3:8", "model.hidden_dropout=0"])
    init_model_parallel(cfg)
    torch.manual_seed(0)
    model = ElmoBiLM(cfg.model).double()
    initialize_elmo(model, cfg)
    return model


def test_no_label_leak(small_char_model):
    """The forward LM's states at t depend on tokens <= t only, the backward LM's on tokens >= t
    only (within each sequence's length: padding is never read); both layers, every t."""
    model = small_char_model
    s, length = 7, torch.tensor([7, 5])
    g = torch.Generator().manual_seed(1)
    batch = {"char_ids": torch.randint(0, CHARACTERS, (2, s, MAX_CHARACTERS), generator=g),
             "input_ids": torch.randint(0, 50, (2, s), generator=g),
             "attention_mask": (torch.arange(s)[None] < length[:, None]).long()}
    state = model.run(batch, model.pieces[:1])
    tokens = state["tokens"].detach().requires_grad_(True)
    state = model.run({**state, "tokens": tokens}, model.pieces[1:2])
    for direction in ("forward", "backward"):
        for layer in state[f"{direction}_layers"]:
            for row in range(2):
                n = int(length[row])
                for t in range(n):
                    grad, = torch.autograd.grad(layer[row, t].sum(), tokens, retain_graph=True)
                    reads = grad[row].abs().sum(-1) > 0
                    expected = torch.zeros(s, dtype=torch.bool)
                    if direction == "forward":
                        expected[:t + 1] = True
                    else:
                        expected[t:n] = True
                    assert torch.equal(reads, expected), (direction, row, t, reads)
                    assert grad[1 - row].abs().sum() == 0  # nor other sequences


def test_tensor_and_pipeline_parallel_are_refused():
    for parallel in (["parallel.tensor_model_parallel_size=2"],
                     ["parallel.pipeline_model_parallel_size=2"]):
        cfg = load_config(None, ["model.preset=elmo-words-tiny", *parallel])
        with pytest.raises(ConfigError, match="data parallel with ZeRO only.*no tensor-parallel "
                                              "form.*not pipeline layers"):
            validate_config(cfg, world_size=2)
    validate_config(load_config(None, ["model.preset=elmo-words-tiny", "parallel.zero_stage=2"]),
                    world_size=2)


def test_scalar_mix():
    layers = torch.randn(3, 2, 4, 6)
    mix = ScalarMix(3)
    assert torch.allclose(mix(layers), layers.mean(0))  # w = 0, gamma = 1: the mean
    with torch.no_grad():
        mix.weights.copy_(torch.tensor([0.0, 1.0, 2.0]))
        mix.gamma.fill_(0.5)
    w = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0)
    assert torch.allclose(mix(layers), 0.5 * (w[:, None, None, None] * layers).sum(0))
