"""``plmscale import`` round trip (issue 17): small random HF models (BERT, RoBERTa, T5, BART,
GPT-2) saved locally, imported at TP=2 x PP=2 on 4 gloo ranks; plmscale's logits on the import
equal HF's; 20 steps of continued pretraining from ``train.init_from`` at that layout; the export of
the final checkpoint holds exactly the run's final weights. Plus the command line and its errors."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from closeness import assert_close, assert_within
from harness import run_ranks

sys.path.insert(0, str(Path(__file__).parent))
import import_workers as workers  # noqa: E402

pytestmark = pytest.mark.slow

TEXT = "The castle stood upon the hill, and the night was dark and full of strange sounds."


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory, demo_shards):
    out = tmp_path_factory.mktemp("import")
    tokenizer = str(demo_shards / "tokenizer.model")
    run_ranks(1, workers.save_random_hf_models, str(demo_shards), str(out))
    reference = run_ranks(1, workers.hf_logits, str(out), TEXT, tokenizer)[0]
    ours = run_ranks(4, workers.import_train_export, str(demo_shards), str(out), TEXT,
                     tokenizer)[0]
    return out, reference, ours


@pytest.mark.parametrize("family", workers.FAMILIES)
def test_imported_logits_equal_hf(round_trip, family):
    _, reference, ours = round_trip
    logits = ours[family][0]
    assert len(logits) == len(reference[family])
    for i, (got, want) in enumerate(zip(logits, reference[family])):
        print(family, assert_close(got, want, f"{family} logits {i}"))


@pytest.mark.parametrize("family", workers.FAMILIES)
def test_continued_training_exports_its_final_weights(round_trip, family):
    import transformers

    from plmscale.export.inverse import from_hf_state_dict
    from plmscale.families import get_family
    out, _, ours = round_trip
    _, final, losses, model_cfg = ours[family]
    assert len(losses) == 20 and all(map(torch.isfinite, map(torch.tensor, losses)))
    cls = getattr(transformers, get_family(family).hf_model_class)
    state = cls.from_pretrained(out / family / "exported").state_dict()
    exported = from_hf_state_dict(get_family(family).to_hf_state_dict, state,
                                  {n: tuple(t.shape) for n, t in final.items()}, model_cfg)
    assert set(exported) == set(final)
    worst = max((exported[n] - final[n]).abs().max().item() for n in final)
    assert worst == 0.0, f"{family}: exported differs from the final weights by {worst}"
    # the run moved away from the import (it trained), so the comparison is not of the import
    imported = from_hf_state_dict(get_family(family).to_hf_state_dict,
                                  cls.from_pretrained(out / family / "hf").state_dict(),
                                  {n: tuple(t.shape) for n, t in final.items()}, model_cfg)
    assert max((imported[n] - final[n]).abs().max().item() for n in final) > 1e-4


def test_models_the_maps_cannot_hold_are_refused_by_name(tmp_path, demo_shards):
    cases = run_ranks(1, workers.refused_models, str(demo_shards), str(tmp_path))[0]
    assert "cls.predictions.decoder.weight" in cases["untied"] or \
        "bert.embeddings.word_embeddings.weight" in cases["untied"], cases["untied"]
    assert "untied" in cases["untied"]
    assert "hidden_act='relu'" in cases["relu"], cases["relu"]


def test_import_command_writes_a_layout_and_its_training_config(round_trip, demo_shards, repo,
                                                                 tmp_path):
    from plmscale.config import load_config
    from plmscale.export.shards import read_full_tensors
    out = round_trip[0]
    gpt = repo / "configs" / "gpt_tiny.yaml"
    common = [sys.executable, "-m", "plmscale.cli", "import", "--config", str(gpt),
              "--set", f"data.path={demo_shards}"]
    done = subprocess.run(common + ["--hf", str(out / "gpt" / "hf"), "--tp", "2",
                                    "--output", str(tmp_path / "gpt")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrote" in done.stdout
    cfg = load_config(tmp_path / "gpt" / "train.yaml")
    assert cfg.train.init_from == str((tmp_path / "gpt").resolve())
    assert cfg.parallel.tensor_model_parallel_size == 2
    assert sorted(p.name for p in (tmp_path / "gpt" / "step0").glob("mp_rank_*")) == [
        "mp_rank_00_model_states.pt", "mp_rank_01_model_states.pt"]
    # the same weights as the TP2 x PP2 import of the round trip (re-slicing is exact)
    _, here = read_full_tensors(tmp_path / "gpt")
    _, there = read_full_tensors(out / "gpt" / "imported")
    assert max((here[n] - there[n]).abs().max().item() for n in there) == 0.0
    for args, words in (([str(tmp_path)], "config.json"),
                        ([str(out / "bert" / "hf")], "give a bert config")):
        refused = subprocess.run(common + ["--hf", *args, "--output", str(tmp_path / "x")],
                                 capture_output=True, text=True, timeout=600)
        assert refused.returncode == 2 and words in refused.stderr, refused.stderr[-2000:]
