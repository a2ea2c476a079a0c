"""ERNIE 2.0: parameter counts against HF ``ErnieForPreTraining`` (with and without task ids), HF
logits after the state-dict mapping, every task's labels on the demo shards against their
construction (sentence-reordering and sentence-distance class frequencies, capitalisation against
the decoded text), the task schedule's mixture over steps (chi-square), and bad task settings."""

import math

import numpy as np
import pytest
import sentencepiece as spm
import torch
import transformers
from closeness import assert_within, closeness
from meta_counts import meta_counts

from plmscale.config import DataConfig, ObjectiveConfig, load_config
from plmscale.data import Corpus
from plmscale.families import build_model, count_parameters
from plmscale.families.ernie.samples import ErnieSamples
from plmscale.objectives.ernie_tasks import (TASK_TYPES, permutation_rank, reorder_classes,
                                             token_document_labels)
from plmscale.objectives.masking import IGNORE_INDEX
from plmscale.parallel import init_model_parallel
from plmscale.parallel.initialization import initialize_parameters

pytestmark = pytest.mark.usefixtures("single_rank")

# Chi-square critical values at significance 0.001 by degrees of freedom (standard tables).
CHI2_P001 = {1: 10.828, 2: 13.816, 8: 26.124}


def pearson(observed: np.ndarray, probabilities: np.ndarray) -> float:
    """Pearson's statistic of counts against the probabilities (no parameter estimated)."""
    expected = probabilities * observed.sum()
    return float(((observed - expected) ** 2 / expected).sum())


# -- counts and HF parity --------------------------------------------------------------------
@pytest.mark.parametrize("task_types, spec_count", [(3, 110_108_732), (0, 110_106_428)])
def test_counts_equal_hf_ernie_for_pretraining(task_types, spec_count):
    counts = meta_counts("ernie-2.0-base", [f"model.task_type_vocab_size={task_types}"])
    assert counts.hf == spec_count
    h = counts.cfg.model.hidden_size
    hf_part = count_parameters(counts.model, counts.cfg.model, ("ernie.", "pooler.", "lm_head."))
    # HF's two-way seq_relationship head is two of the sentence-distance head's three rows.
    assert hf_part + 2 * (h + 1) == spec_count
    heads = {"capitalization": 2, "token_document": 2, "sentence_reordering": reorder_classes(3),
             "sentence_distance": 3}
    assert counts.ours == hf_part + sum(n * (h + 1) for n in heads.values())


@pytest.fixture(scope="module")
def tiny_config():
    cfg = load_config(None, ["model.preset=ernie-2.0-tiny", "model.vocab_size=300",
                             "model.hidden_dropout=0", "model.attention_dropout=0"])
    init_model_parallel(cfg)
    return cfg


def test_hf_logits_with_task_ids_equal_plmscale(tiny_config):
    from plmscale.families.ernie.hf import hf_config, to_hf_state_dict
    cfg = tiny_config
    model = build_model(cfg).eval()
    initialize_parameters(model, 7, 0.02, cfg.model.vocab_size)
    with torch.no_grad():  # non-zero biases and task rows, so a dropped tensor shows
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    hf = transformers.ErnieForPreTraining(hf_config(cfg.model)).eval()
    full = {k: v[:cfg.model.vocab_size] if k.endswith("word_embeddings.weight") else v
            for k, v in model.state_dict().items()}
    full["lm_head.logits.bias"] = full["lm_head.logits.bias"][:cfg.model.vocab_size]
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(full, cfg.model), strict=False)
    assert not unexpected and all("position_ids" in m for m in missing), (missing, unexpected)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, cfg.model.vocab_size, (2, 12), generator=g)
    types = torch.randint(0, 2, (2, 12), generator=g)
    tasks = torch.tensor([[1] * 12, [2] * 12])
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mlm, pair = model.logits(ids, types, mask, tasks)
    with torch.no_grad():
        out = hf(input_ids=ids, token_type_ids=types, attention_mask=mask, task_type_ids=tasks)
    assert_within(closeness(out.prediction_logits[mask.bool()], mlm[mask.bool()], "mlm"), "mlm")
    assert_within(closeness(out.seq_relationship_logits, pair, "pair"), "pair")
    # The task rows are used: other task ids give other logits.
    assert not torch.allclose(model.logits(ids, types, mask, torch.zeros_like(tasks))[0], mlm)


# -- labels on the demo shards ---------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(demo_shards):
    return Corpus(demo_shards)


def task_samples(corpus, task: str, count: int, **objective) -> list[dict]:
    objective = ObjectiveConfig(task_schedule=f"{task}:0", **objective)
    samples = ErnieSamples(corpus, corpus.tokens, DataConfig(seq_length=64), objective, seed=5,
                           global_batch_size=8)
    return [samples(i) for i in range(count)]


