"""Weighted data mixtures (data.paths), task prefixes and the held-out split, on the real shards.

The mixture's per-source proportions over 10,000 samples pass a chi-square test against the weights
(and fail it against other weights); the stream is the same for DP=1 and DP=2 and from a resume
position; each source reads its own samples in order."""

import math

import numpy as np
import pytest

from plmscale.config import ConfigError, load_config, validate_config
from plmscale.config.mixture import mixture_sources
from plmscale.data import Corpus, micro_batch_loader
from plmscale.data.mixture import BLOCK, Mixture
from plmscale.data.sources import family_sampler, run_samples
from plmscale.data.tokenizer import encode_text

BERT = ["model.preset=bert-tiny", "model.vocab_size=8000", "model.max_position_embeddings=64",
        "data.seq_length=64", "data.num_workers=0"]


def chi_square_p(counts, weights) -> float:
    """Upper-tail p-value of Pearson's statistic; the closed form for an even number of degrees of
    freedom (2m): exp(-x/2) * sum_{k<m} (x/2)^k / k!."""
    counts = np.asarray(counts, dtype=float)
    expected = counts.sum() * np.asarray(weights, dtype=float)
    x = float(((counts - expected) ** 2 / expected).sum())
    dof = len(counts) - 1
    assert dof % 2 == 0, "use an odd number of sources"
    return math.exp(-x / 2) * sum((x / 2) ** k / math.factorial(k) for k in range(dof // 2))


def tagged(source: int):
    return lambda n: {"source": np.array([source]), "n": np.array([n])}


WEIGHTS = [0.2, 0.3, 0.5]


def test_proportions_match_weights_chi_square():
    mixture = Mixture([tagged(s) for s in range(3)], [2, 3, 5], seed=1234)  # normalised to WEIGHTS
    counts = np.bincount([int(mixture(i)["source"][0]) for i in range(10_000)], minlength=3)
    assert chi_square_p(counts, WEIGHTS) > 1e-3, counts
    assert chi_square_p(counts, [0.3, 0.3, 0.4]) < 1e-6, counts  # the test can tell weights apart
    assert (counts == mixture.counts(0, 10_000)).all()


def test_each_source_reads_its_own_stream_in_order_from_any_position():
    mixture = Mixture([tagged(s) for s in range(3)], WEIGHTS, seed=7)
    seen = [mixture(i) for i in range(3000)]
    for s in range(3):
        numbers = [int(x["n"][0]) for x in seen if x["source"][0] == s]
        assert numbers == list(range(len(numbers)))
    fresh = Mixture([tagged(s) for s in range(3)], WEIGHTS, seed=7)  # a resumed run, far in
    for index in (3 * BLOCK + 11, BLOCK - 1, 5):
        source = int(fresh.sources_of([index])[0])
        before = int((fresh.sources_of(np.arange(index)) == source).sum())
        assert fresh.locate(index) == (source, before)


def test_megatron_style_paths_parse_and_bad_ones_are_refused():
    cfg = load_config(None, ["data.paths=0.3 a 0.7 b"])
    assert [(s.weight, s.path) for s in mixture_sources(cfg.data)] == [(0.3, "a"), (0.7, "b")]
    assert cfg.data.path == "a"  # the first source holds the tokenizer the run reads
    cfg = load_config(None, ["data.paths=[1, a, 3, b]", "data.task_prefixes=['x: ', '']"])
    assert [(s.weight, s.prefix) for s in mixture_sources(cfg.data)] == [(0.25, "x: "), (0.75, "")]
    for bad, field in (("data.paths=0.3 a 0.7", "data.paths"), ("data.paths=a 0.3 b 0.7", "weight"),
                       ("data.paths=-1 a 2 b", "data.paths")):
        with pytest.raises(ConfigError, match=field):
            load_config(None, [bad])
    with pytest.raises(ConfigError, match="task_prefixes"):
        load_config(None, ["data.paths=1 a 1 b", "data.task_prefixes=['x']"])
    with pytest.raises(ConfigError, match="t5, bart"):  # BERT has no encoder input to prefix
        validate_config(load_config(None, ["data.paths=1 a 1 b", "data.task_prefixes=['x', '']"]), 1)


def stream(sample, micro_batch: int, dp: int, start: int, count: int) -> list[dict]:
    """Global micro-batches [start, start+count) as DP ranks read them, in global sample order."""
    loaders = [micro_batch_loader(sample, micro_batch, r, dp, start) for r in range(dp)]
    return [next(loaders[r]) for _ in range(count) for r in range(dp)]


def test_stream_is_the_same_for_dp1_dp2_and_after_a_resume(demo_shards, second_source):
    cfg = load_config(None, BERT + [f"data.paths=0.4 {demo_shards} 0.6 {second_source}"])
    sample = run_samples(cfg)[0].sample
    one = stream(sample, 4, 1, 0, 6)  # 6 micro-batches of 4 on one rank
    two = stream(run_samples(cfg)[0].sample, 2, 2, 0, 6)  # 2 ranks x 6 micro-batches of 2
    resumed = stream(run_samples(cfg)[0].sample, 4, 1, 3, 3)  # a fresh process from position 3
    for key in one[0]:
        single = np.concatenate([b[key].numpy() for b in one])
        assert (single == np.concatenate([b[key].numpy() for b in two])).all(), key
        assert (single[12:] == np.concatenate([b[key].numpy() for b in resumed])).all(), key
    mixture = run_samples(cfg)[0].mixture
    assert set(mixture.sources_of(np.arange(24))) == {0, 1}  # both sources are in the stream


def test_held_out_split_is_disjoint_fixed_and_unread_by_training(demo_shards):
    corpus = Corpus(demo_shards, verify=False)
    train, held = corpus.held_out_split(0.05)
    train_docs, held_docs = set(train._ids.tolist()), set(held._ids.tolist())
    assert len(held_docs) == 1 and train_docs | held_docs == set(range(len(corpus)))
    assert not train_docs & held_docs
    assert set(Corpus(demo_shards, verify=False).held_out_split(0.05)[1]._ids.tolist()) == held_docs
    rng = np.random.default_rng(0)
    drawn = {int(train._ids[train.sample_document(rng)]) for _ in range(200)}
    assert drawn <= train_docs


def test_task_prefix_goes_before_the_t5_encoder_input(repo, demo_shards, second_source):
    prefix = "summarize: "
    cfg = load_config(repo / "configs" / "t5_tiny.yaml",
                      [f"data.paths=1 {demo_shards} 1 {second_source}", "data.num_workers=0",
                       f"data.task_prefixes=['{prefix}', '']"])
    validate_config(cfg, 2)  # t5_tiny is a TP=2 layout
    samples = run_samples(cfg)[0]
    ids = encode_text(demo_shards / "tokenizer.model", prefix)
    assert len(ids) >= 2
    plain = family_sampler(cfg, Corpus(second_source), "")(0)
    short = load_config(repo / "configs" / "t5_tiny.yaml",
                        [f"data.seq_length={cfg.data.seq_length - len(ids)}",
                         f"data.decoder_seq_length={len(plain['labels'])}"])
    unprefixed = family_sampler(short, Corpus(demo_shards), "")
    found = {0: 0, 1: 0}
    for index in range(40):
        source, number = samples.mixture.locate(index)
        sample = samples.sample(index)
        found[source] += 1
        assert {k: v.shape for k, v in sample.items()} == {k: v.shape for k, v in plain.items()}
        if source == 0:
            assert (sample["input_ids"][:len(ids)] == ids).all()
            assert (sample["attention_mask"][:len(ids)] == 1).all()
            reference = unprefixed(number)
            assert (sample["input_ids"][len(ids):] == reference["input_ids"]).all()
            assert (sample["labels"] == reference["labels"]).all()
        else:
            assert not (sample["input_ids"][:len(ids)] == ids).all()
    assert found[0] and found[1]


def test_missing_sources_and_evaluation_without_data_are_refused(demo_shards, tmp_path):
    from plmscale.training.preflight import check_inputs
    with pytest.raises(ConfigError, match="data.paths: .* holds no manifest.json"):
        check_inputs(load_config(None, BERT + [f"data.paths=1 {demo_shards} 1 {tmp_path}"]))
    with pytest.raises(ConfigError, match="data.valid_path: .* holds no manifest.json"):
        check_inputs(load_config(None, BERT + [f"data.path={demo_shards}",
                                              f"data.valid_path={tmp_path}"]))
    with pytest.raises(ConfigError, match="set data.valid_path .* or data.valid_fraction"):
        validate_config(load_config(None, ["train.eval_interval=5"]), 1)
