"""plmscale ERNIE 2.0 <-> HF ``ErnieForPreTraining`` state dicts: BERT's mapping under the
``ernie.`` prefix, plus the task-type embedding, with HF's two-way ``seq_relationship`` head taken
from the sentence-distance head (``plmscale.families.ernie.model``)."""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig
from plmscale.families.bert import hf as bert
from plmscale.objectives.ernie_tasks import SEQ_RELATIONSHIP_ROWS

TASK_EMBEDDING = "ernie.embeddings.task_type_embeddings.weight"


def hf_config(cfg: ModelConfig):
    """The ``transformers.ErnieConfig`` with the same architecture (task ids when the model has a
    task-type embedding)."""
    from transformers import ErnieConfig
    tasks = {"use_task_id": True, "task_type_vocab_size": cfg.task_type_vocab_size} \
        if cfg.task_type_vocab_size > 0 else {"use_task_id": False}
    return ErnieConfig(**bert.encoder_config_kwargs(cfg), tie_word_embeddings=True, **tasks)


def to_hf_state_dict(full: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Map full (gathered, unpadded) plmscale tensors to ``ErnieForPreTraining`` names."""
    rows = list(SEQ_RELATIONSHIP_ROWS)
    as_bert = {("bert." + k[len("ernie."):] if k.startswith("ernie.") else k): v
               for k, v in full.items()}
    as_bert.update({f"nsp_head.{kind}": full[f"sentence_distance_head.{kind}"][rows]
                    for kind in ("weight", "bias")})
    out = {("ernie." + k[len("bert."):] if k.startswith("bert.") else k): v
           for k, v in bert.to_hf_state_dict(as_bert, cfg).items()}
    if TASK_EMBEDDING in full:
        out[TASK_EMBEDDING] = full[TASK_EMBEDDING]
    return out
