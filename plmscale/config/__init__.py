"""Experiment configuration: dataclasses, presets, YAML + overrides, validation, DeepSpeed JSON."""

from plmscale.config.deepspeed import adamw_params, data_parallel_size, deepspeed_config
from plmscale.config.loading import (ConfigError, apply_overrides, config_from_dict, config_to_dict,
                                     load_config, parse_override)
from plmscale.config.presets import all_presets, preset_fields
from plmscale.config.schema import (DataConfig, ExperimentConfig, ModelConfig, ObjectiveConfig,
                                    ParallelConfig, TrainConfig)
from plmscale.config.validation import valid_tensor_parallel_sizes, validate_config

__all__ = [
    "adamw_params", "ConfigError", "all_presets", "apply_overrides", "DataConfig", "ExperimentConfig", "ModelConfig", "ObjectiveConfig",
    "ParallelConfig", "TrainConfig", "config_from_dict", "config_to_dict", "data_parallel_size", "deepspeed_config",
    "load_config", "parse_override", "preset_fields", "valid_tensor_parallel_sizes",
    "validate_config",
]
