"""Model families: one folder each (``plmscale/families/<name>/``) holding its model (as ordered
pieces), sample builder and ``FAMILY`` spec; ``get_family`` / ``build_model`` pick one by name.

A new family is its folder plus one line in ``FAMILY_MODULES``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from plmscale.config.schema import ExperimentConfig, ModelConfig

FAMILY_MODULES = {
    "bert": "plmscale.families.bert",
    "roberta": "plmscale.families.roberta",
    "albert": "plmscale.families.albert",
    "electra": "plmscale.families.electra",
    "distilbert": "plmscale.families.distilbert",
    "t5": "plmscale.families.t5",
    "bart": "plmscale.families.bart",
    "gpt": "plmscale.families.gpt",
}


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable[[ExperimentConfig], torch.nn.Module]
    """The pretraining model (a ``PiecewiseModel``) for the current process groups;
    ``forward(batch: dict) -> dict`` with "loss" and named metrics (``*_loss``, ``*_accuracy``)."""
    pieces: Callable[[ExperimentConfig], list]
    """The same model's ordered pieces (``plmscale.families.pieces``); pipeline stages derive from
    them (``plmscale.parallel.pipeline.PiecewisePipeline``)."""
    samples: Callable[[object, ExperimentConfig], Callable[[int], dict]]
    """(plmscale.data.Corpus, config) -> sample(global_index) -> dict of equal-shape numpy arrays."""
    hf_config: Optional[Callable[[ModelConfig], object]] = None
    """The ``transformers`` config of the same architecture (for counts and export)."""
    hf_model_class: Optional[str] = None
    """Name of the ``transformers`` class that is this family's reference."""
    to_hf_state_dict: Optional[Callable[[dict, ModelConfig], dict]] = None
    """Full (TP-gathered, unpadded) plmscale tensors -> HF state dict (``plmscale import`` runs it
    backwards: ``plmscale.export.inverse``)."""
    from_hf_config: Optional[Callable[[object], dict]] = None
    """HF config -> this family's ModelConfig fields (the reverse of ``hf_config``); None = the
    family cannot be imported from Hugging Face."""
    initialize: Optional[Callable[[torch.nn.Module, ExperimentConfig], None]] = None
    """(model or its pipeline, config): runs after the layout-independent initialisation and before
    the engine exists (so optimizer master copies see it), e.g. DistilBERT copying its teacher's
    layers; None = nothing."""


def get_family(name: str) -> Family:
    """The ``Family`` registered under ``name``."""
    if name not in FAMILY_MODULES:
        raise ValueError(f"unknown model.family {name!r}; known: {', '.join(sorted(FAMILY_MODULES))}")
    return importlib.import_module(FAMILY_MODULES[name]).FAMILY


def build_model(cfg: ExperimentConfig) -> torch.nn.Module:
    """Construct (uninitialised) the family's pretraining model for the current process groups."""
    return get_family(cfg.model.family).build(cfg)


def count_parameters(model: torch.nn.Module, cfg: ModelConfig,
                     prefixes: tuple[str, ...] | None = None) -> int:
    """Parameters of the unpartitioned, unpadded model (what HF reports for the same config),
    computed from this rank's slices: partitioned tensors count ``tp`` times, and the rows that TP
    padding added to vocabulary-sized tensors (marked ``vocab_padded``) are left out.
    ``prefixes``: count only the parameters whose names start with one of them (one network)."""
    from megatron.core import parallel_state as ps

    from plmscale.models.common.megatron import padded_vocab_size
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
