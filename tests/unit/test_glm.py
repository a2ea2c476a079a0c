"""GLM: blank-infilling statistics over many draws (span lengths against the truncated Poisson(3),
the masked fraction, spans never touching), the layout of Part A and Part B (the text is recovered
from them, 2-D positions), the objective mixture per batch, the attention mask proven by gradients,
logits against HF GPT-2 fed the block positions through ``inputs_embeds``, and blank filling."""

import numpy as np
import pytest
import torch
from chisquare import chi_square
from closeness import assert_within, closeness

from plmscale.config import load_config
from plmscale.data import Corpus
from plmscale.families import get_family
from plmscale.objectives.blank_infilling import (BlankTokens, blank_sample, blank_spans,
                                                 glm_attention_mask, span_length_distribution)
from plmscale.objectives.masking import IGNORE_INDEX
from plmscale.parallel import init_model_parallel
from plmscale.training.engine import build_initialised_model

pytestmark = pytest.mark.usefixtures("single_rank")

TINY = ["model.preset=glm-tiny", "model.vocab_size=8000", "data.seq_length=48",
        "model.max_position_embeddings=49", "train.micro_batch_size=4",
        "objective.objective_weights=blank:0.5,sentence:0.3,document:0.2"]
TOKENS = BlankTokens(cls=1000, mask=1001, start=1002, end=1003, pad=0)


@pytest.fixture(scope="module")
def glm(demo_shards):
    cfg = load_config(None, TINY + [f"data.path={demo_shards}"])
    init_model_parallel(cfg)
    return cfg, get_family("glm").samples(Corpus(demo_shards), cfg)


def test_truncated_poisson_spans_cover_15_percent_and_never_touch():
    p = span_length_distribution(3.0)
    assert p.size == 39 and abs(p @ np.arange(1, 40) - 3.157) < 5e-4 and abs(p[0] - 0.157) < 5e-4
    rng = np.random.default_rng(0)
    lengths, fractions = [], []
    for _ in range(1500):
        # A text longer than the room: n shrinks by exactly 2 per span ([MASK] and [START]).
        n, spans = blank_spans(600, 511, rng)
        assert n + 2 * len(spans) == 511, (n, len(spans))
        starts, ends = np.array(spans).T
        assert (starts[1:] > ends[:-1]).all() and starts[0] >= 0 and ends[-1] <= n  # gaps >= 1
        lengths += list(ends - starts)
        fractions.append((ends - starts).sum() / n)
    assert abs(np.mean(fractions) - 0.15) < 0.01, np.mean(fractions)
    assert abs(np.mean(lengths) - 3.157) < 0.05, np.mean(lengths)
    observed = np.bincount(lengths, minlength=40)[1:]
    bins = list(range(7))  # lengths 1..7, then 8..39 together (expected counts >= 5)
    statistic, critical = chi_square(list(observed[bins]) + [observed[7:].sum()],
                                     list(p[bins]) + [p[7:].sum()])
    assert statistic < critical, statistic


def test_layout_recovers_the_text_with_2d_positions():
    rng = np.random.default_rng(1)
    text = np.arange(10, 70)
    n, spans = blank_spans(len(text), 79, rng)
    sample = blank_sample(text[:n], spans, TOKENS, 80, rng)
    ids, labels = sample["input_ids"], sample["labels"]
    positions, blocks, part_a = sample["position_ids"], sample["block_position_ids"], int(sample["part_a"])
    assert ids[0] == TOKENS.cls and (ids[:part_a] == TOKENS.mask).sum() == len(spans)
    assert (labels[:part_a] == IGNORE_INDEX).all() and (blocks[:part_a] == 0).all()
    assert (positions[:part_a] == np.arange(part_a)).all()
    # Part B: per span [START] + span with block positions 1..len+1 at its mask's position, and
    # targets span + [END]; putting each span back at its mask gives the text.
    filled, k = {}, part_a
    while k < part_a + sum(e - s + 1 for s, e in spans):
        assert ids[k] == TOKENS.start and blocks[k] == 1
        end = k + list(labels[k:]).index(TOKENS.end)
        span = ids[k + 1:end + 1]
        assert (labels[k:end] == span).all() and (blocks[k:end + 1] == np.arange(1, end - k + 2)).all()
        assert (positions[k:end + 1] == positions[k]).all() and ids[positions[k]] == TOKENS.mask
        filled[int(positions[k])] = list(span)
        k = end + 1
    rebuilt = [t for i, t in enumerate(ids[1:part_a], 1) for t in (filled[i] if i in filled else [t])]
    assert rebuilt == list(text[:n])
    assert (ids[k:] == TOKENS.pad).all() and (labels[k:] == IGNORE_INDEX).all()


