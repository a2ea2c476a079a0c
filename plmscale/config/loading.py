"""Build an ``ExperimentConfig`` from a YAML file and ``section.field=value`` overrides."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from plmscale.config.families import family_fields
from plmscale.config.presets import all_presets, preset_fields
from plmscale.config.schema import ExperimentConfig
from plmscale.families import FAMILY_MODULES


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the field and the valid values."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """" (did you mean 'x'?)" for the closest of ``choices`` to a mistyped ``name``, else ""."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _field_types(section_cls) -> dict[str, Any]:
    hints = typing.get_type_hints(section_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(section_cls)}


def _coerce(section: str, name: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against the field's annotation (ints are accepted for floats)."""
    allowed = typing.get_args(annotation) or (annotation,)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is float and isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind in (str, bool) and isinstance(value, kind):
            return value
    names = " or ".join(getattr(k, "__name__", str(k)) for k in allowed)
    raise ConfigError(f"{section}.{name}={value!r} has the wrong type; expected {names}")


def _apply(cfg: ExperimentConfig, section: str, values: dict, origin: str) -> None:
    sections = {f.name for f in dataclasses.fields(ExperimentConfig)}
    if section not in sections:
        raise ConfigError(f"unknown config section {section!r} in {origin}"
                          f"{did_you_mean(str(section), sections)}; "
                          f"valid sections: {', '.join(sorted(sections))}")
    target = getattr(cfg, section)
    types = _field_types(type(target))
    for name, value in values.items():
        if name not in types:
            raise ConfigError(f"unknown field {section}.{name} in {origin}"
                              f"{did_you_mean(str(name), types)}; valid fields of "
                              f"{section}: {', '.join(types)}")
        setattr(target, name, _coerce(section, name, value, types[name]))


def parse_override(text: str) -> tuple[str, str, Any]:
    """Split ``section.field=value``; the value is parsed as YAML (so 2 -> int, true -> bool)."""
    key, sep, raw = text.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not name:
        raise ConfigError(f"override {text!r} must look like section.field=value, "
                          "e.g. parallel.tensor_model_parallel_size=2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({error}); quote it, "
                          f"e.g. {key.strip()}='\"...\"'") from None
    return section, name, value


def _read_yaml(path: Path) -> dict:
    """The file's mapping of sections; a syntax error names the file, line and column."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{where}: YAML syntax error: {problem}; fix the file (indent with "
                          f"spaces, 'key: value' per line)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; pass a YAML file") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (model:, train:, ...)")
    return raw


def load_config(path: Optional[str | Path] = None, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Defaults <- the family's objective defaults <- model preset <- YAML file <- overrides, then
    validated field by field."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass an existing YAML file, "
                              "e.g. configs/bert_demo.yaml")
        raw = _read_yaml(path)
    parsed = [parse_override(o) for o in overrides]

    cfg = ExperimentConfig()
    preset = _last_value(raw, parsed, "preset")
    family = _last_value(raw, parsed, "family")
    presets = all_presets()
    if preset is not None and (not isinstance(preset, str) or preset not in presets):
        raise ConfigError(f"unknown model preset {preset!r}{did_you_mean(str(preset), presets)}; "
                          f"known presets: {', '.join(sorted(presets))}")
    if family is None and preset is not None:
        family = preset_fields(preset).get("family")
    if family is not None:
        if family in FAMILY_MODULES:  # unknown names are refused by the registry, with the list
            _apply(cfg, "objective", family_fields(family).objective_defaults,
                   f"family {family!r} defaults")
    if preset is not None:
        _apply(cfg, "model", preset_fields(preset), f"preset {preset!r}")
        cfg.model.preset = preset
    origin = str(path) if path else "defaults"
    for section, values in raw.items():
        if not isinstance(values, dict):
            raise ConfigError(f"section {section!r} in {origin} must be a mapping")
        _apply(cfg, section, values, origin)
    for section, name, value in parsed:
        _apply(cfg, section, {name: value}, "--set")
    return cfg


def _last_value(raw: dict, parsed: list, name: str):
    """``model.<name>`` as the overrides, else the YAML, set it (None when neither does)."""
    value = (raw.get("model") or {}).get(name) if isinstance(raw.get("model"), dict) else None
    for section, field_name, override in parsed:
        if (section, field_name) == ("model", name):
            value = override
    return value


def config_to_dict(cfg: ExperimentConfig) -> dict:
    """Plain nested dict of the resolved configuration (for printing and checkpoints)."""
    return dataclasses.asdict(cfg)


def config_from_dict(values: dict, origin: str = "saved config") -> ExperimentConfig:
    """Inverse of ``config_to_dict``, each field checked as a YAML file's would be."""
    cfg = ExperimentConfig()
    for section, fields in values.items():
        if not isinstance(fields, dict):
            raise ConfigError(f"section {section!r} in {origin} must be a mapping")
        _apply(cfg, section, fields, origin)
    return cfg
