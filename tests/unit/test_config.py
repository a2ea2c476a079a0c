"""Configuration: presets, YAML + overrides, validation before anything is built."""

import subprocess
import sys

import pytest

from plmscale.config import ConfigError, deepspeed_config, load_config, validate_config


def test_yaml_then_overrides(repo):
    cfg = load_config(repo / "configs/bert_demo.yaml",
                      ["train.lr=3e-4", "parallel.zero_stage=3", "model.hidden_dropout=0"])
    assert cfg.model.preset == "bert-tiny" and cfg.train.lr == 3e-4
    assert cfg.parallel.zero_stage == 3 and cfg.model.hidden_dropout == 0.0
    ds = deepspeed_config(cfg, world_size=4)
    # TP=2 on 4 ranks -> data-parallel 2; the global batch follows.
    assert ds["train_batch_size"] == 2 * cfg.train.micro_batch_size
    assert ds["zero_optimization"]["stage"] == 3


def test_preset_fields_applied():
    cfg = load_config(None, ["model.preset=bert-large"])
    assert (cfg.model.num_layers, cfg.model.hidden_size, cfg.model.num_attention_heads) == (24, 1024, 16)


@pytest.mark.parametrize("override, fragment", [
    ("model.nonexistent=1", "unknown field model.nonexistent"),
    ("nosection.x=1", "unknown config section"),
    ("train.lr=fast", "wrong type"),
    ("model.preset=bert-huge", "known presets"),
    ("justtext", "section.field=value"),
])
def test_bad_overrides_name_the_problem(override, fragment):
    with pytest.raises((ConfigError, ValueError), match=fragment):
        load_config(None, [override])


def test_heads_not_divisible_by_tp_lists_valid_sizes():
    cfg = load_config(None, ["model.preset=bert-base", "parallel.tensor_model_parallel_size=8"])
    with pytest.raises(ConfigError) as info:
        validate_config(cfg, world_size=8)
    message = str(info.value)
    assert "num_attention_heads=12" in message and "[1, 2, 4]" in message


def test_world_not_divisible_by_tp_lists_valid_sizes():
    cfg = load_config(None, ["model.preset=bert-base", "parallel.tensor_model_parallel_size=4"])
    with pytest.raises(ConfigError) as info:
        validate_config(cfg, world_size=6)
    assert "world size 6" in str(info.value) and "[1, 2, 3, 6]" in str(info.value)


def test_zero3_with_pipeline_refused():
    cfg = load_config(None, ["parallel.pipeline_model_parallel_size=2", "parallel.zero_stage=3"])
    with pytest.raises(ConfigError, match="zero_stage"):
        validate_config(cfg, world_size=2)


def test_train_entry_fails_before_building(repo):
    """The entry exits with a clear message and code 2, without starting distributed work."""
    result = subprocess.run(
        [sys.executable, str(repo / "launch/train.py"), "--config", str(repo / "configs/bert_demo.yaml"),
         "--set", "model.num_attention_heads=3", "--set", "model.hidden_size=129"],
        capture_output=True, text=True, env={"WORLD_SIZE": "2", "PATH": ""}, timeout=120)
    assert result.returncode == 2
    assert "valid tensor_model_parallel_size values" in result.stderr
    assert "[1]" in result.stderr


def test_missing_config_file(repo):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(repo / "configs/nope.yaml")
