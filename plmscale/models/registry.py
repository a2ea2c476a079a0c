"""Family name -> family module, and parameter counting that ignores TP vocabulary padding."""

from __future__ import annotations

import importlib

import torch
from megatron.core import parallel_state as ps

from plmscale.config.schema import ExperimentConfig, ModelConfig
from plmscale.models.common.megatron import padded_vocab_size
from plmscale.models.family import Family

FAMILY_MODULES = {
    "bert": "plmscale.models.bert",
    "roberta": "plmscale.models.roberta",
    "albert": "plmscale.models.albert",
    "electra": "plmscale.models.electra",
    "distilbert": "plmscale.models.distilbert",
    "t5": "plmscale.models.t5",
    "bart": "plmscale.models.bart",
    "gpt": "plmscale.models.gpt",
}


def get_family(name: str) -> Family:
    """The ``Family`` registered under ``name``."""
    if name not in FAMILY_MODULES:
        raise ValueError(f"unknown model.family {name!r}; known: {', '.join(sorted(FAMILY_MODULES))}")
    try:
        module = importlib.import_module(FAMILY_MODULES[name])
    except ModuleNotFoundError as error:
        if error.name == FAMILY_MODULES[name]:
            raise ValueError(f"model.family {name!r} is not implemented in this version") from None
        raise
    return module.FAMILY


def build_model(cfg: ExperimentConfig) -> torch.nn.Module:
    """Construct (uninitialised) the family's pretraining model for the current process groups."""
    return get_family(cfg.model.family).build(cfg)


def count_parameters(model: torch.nn.Module, cfg: ModelConfig,
                     prefixes: tuple[str, ...] | None = None) -> int:
    """Parameters of the unpartitioned, unpadded model (what HF reports for the same config),
    computed from this rank's slices: partitioned tensors count ``tp`` times, and the rows that TP
    padding added to vocabulary-sized tensors (marked ``vocab_padded``) are left out.
    ``prefixes``: count only the parameters whose names start with one of them (one network)."""
    tp = ps.get_tensor_model_parallel_world_size()
    padding = padded_vocab_size(cfg, tp) - cfg.vocab_size
    total = 0
    for name, p in model.named_parameters():
        if prefixes is not None and not name.startswith(prefixes):
            continue
        numel = p.numel() * (tp if getattr(p, "tensor_model_parallel", False) else 1)
        if getattr(p, "vocab_padded", False):
            numel -= padding * (p.numel() // p.shape[0])
        total += numel
    return total