def test_sentence_reordering_classes_follow_construction(corpus):
    """n segments uniform in 1..m, each order equally likely: class k of n segments has
    probability 1/m * 1/n!."""
    drawn = task_samples(corpus, "sentence_reordering", 900)
    labels = np.array([s["sentence_reordering_label"] for s in drawn])
    probabilities = np.array([1 / 3 / math.factorial(n) for n in (1, 2, 3)
                              for _ in range(math.factorial(n))])
    observed = np.bincount(labels, minlength=9)
    assert observed.size == 9 and pearson(observed, probabilities) < CHI2_P001[8]
    for s in drawn[:50]:  # the input holds n segments between [SEP]s, n read off the class
        label = int(s["sentence_reordering_label"])
        n = next(n for n in (1, 2, 3) if label < reorder_classes(n))
        assert (s["input_ids"] == corpus.tokens.sep).sum() == n
        assert (s["task_type_ids"] == TASK_TYPES["sentence_reordering"]).all()
        assert (s["sentence_distance_label"] == IGNORE_INDEX)


def test_permutation_rank_is_a_bijection():
    from itertools import permutations
    assert sorted(permutation_rank(p) for p in permutations(range(4))) == list(range(24))
    assert permutation_rank([0, 1, 2]) == 0 and permutation_rank([2, 1, 0]) == 5


def test_sentence_distance_classes_in_configured_proportions(corpus):
    drawn = task_samples(corpus, "sentence_distance", 600, sentence_distance_weights="1,2,1")
    observed = np.bincount([int(s["sentence_distance_label"]) for s in drawn], minlength=3)
    assert observed.size == 3 and pearson(observed, np.array([0.25, 0.5, 0.25])) < CHI2_P001[2]
    for s in drawn[:20]:  # A and B as BERT's pair: token types 0 then 1
        types = s["token_type_ids"][s["attention_mask"] == 1]
        assert types[0] == 0 and types[-1] == 1 and (np.diff(types) >= 0).all()


def test_capitalization_labels_equal_the_text(corpus):
    sp = spm.SentencePieceProcessor(model_file=str(corpus.shards.tokenizer_path))
    checked = positives = 0
    for s in task_samples(corpus, "capitalization", 40):
        original = np.where(s["mlm_labels"] != IGNORE_INDEX, s["mlm_labels"], s["input_ids"])
        labels = s["capitalization_labels"]
        starts = np.flatnonzero(labels != IGNORE_INDEX)
        for a, b in zip(starts, np.append(starts[1:], len(labels))):
            word = sp.decode([int(i) for i in original[a:b] if i not in corpus.tokens.special_ids])
            word = word.strip()
            assert labels[a] == int(word[:1].isupper()), word
            checked += 1
            positives += labels[a]
        assert (s["token_document_labels"] == IGNORE_INDEX).all()
    assert checked > 500 and 0 < positives < checked


def test_token_document_labels():
    ids = np.array([2, 10, 11, 12, 3])
    eligible = np.array([False, True, True, True, False])
    assert token_document_labels(ids, eligible, np.array([11, 40, 12])).tolist() == \
        [IGNORE_INDEX, 0, 1, 1, IGNORE_INDEX]


# -- the task schedule -----------------------------------------------------------------------
def test_task_proportions_over_steps_match_the_weights(corpus):
    """Tasks join at their start steps and stay; each step range's draws fit its normalised
    weights (chi-square), and the task type of a sample is its task's."""
    objective = ObjectiveConfig(task_schedule="masking:0,capitalization:10:2,sentence_distance:20")
    samples = ErnieSamples(corpus, corpus.tokens, DataConfig(seq_length=64), objective, seed=5,
                           global_batch_size=100)
    names = ["masking", "capitalization", "sentence_distance"]
    for steps, weights in [((0, 10), [1, 0, 0]), ((10, 20), [1, 2, 0]), ((20, 30), [1, 2, 1])]:
        drawn = [samples.task(i) for i in range(steps[0] * 100, steps[1] * 100)]
        observed = np.array([drawn.count(n) for n in names])
        active = np.array(weights) > 0
        assert (observed[~active] == 0).all()
        p = np.array(weights, dtype=float)[active] / sum(weights)
        if active.sum() > 1:
            assert pearson(observed[active], p) < CHI2_P001[int(active.sum()) - 1], steps
    assert samples(2500)["task_type_ids"][0] == TASK_TYPES[samples.task(2500)]


@pytest.mark.parametrize("field, value, message", [
    ("task_schedule", "masking:0,nsp:5", "unknown objective 'nsp'"),
    ("task_schedule", "capitalization:3", "must start at step 0"),
    ("sentence_distance_weights", "1,1", "three non-negative numbers"),
    ("sentence_reorder_max_segments", 0, "must be >= 1"),
])
def test_bad_task_settings_name_the_field(corpus, field, value, message):
    with pytest.raises(ValueError, match=message) as error:
        ErnieSamples(corpus, corpus.tokens, DataConfig(seq_length=64),
                     ObjectiveConfig(**{field: value}), seed=0, global_batch_size=8)
    assert field in str(error.value)
