"""Parameter counts of a preset, ours and HF's, with both models built on the meta device (no memory,
no initialisation), for the parameter-count tests of every family."""

from __future__ import annotations

import dataclasses

import torch
import transformers

from plmscale.config import ExperimentConfig, load_config
from plmscale.families import build_model, count_parameters, get_family
from plmscale.parallel import init_model_parallel


@dataclasses.dataclass
class MetaCounts:
    cfg: ExperimentConfig
    model: torch.nn.Module  # ours
    hf_model: torch.nn.Module  # the family's HF export class, from its exported config
    ours: int  # without the vocabulary padding
    hf: int


def meta_counts(preset: str, overrides=()) -> MetaCounts:
    """Build ``preset`` (with ``--set``-style ``overrides``) and its HF counterpart on the meta device."""
    cfg = load_config(None, [f"model.preset={preset}", *overrides])
    init_model_parallel(cfg)
    family = get_family(cfg.model.family)
    with torch.device("meta"):
        model = build_model(cfg)
        hf_model = getattr(transformers, family.hf_model_class)(family.hf_config(cfg.model))
    return MetaCounts(cfg, model, hf_model, count_parameters(model, cfg.model),
                      sum(p.numel() for p in hf_model.parameters()))