def test_objectives_per_batch_and_samples(glm):
    cfg, samples = glm
    steps = 3000
    drawn = [samples.objective(step * samples.global_batch_size) for step in range(steps)]
    statistic, critical = chi_square([drawn.count(o) for o in ("blank", "sentence", "document")],
                                     [0.5, 0.3, 0.2])
    assert statistic < critical
    t = samples.tokens
    for step in range(12):
        indices = range(step * samples.global_batch_size, (step + 1) * samples.global_batch_size)
        assert len({samples.objective(i) for i in indices}) == 1  # one objective per batch
        mask = {"blank": t.mask, "sentence": t.smask, "document": t.gmask}[drawn[step]]
        for i in indices:
            sample = samples(i)
            part_a = int(sample["part_a"])
            assert (sample["input_ids"][:part_a] == mask).sum() >= 1
            assert (sample["labels"] != IGNORE_INDEX).sum() >= 2  # a span and its [END]
            if drawn[step] == "document":  # one span, the end of the text
                assert sample["input_ids"][part_a - 1] == t.gmask


def _batch(samples, indices):
    items = [samples(i) for i in indices]
    return {k: torch.from_numpy(np.stack([x[k] for x in items])) for k in items[0]}


def _three_objectives(samples):
    """One sample of each objective (the first sample of steps drawing each)."""
    firsts = {}
    for step in range(50):
        firsts.setdefault(samples.objective(step * samples.global_batch_size),
                          step * samples.global_batch_size)
    return _batch(samples, [firsts[o] for o in ("blank", "sentence", "document")])


def test_gradients_obey_the_mask_and_logits_equal_hf_gpt2(glm):
    import transformers
    cfg, samples = glm
    family = get_family("glm")
    model = build_initialised_model(cfg).eval()
    batch = _three_objectives(samples)
    s = batch["input_ids"].shape[1]
    # Gradients: a Part A row reaches Part A only; a Part B row Part A and Part B up to itself.
    state = model.run(dict(batch), model.pieces[:1])
    inputs = state["hidden"].detach().requires_grad_(True)
    out = model.run({**state, "hidden": inputs}, model.pieces[1:-3])["hidden"]
    readout = torch.randn(out.shape[-1], generator=torch.Generator().manual_seed(0))
    for b in range(3):
        part_a = int(batch["part_a"][b])
        for i in range(0, s, 3):
            (grad,) = torch.autograd.grad(out[b, i] @ readout, inputs, retain_graph=True)
            reached = (grad[b].abs().sum(-1) > 0).numpy()
            want = (np.arange(s) < part_a) | ((np.arange(s) <= i) & (i >= part_a))
            assert (reached == want).all(), (b, i, part_a)
    # HF GPT-2 with 2-D positions: block positions through inputs_embeds, float 4-D mask.
    ours = model.logits(batch["input_ids"], batch["position_ids"], batch["block_position_ids"],
                        batch["part_a"])
    full = {k: v.detach()[:cfg.model.vocab_size] if getattr(v, "vocab_padded", False) else v.detach()
            for k, v in model.named_parameters()}
    hf = transformers.GPT2LMHeadModel(family.hf_config(cfg.model)).eval()
    missing, unexpected = hf.load_state_dict(family.to_hf_state_dict(full, cfg.model), strict=False)
    assert not missing and not unexpected
    from plmscale.families.glm.hf import block_position_tensors
    block_table = block_position_tensors(full, cfg.model)["weight"]
    hidden = glm_attention_mask(batch["part_a"], s)
    additive = torch.zeros(hidden.shape).masked_fill(hidden, torch.finfo(torch.float32).min)
    with torch.no_grad():
        embeds = hf.transformer.wte(batch["input_ids"]) + block_table[batch["block_position_ids"]]
        got = hf(inputs_embeds=embeds, position_ids=batch["position_ids"],
                 attention_mask=additive).logits
    assert_within(closeness(got, ours, "glm logits"), "glm")


def test_fill_blank_writes_a_span(glm):
    """Greedy blank filling: each token is the argmax of the logits of the layout built so far."""
    cfg, samples = glm
    model = build_initialised_model(cfg).eval()
    t = samples.tokens
    part_a = torch.tensor([[t.cls, 40, 41, t.mask, 42, 43]])
    span = model.fill_blank(part_a, 3, t.start, max_new_tokens=4)
    assert span.shape == (1, 4)
    ids = torch.cat([part_a, torch.tensor([[t.start]]), span[:, :3]], 1)
    positions = torch.tensor([[0, 1, 2, 3, 4, 5, 3, 3, 3, 3]])
    blocks = torch.tensor([[0] * 6 + [1, 2, 3, 4]])
    logits = model.logits(ids, positions, blocks, torch.tensor([6]))
    assert (logits[0, 6:].argmax(-1) == span[0]).all()
