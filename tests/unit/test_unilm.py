"""UniLM: the objective mixture and masking statistics over many draws, the attention masks proven
by gradients (output i depends on input j only where the sample's objective allows), and the model's
logits against HF ``BertForPreTraining`` given each mask as a float additive 4-D mask."""

import numpy as np
import pytest
import torch
from chisquare import chi_square
from closeness import assert_within, closeness

from plmscale.config import load_config
from plmscale.data import Corpus
from plmscale.families import get_family
from plmscale.objectives.masking_strategies import mixed_ngram_selection
from plmscale.objectives.unified_lm import MASK_KINDS, parse_weights, unilm_attention_mask
from plmscale.parallel import init_model_parallel
from plmscale.training.engine import build_initialised_model

pytestmark = pytest.mark.usefixtures("single_rank")

KINDS = list(MASK_KINDS)
PAPER = {"bidirectional": 1 / 3, "seq2seq": 1 / 3, "left_to_right": 1 / 6, "right_to_left": 1 / 6}
TINY = ["model.preset=unilm-tiny", "model.vocab_size=8000", "data.seq_length=32",
        "model.max_position_embeddings=32", "model.hidden_dropout=0", "model.attention_dropout=0",
        "objective.mlm_probability=0.15"]


@pytest.fixture(scope="module")
def unilm(demo_shards):
    cfg = load_config(None, TINY + [f"data.path={demo_shards}"])
    init_model_parallel(cfg)
    return cfg, get_family("unilm").samples(Corpus(demo_shards), cfg)


def _batch(items):
    return {k: torch.from_numpy(np.stack([x[k] for x in items])) for k in items[0]}


def allowed(types: np.ndarray, real: int) -> np.ndarray:
    """The paper's visibility, written out per objective: [s, s], True where row i may use j."""
    s = types.size
    out = np.zeros((s, s), dtype=bool)
    for i in range(real):
        for j in range(real):
            kind = types[0]
            if kind in (0, 1):
                out[i, j] = True
            elif kind == 2:
                out[i, j] = j <= i
            elif kind == 3:
                out[i, j] = j >= i
            else:  # seq2seq: the whole source; the target up to itself
                out[i, j] = types[j] == 4 or (types[i] == 5 and j <= i)
    return out


def test_mask_kinds_follow_the_paper_and_lay_out_the_samples(unilm):
    _, samples = unilm
    n = 6000
    drawn = [samples.kind(i) for i in range(n)]
    statistic, critical = chi_square([drawn.count(k) for k in KINDS], [PAPER[k] for k in KINDS])
    assert statistic < critical, (statistic, {k: drawn.count(k) / n for k in KINDS})
    for i in range(120):  # the samples carry their objective in the token types
        sample, kind = samples(i), drawn[i]
        real = int(sample["attention_mask"].sum())
        first, second = MASK_KINDS[kind]
        types = sample["token_type_ids"][:real]
        assert types[0] == first and set(types) <= {first, second}, (kind, types)
        assert (sample["next_sentence_label"] in (0, 1)) == (kind == "bidirectional")
        if kind == "seq2seq":
            assert second in types  # a target to generate
    with pytest.raises(ValueError, match="objective_weights.*unknown objective 'causal'"):
        parse_weights("causal:1", KINDS)


def test_masking_units_and_rate_over_many_draws():
    """15% of the eligible tokens; units of 1 token 80%, 2 and 3 tokens 10% each; never across a
    special token."""
    rng = np.random.default_rng(0)
    eligible = np.ones(128, dtype=bool)
    eligible[[0, 60, 127]] = False  # [CLS], [SEP], [SEP]
    lengths, masked = [], 0
    for _ in range(3000):
        selection = mixed_ngram_selection(eligible, rng, 0.15, 0.2, 3)
        lengths += list(selection.units[:, 1] - selection.units[:, 0])
        masked += selection.positions.size
        assert eligible[selection.positions].all()
        assert np.unique(selection.positions).size == selection.positions.size
    rate = masked / (3000 * eligible.sum())
    assert abs(rate - 0.15) < 0.003, rate
    statistic, critical = chi_square(np.bincount(lengths, minlength=4)[1:], [0.8, 0.1, 0.1])
    assert statistic < critical, np.bincount(lengths) / len(lengths)


