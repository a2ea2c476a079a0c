"""XLNet and MPNet presets: parameter counts on the meta device equal HF's and SPEC.md's table; the
objectives' statistics over many draws match the original code's (XLNet's ``_sample_mask`` /
``_local_perm``, MPNet's ``make_query_and_content_mask``); XLNet's samples with memory are
consecutive segments of one stream, and its memory fields are validated."""

import numpy as np
import pytest
from meta_counts import meta_counts

from plmscale.objectives.masked_permutation import predicted_count, two_stream_visibility
from plmscale.objectives.permutation import (permutation_mask, sample_prediction_mask,
                                             sample_spans, span_lengths_distribution)

CHI2_4DOF_P001 = 18.47  # chi-square critical value, 4 degrees of freedom, p = 0.001
SPEC_COUNTS = {"xlnet-base": 116_750_336, "xlnet-large": 360_300_800, "mpnet-base": 109_518_527}


@pytest.mark.usefixtures("single_rank")
@pytest.mark.parametrize("preset", sorted(SPEC_COUNTS))
def test_count_matches_spec_and_hf(preset):
    counts = meta_counts(preset)  # HF XLNetLMHeadModel / MPNetForMaskedLM
    assert counts.ours == counts.hf == SPEC_COUNTS[preset]


def _draws(n: int = 2000, length: int = 509, k: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        starts = rng.random(length) < 0.7
        goal = int(round(length / k))
        yield sample_prediction_mask(length, starts, goal, rng, k, 5), starts, goal


def test_partial_prediction_predicts_one_in_k_in_spans():
    predicted = total = 0
    span_counts = np.zeros(6)
    for mask, starts, goal in _draws():
        assert mask.sum() == goal
        predicted += mask.sum()
        total += len(mask)
        # Runs of predicted tokens: each begins on a word start unless the random fill made it.
        edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
        runs = edges[1::2] - edges[::2]
        span_counts[np.minimum(runs, 5)] += 1
    assert abs(predicted / total - 1 / 6) < 0.01
    # Long runs occur as p(n) ~ 1/n says: 5-token runs are about a fifth as common as the spans of
    # one token that the spans alone would give (the random fill adds more single tokens).
    assert span_counts[5] > 0.1 * span_counts[1]
    assert np.isclose(span_lengths_distribution(5)[0] / span_lengths_distribution(5)[4], 5.0)


def test_spans_lengths_follow_one_over_n_and_never_touch():
    rng = np.random.default_rng(1)
    lengths = []
    for _ in range(400):
        starts = rng.random(512) < 0.7
        spans = sample_spans(512, starts, 512, rng, 6, 5)  # a goal the loop never reaches
        assert all(starts[b] for b, _ in spans)
        assert all(e1 < b2 for (_, e1), (b2, _) in zip(spans, spans[1:]))
        lengths += [e - b for b, e in spans]
    observed = np.bincount(lengths, minlength=6)[1:]
    expected = span_lengths_distribution(5) * len(lengths)
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert len(lengths) > 5000 and chi2 < CHI2_4DOF_P001


def test_factorisation_order_is_a_strict_total_order_of_the_targets():
    rng = np.random.default_rng(2)
    length = 40
    functional = np.zeros(length, bool)
    functional[[20, 38, 39]] = True
    for _ in range(300):
        predicted = np.zeros(length, bool)
        predicted[rng.choice(length, 7, replace=False)] = True
        perm = permutation_mask(predicted, functional, rng)
        targets = predicted & ~functional
        sees = ~perm
        n = targets.sum()
        t = np.flatnonzero(targets)
        among = sees[np.ix_(t, t)]
        assert among.sum() == n * (n - 1) // 2  # a strict total order: one direction per pair
        assert not np.diag(among).any()  # no target sees itself
        assert not (among & among.T).any()
        context = ~targets & ~functional
        assert not sees[np.ix_(np.flatnonzero(context), t)].any()  # context never sees targets
        assert sees[:, context].all()  # everybody sees the context


def test_mpnet_predicts_round_015_l_and_every_query_row_sees_l_positions():
    rng = np.random.default_rng(3)
    for length in (20, 64, 512):
        pred = predicted_count(length, 0.15)
        assert pred == round(0.15 * length)
        see = two_stream_visibility(length, pred)
        order = rng.permutation(length)
        positions = np.concatenate([order, order[-pred:], order[-pred:]])
        tokens = np.concatenate([np.ones(length, bool), np.zeros(2 * pred, bool)])  # real or [M]
        assert not see[:, length + pred:].any()  # nobody reads the query stream
        for row in range(length + 2 * pred):
            seen = positions[see[row]]
            assert len(seen) == len(set(seen)) == length  # position compensation: all L, once
        for k, row in enumerate(range(length + pred, length + 2 * pred)):
            own = length - pred + k
            assert not see[row, own]  # a query row never reads its own token...
            assert see[row, length + k]  # ...but sees the [M] at its own position
            # the real predicted tokens it reads are exactly those before it in the order
            assert (np.flatnonzero(see[row] & tokens)[length - pred:] == np.arange(
                length - pred, own)).all()


def test_mpnet_short_sequences_leave_unused_slots_blind():
    see = two_stream_visibility(20, 3, used=2)
    unused = [20 + 2, 20 + 3 + 2]
    assert not see[unused].any() and not see[:, unused].any()
    assert (see[:, :17].all(axis=1)[[i for i in range(26) if i not in unused]]).all()


def test_xlnet_memory_samples_are_consecutive_segments(demo_shards):
    from plmscale.config import ConfigError, load_config, validate_config
    from plmscale.data import Corpus
    from plmscale.families import get_family
    cfg = load_config(None, ["model.preset=xlnet-tiny", "model.vocab_size=8000", "model.mem_len=40",
                             "objective.memory_segments=3", "data.seq_length=32",
                             f"data.path={demo_shards}"])
    corpus = Corpus(demo_shards)
    samples = get_family("xlnet").samples(corpus, cfg)
    packs, pack = [], samples.packer.pack
    samples.packer.pack = lambda rng, start=None: packs.append((start, pack(rng, start))) or packs[-1][1]
    t = corpus.tokens
    for index in range(40):
        packs.clear()
        sample = samples(index)
        assert {v.shape[0] for v in sample.values()} == {3} and sample["input_ids"].shape == (3, 32)
        for seg in range(3):
            ids, length = sample["input_ids"][seg], int(sample["attention_mask"][seg].sum())
            assert list(ids[length - 2:length]) == [t.sep, t.cls]
            start, (content, _, pieces) = packs[seg]
            assert (seg == 0) == (start is None) and ids[0] == content[0]
            if seg:  # the sentence after the previous segment's last one
                doc, sentence, _ = packs[seg - 1][1][2][-1]
                last = sentence == len(corpus.document(doc).sentence_starts) - 1
                assert start == ((samples.packer._next_document(doc), 0) if last
                                 else (doc, sentence + 1)) and pieces[0][:2] == start
                d = corpus.document(start[0])
                first = d.token_ids[d.sentence_starts[start[1]]:][:5]
                assert list(content[:len(first)]) == list(first)
    # mem_len without a second segment to carry it from is refused; other families refuse both.
    with pytest.raises(ConfigError, match="objective.memory_segments"):
        validate_config(load_config(None, ["model.preset=xlnet-tiny", "model.mem_len=8",
                                           "objective.memory_segments=1"]), 1)
    for field in ("model.mem_len=8", "objective.memory_segments=3"):
        with pytest.raises(ConfigError, match="xlnet"):
            validate_config(load_config(None, ["model.preset=bert-tiny", field]), 1)
