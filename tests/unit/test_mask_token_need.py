"""``Family.masks_tokens`` says what the samples do: with the mask id swapped for an id no tokenizer
has, the families that declare it write that id into their inputs, and the others never do (so a
tokenizer without a mask token is refused exactly where it would matter)."""

import dataclasses

import numpy as np
import pytest

from plmscale.config import load_config
from plmscale.data.corpus import Corpus
from plmscale.families import FAMILY_MODULES, get_family

CONFIGS = {"bert": "bert_demo", "elmo": "elmo_words_tiny", "switch": "t5_switch_tiny"}
SAMPLES = 24


@pytest.mark.parametrize("family", sorted(FAMILY_MODULES))
def test_masks_tokens_matches_what_the_samples_write(family, demo_shards, repo, tmp_path):
    extra = [f"objective.distillation_teacher_path={tmp_path}"] if family == "distilbert" else []
    cfg = load_config(repo / "configs" / f"{CONFIGS.get(family, family + '_tiny')}.yaml",
                      extra + [f"data.path={demo_shards}", "data.seq_length=64",
                               "train.micro_batch_size=2"])
    corpus = Corpus(demo_shards, verify=False)
    sentinel = cfg.model.vocab_size + 1000  # no tokenizer's id
    corpus.tokens = dataclasses.replace(corpus.tokens, mask=sentinel)
    sample = get_family(family).samples(corpus, cfg)
    written = any(np.any(np.asarray(v) == sentinel) for i in range(SAMPLES)
                  for v in sample(i).values() if np.asarray(v).dtype.kind in "iu")
    assert written == get_family(family).masks_tokens, family
