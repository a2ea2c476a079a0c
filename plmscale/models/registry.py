"""Family name -> model class, and parameter counting that ignores TP vocabulary padding."""

from __future__ import annotations

import torch
from megatron.core import parallel_state as ps

from plmscale.config.schema import ExperimentConfig, ModelConfig
from plmscale.models.bert import BertForPreTraining
from plmscale.models.common.megatron import padded_vocab_size

FAMILIES = {"bert": BertForPreTraining}


def build_model(cfg: ExperimentConfig) -> torch.nn.Module:
    """Construct (uninitialised) the family's pretraining model for the current process groups."""
    family = cfg.model.family
    if family not in FAMILIES:
        raise ValueError(f"unknown model.family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[family](cfg.model, cfg.train.precision,
                            next_sentence_prediction=cfg.objective.next_sentence_prediction)


def count_parameters(model: torch.nn.Module, cfg: ModelConfig) -> int:
    """Parameters of the unpartitioned, unpadded model (what HF reports for the same config),
    computed from this rank's slices: partitioned tensors count ``tp`` times, and the rows that TP
    padding added to vocabulary-sized tensors (marked ``vocab_padded``) are left out."""
    tp = ps.get_tensor_model_parallel_world_size()
    padding = padded_vocab_size(cfg, tp) - cfg.vocab_size
    total = 0
    for p in model.parameters():
        numel = p.numel() * (tp if getattr(p, "tensor_model_parallel", False) else 1)
        if getattr(p, "vocab_padded", False):
            numel -= padding * (p.numel() // p.shape[0])
        total += numel
    return total
