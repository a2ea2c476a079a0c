"""What a model family provides to the rest of plmscale.

Each family module (``plmscale/models/<name>.py``) defines ``FAMILY = Family(...)``; the registry
imports it by name on first use, so adding a family is adding its file and one registry line.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from plmscale.config.schema import ExperimentConfig, ModelConfig


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable[[ExperimentConfig], torch.nn.Module]
    """The pretraining model for the current process groups; ``forward(batch: dict) -> dict`` with
    "loss" and named metrics (``*_loss``, ``*_accuracy``) as 0-d tensors."""
    samples: Callable[[object, ExperimentConfig], Callable[[int], dict]]
    """(plmscale.data.Corpus, config) -> sample(global_index) -> dict of equal-shape numpy arrays."""
    hf_config: Optional[Callable[[ModelConfig], object]] = None
    """The ``transformers`` config of the same architecture (for counts and export)."""
    hf_model_class: Optional[str] = None
    """Name of the ``transformers`` class that is this family's reference."""
    to_hf_state_dict: Optional[Callable[[dict, ModelConfig], dict]] = None
    """Full (TP-gathered, unpadded) plmscale tensors -> HF state dict."""
    pipeline: Optional[Callable[[ExperimentConfig], torch.nn.Module]] = None
    """A DeepSpeed ``PipelineModule`` of the same model (see ``plmscale.parallel.pipeline``)."""
    initialize: Optional[Callable[[torch.nn.Module, ExperimentConfig], None]] = None
    """(model or its PipelineModule, config): runs after the layout-independent initialisation and
    before the engine exists (so optimizer master copies see it), e.g. DistilBERT copying its
    teacher's layers; None = nothing."""


def imported_on_call(module: str, function: str) -> Callable:
    """A hook that imports ``module`` and calls its ``function`` only when the hook is called.

    Families name their export and pipeline functions this way: the pipeline modules import the
    family module back, so importing them when the family is defined would be circular, and
    a run that neither exports nor pipelines never loads them.
    """
    def hook(*args, **kwargs):
        return getattr(importlib.import_module(module), function)(*args, **kwargs)

    hook.__qualname__ = f"imported_on_call({module}.{function})"
    return hook