def test_masks_match_the_objectives_and_gradients_obey_them(unilm):
    """One sample of each objective (with padding): the model's mask equals the paper's visibility,
    and the gradient of every output row reaches exactly the inputs that visibility allows (through
    both layers: each visibility is transitively closed)."""
    cfg, samples = unilm
    picked = {}
    for i in range(200):
        picked.setdefault(samples.kind(i), samples(i))
    items = [picked[k] for k in KINDS]
    for item in items:  # padding in every sample: the padded rows and columns are checked too
        item["attention_mask"][-4:] = 0
    batch = _batch(items)
    mask = unilm_attention_mask(batch["token_type_ids"], batch["attention_mask"])
    model = build_initialised_model(cfg).eval()
    state = model.run({k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")},
                      model.pieces[:1])
    inputs = state["hidden"].detach().requires_grad_(True)
    out = model.run({**state, "hidden": inputs}, model.pieces[1:-2])["hidden"]
    s = out.shape[1]
    # A random read-out: the plain sum of a LayerNorm output is constant (zero gradient).
    readout = torch.randn(out.shape[-1], generator=torch.Generator().manual_seed(0))
    for b, (kind, item) in enumerate(zip(KINDS, items)):
        real = int(item["attention_mask"].sum())
        want = allowed(item["token_type_ids"], real)
        assert (~mask[b, 0, :real, :real].numpy() == want[:real, :real]).all(), kind
        for i in range(real):
            (grad,) = torch.autograd.grad(out[b, i] @ readout, inputs, retain_graph=True)
            reached = grad[b].abs().sum(-1) > 0
            assert (reached[:real].numpy() == want[i, :real]).all(), (kind, i)
            assert not reached[real:].any(), (kind, i)  # padding never reaches a real row
            assert grad[torch.arange(4) != b].abs().sum() == 0  # nor other samples
        assert want[:real, :real].sum() < real * real or kind == "bidirectional"
    assert s == cfg.data.seq_length


def test_logits_equal_hf_under_each_mask(unilm):
    """HF BertForPreTraining with 6 token types, given each sample's mask as a float additive
    [b, 1, s, s] mask (transformers 5 raises on 3-D masks and ignores boolean 4-D ones in eager
    attention), returns our logits."""
    import transformers
    cfg, samples = unilm
    family = get_family("unilm")
    model = build_initialised_model(cfg).eval()
    picked = {}
    for i in range(200):
        picked.setdefault(samples.kind(i), samples(i))
    batch = _batch([picked[k] for k in KINDS])
    mlm, nsp = model.logits(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    full = {k: v.detach()[:cfg.model.vocab_size] if getattr(v, "vocab_padded", False) else v.detach()
            for k, v in model.named_parameters()}
    hf = transformers.BertForPreTraining(family.hf_config(cfg.model)).eval()
    missing, unexpected = hf.load_state_dict(family.to_hf_state_dict(full, cfg.model), strict=False)
    assert not unexpected and all(m.endswith(("position_ids", "token_type_ids")) for m in missing)
    hidden = unilm_attention_mask(batch["token_type_ids"], batch["attention_mask"])
    additive = torch.zeros(hidden.shape).masked_fill(hidden, torch.finfo(torch.float32).min)
    with torch.no_grad():
        got = hf(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                 attention_mask=additive)
    real = batch["attention_mask"].bool()
    assert_within(closeness(got.prediction_logits[real], mlm[real], "mlm logits"), "unilm")
    assert_within(closeness(got.seq_relationship_logits, nsp, "nsp logits"), "unilm")
    # The masks matter: HF without them (all bidirectional) differs on every non-bidirectional row.
    with torch.no_grad():
        plain = hf(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                   attention_mask=batch["attention_mask"]).prediction_logits
    assert (plain[1:][real[1:]] - mlm[1:][real[1:]]).abs().max() > 1e-3
