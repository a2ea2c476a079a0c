"""A user's mistakes, each reported as one message naming the thing and the fix, before any model
is built: config files and overrides, data paths and tokenizers, the checkpoint to resume,
truncated compressed inputs."""

import gzip
import json
import shutil
import subprocess
import sys

import pytest
from data_prep.shards import ShardError

from plmscale.config import ConfigError, load_config, validate_config
from plmscale.training.checkpoint import CheckpointError
from plmscale.training.preflight import check_inputs


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  preset: bert-tiny\ntrain:\n  lr: [1e-4\n  seed: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:5:\d+: YAML syntax error"):
        load_config(path)


@pytest.mark.parametrize("override, fragment", [
    ("model.hiden_size=3", "did you mean 'hidden_size'"),
    ("trian.lr=3", "did you mean 'train'"),
    ("model.preset=bert-bsae", "did you mean 'bert-base'"),
    ("train.lr=[1", "not valid YAML"),
])
def test_typos_get_a_did_you_mean(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(None, [override])


@pytest.mark.parametrize("override, fragment", [
    ("model.vocab_size=-5", "model.vocab_size=-5 must be >= 1"),
    ("train.lr=-1", "train.lr=-1.0 must be >= 0"),
    ("model.hidden_dropout=1.5", r"must be in \[0, 1\)"),
    ("train.micro_batch_size=0", "must be >= 1"),
    ("train.dead_rank_timeout_s=0", "must be > 0"),
])
def test_out_of_range_values_are_named(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        validate_config(load_config(None, [override]), world_size=1)


def test_shipped_configs_and_presets_pass_the_range_checks(repo):
    from plmscale.config import all_presets
    from plmscale.config.validation import _check_ranges
    for path in sorted((repo / "configs").glob("*.yaml")):
        cfg = load_config(path)
        p = cfg.parallel
        validate_config(cfg, world_size=p.tensor_model_parallel_size * p.pipeline_model_parallel_size)
    for preset in all_presets():
        _check_ranges(load_config(None, [f"model.preset={preset}"]))


def _cfg(shards, *overrides):
    return load_config(None, ["model.preset=bert-tiny", "model.vocab_size=8000",
                              f"data.path={shards}", *overrides])


def test_inputs_checked_before_building(demo_shards, tmp_path):
    with pytest.raises(ConfigError, match="holds no manifest.json"):
        check_inputs(_cfg(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="has 8000 pieces but model.vocab_size=100"):
        check_inputs(_cfg(demo_shards, "model.vocab_size=100"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no complete checkpoint"):
        check_inputs(_cfg(demo_shards, f"train.load_dir={tmp_path / 'empty'}"))
    # A checkpoint trained on shards of another tokenizer (plmscale's metadata of a saved tag).
    tag = tmp_path / "ckpt" / "step3"
    tag.mkdir(parents=True)
    (tag / "manifest.json").write_text(json.dumps({"tag": "step3", "step": 3, "files": {}}))
    (tag / "plmscale.json").write_text(json.dumps(
        {"step": 3, "data": {"data_path": "/elsewhere", "tokenizer_sha256": "ab" * 32}}))
    (tmp_path / "ckpt" / "step5").mkdir()  # an interrupted save: warned about, skipped
    with pytest.raises(CheckpointError, match="another tokenizer"):
        check_inputs(_cfg(demo_shards, f"train.load_dir={tmp_path / 'ckpt'}"))


def test_train_entry_reports_an_empty_load_dir_without_traceback(repo, demo_shards, tmp_path):
    result = subprocess.run(
        [sys.executable, str(repo / "launch/train.py"), "--config", str(repo / "configs/bert_demo.yaml"),
         "--set", f"data.path={demo_shards}", "--set", f"train.load_dir={tmp_path}"],
        capture_output=True, text=True, env={"WORLD_SIZE": "2", "PATH": "", "PYTHONPATH": str(repo)},
        timeout=300)
    assert result.returncode == 2
    assert f"train.load_dir {tmp_path} holds no complete checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_shards_with_another_tokenizer_are_refused(demo_shards, tmp_path):
    from plmscale.data import Corpus
    shards = tmp_path / "shards"
    shutil.copytree(demo_shards, shards)
    # A tokenizer file swapped under the shards: its hash no longer matches the manifest.
    (shards / "tokenizer.model").write_bytes(b"x" + (shards / "tokenizer.model").read_bytes())
    with pytest.raises(ShardError, match="not the tokenizer these shards were encoded with"):
        Corpus(shards)


def test_truncated_gzip_input_names_the_file(repo, tmp_path, capsys):
    from data_prep.cli import main
    text = (repo / "corpora" / "gothic_novels.txt").read_bytes()[:200_000]
    whole = gzip.compress(text)
    truncated = tmp_path / "part.txt.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    code = main(["train-tokenizer", "--input", str(truncated), "--output",
                 str(tmp_path / "tok.model"), "--vocab-size", "500"])
    assert code == 1
    assert f"{truncated}: the compressed input is truncated" in capsys.readouterr().err
