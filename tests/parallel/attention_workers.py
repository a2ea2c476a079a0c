"""Rank function of the attention-backend equivalence test (module-level so spawned ranks can import
it): every family, at TP=2 and TP=1, one training-mode forward and backward (dropout on) per
``model.attention_backend``, each compared with the ``reference`` backend's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from closeness import closeness
from workers_common import forward_backward, held_out_batch, initialised_model

from plmscale.config import load_config
from plmscale.config.schema import ATTENTION_BACKENDS
from plmscale.parallel import init_distributed, initialize_parameters

REPO = Path(__file__).resolve().parents[2]

# Dropout on: the backends must also draw the same attention-dropout masks from the TP rank's stream.
COMMON = ["model.hidden_dropout=0.1", "model.attention_dropout=0.1", "model.max_position_embeddings=64",
          "data.seq_length=64", "data.num_workers=0", "parallel.zero_stage=0",
          "parallel.pipeline_model_parallel_size=1", "objective.distillation_init_from_teacher=false"]


def _model(cfg):
    model = initialised_model(cfg)
    if cfg.model.family == "distilbert":  # an in-memory teacher of twice the depth, same backend
        from plmscale.families.bert.model import BertForPreTraining
        teacher = BertForPreTraining(dataclasses.replace(
            cfg.model, family="bert", num_layers=2 * cfg.model.num_layers, type_vocab_size=2))
        initialize_parameters(teacher, 99, 0.2, cfg.model.vocab_size)
        model.set_teacher(teacher.eval().requires_grad_(False))
    return model


def backends_agree(shards: str, variants: dict[str, tuple[str, list[str]]]) -> dict:
    """(variant, tp, backend) -> closeness of the metrics and of the gathered gradients to the
    ``reference`` backend's at the same TP size."""
    init_distributed()
    results = {}
    for name, (config, overrides) in variants.items():
        for tp in (2, 1):
            runs = {}
            for backend in ATTENTION_BACKENDS:
                cfg = load_config(REPO / "configs" / config,
                                  COMMON + overrides + [f"data.path={shards}",
                                                        f"parallel.tensor_model_parallel_size={tp}",
                                                        f"model.attention_backend={backend}"])
                if not runs:
                    batch = held_out_batch(cfg)
                    if "attention_mask" in batch:  # padding in one sample
                        batch["attention_mask"][0, -9:] = 0
                runs[backend] = forward_backward(_model(cfg), cfg, batch, lambda model: None)
            want = runs["reference"]
            for backend, got in runs.items():
                results[name, tp, backend] = (closeness(got["out"], want["out"], "metrics"),
                                              closeness(got["grads"], want["grads"], "grads"))
    return results
