"""DistilBERT (Sanh et al. 2019): a BERT student with half the teacher's layers, no token types and no
NSP, initialised from every other teacher layer and trained with the distillation loss
(``plmscale.objectives.distillation``): soft targets and cosine over every non-padding token, MLM over
the masked ones. The architecture is HF ``DistilBertForMaskedLM``: BERT's encoder without token-type
embeddings and BERT's MLM head.

The teacher is a frozen ``BertForPreTraining`` in the same TP layout, kept OUTSIDE the module tree:
DeepSpeed neither trains, partitions nor checkpoints it, and parameter counts are the student's. It
comes from a plmscale BERT checkpoint directory (``objective.distillation_teacher_path``, re-sliced
from whatever TP layout it was saved with) or, in tests, from memory. Under pipeline parallelism it
runs whole on the last stage, from the input ids that travel with the state.
"""

from __future__ import annotations

from pathlib import Path

import torch

from plmscale.config.schema import ModelConfig, ObjectiveConfig
from plmscale.families.bert.model import (BertForPreTraining, MaskedLMHead, MaskedLMModel,
                                          encoder_pieces)
from plmscale.families.pieces import Piece
from plmscale.objectives.distillation import distillation_losses

ARCHITECTURE_FIELDS = ("hidden_size", "num_attention_heads", "ffn_hidden_size", "vocab_size",
                       "max_position_embeddings", "gelu_approximate", "layernorm_epsilon")


def check_teacher(student: ModelConfig, teacher: ModelConfig) -> None:
    """Raise ``ValueError`` unless the teacher has the student's width and a multiple of its depth."""
    wrong = [f for f in ARCHITECTURE_FIELDS if getattr(teacher, f) != getattr(student, f)]
    if wrong:
        raise ValueError("student and teacher must agree on " + ", ".join(
            f"model.{f} (student {getattr(student, f)}, teacher {getattr(teacher, f)})" for f in wrong))
    if teacher.num_layers % student.num_layers:
        raise ValueError(f"teacher depth {teacher.num_layers} is not a multiple of the student's "
                         f"model.num_layers={student.num_layers}")


def teacher_parameter_name(name: str, stride: int) -> str:
    """Student parameter name -> the teacher parameter it starts from: student layer i is teacher
    layer stride * i (every other one for a half-depth student); embeddings and MLM head carry over."""
    if name.startswith("distilbert.layers."):
        index, rest = name[len("distilbert.layers."):].split(".", 1)
        return f"bert.layers.{stride * int(index)}.{rest}"
    if name.startswith("distilbert."):
        return "bert." + name[len("distilbert."):]
    return name  # lm_head.*


@torch.no_grad()
def teacher_outputs(teacher: BertForPreTraining, ids: torch.Tensor, attention: torch.Tensor,
                    active: torch.Tensor):
    """The frozen teacher's last hidden states and vocab-parallel MLM logits at ``active`` positions
    (token type 0 everywhere, as the student has none)."""
    if next(teacher.parameters()).device != ids.device:
        teacher.to(ids.device)  # not a submodule, so model.to() did not move it
    state = teacher.run({"input_ids": ids, "attention_mask": attention}, teacher.pieces[:-1])
    hidden = state["hidden"][active]
    return hidden, teacher.lm_head(hidden, state["word_embeddings"])


def distilbert_pieces(cfg: ModelConfig, precision: str, objective: ObjectiveConfig,
                      teacher: list) -> list[Piece]:
    """BERT's encoder pieces without token types, then the MLM head and the distillation loss
    against ``teacher[0]`` (a one-item list, so the teacher can be attached later)."""
    if cfg.type_vocab_size:
        raise ValueError("DistilBERT has no token types: set model.type_vocab_size=0")

    def loss(lm_head, state):
        if teacher[0] is None:
            raise ValueError("DistilBERT needs a teacher to train (objective.distillation_teacher_path)")
        ids, labels = state["input_ids"], state["mlm_labels"]
        attention = state.get("attention_mask", torch.ones_like(ids))
        active = attention.bool()  # soft targets and cosine on every real token (DistilBERT's default)
        hidden = state["hidden"][active]
        logits = lm_head(hidden, state["word_embeddings"])
        t_hidden, t_logits = teacher_outputs(teacher[0], ids, attention, active)
        return distillation_losses(logits, hidden, t_logits, t_hidden, labels[active],
                                   lm_head.logits.real_columns, objective)

    head = {"lm_head": lambda: MaskedLMHead(cfg)}
    return encoder_pieces(cfg, precision, "distilbert", token_types=False) + [Piece(head, loss)]


class DistilBertForMaskedLM(MaskedLMModel):
    """The student. ``forward(batch)`` needs ``input_ids``, ``attention_mask`` and ``mlm_labels``;
    ``teacher`` (a ``BertForPreTraining`` built for the same process groups) is needed to train."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32",
                 objective: ObjectiveConfig | None = None, teacher: BertForPreTraining | None = None):
        self._teacher = [None]  # a list, so nn.Module does not register (train, save, count) it
        super().__init__(distilbert_pieces(cfg, precision, objective or ObjectiveConfig(),
                                           self._teacher), cfg)
        if teacher is not None:
            self.set_teacher(teacher)

    @property
    def teacher(self) -> BertForPreTraining | None:
        return self._teacher[0]

    def set_teacher(self, teacher: BertForPreTraining) -> None:
        """Attach a frozen teacher (eval mode: no dropout in the soft targets)."""
        check_teacher(self.cfg, teacher.cfg)
        teacher.eval().requires_grad_(False)
        self._teacher[0] = teacher

    def initialize_from_teacher(self) -> None:
        """Copy the teacher's embeddings (word, position, LayerNorm; token types dropped), layers
        0, 2, 4, ... and MLM head into the student (this rank's slices: same TP layout)."""
        if self.teacher is None:
            raise ValueError("DistilBERT needs a teacher: set objective.distillation_teacher_path to "
                             "a plmscale BERT checkpoint directory (train.save_dir of a BERT run)")
        copy_from_teacher(self, self.teacher, self.cfg)

    def teacher_name(self, name: str) -> str:
        """Student parameter name -> the teacher parameter it is initialised from."""
        return teacher_parameter_name(name, self.teacher.cfg.num_layers // self.cfg.num_layers)


@torch.no_grad()
def copy_from_teacher(student: torch.nn.Module, teacher: BertForPreTraining, cfg: ModelConfig,
                      canonical_name=lambda name: name) -> None:
    """Copy each student tensor (the model, or its pipeline stages with their ``canonical_name``)
    from its teacher source (``teacher_parameter_name``; same TP slices)."""
    source = dict(teacher.named_parameters())
    stride = teacher.cfg.num_layers // cfg.num_layers
    for name, param in student.named_parameters():
        param.copy_(source[teacher_parameter_name(canonical_name(name), stride)])


# -- the teacher from a checkpoint ---------------------------------------------------------------
def load_teacher(directory: str | Path) -> BertForPreTraining:
    """The (frozen) BERT saved in a plmscale checkpoint directory (its ``latest`` tag, any TP x PP x
    ZeRO 0-2 layout), built for the CURRENT process groups: ``plmscale.export.shards`` merges the
    saved shards and re-slices them for the current TP size."""
    from plmscale.export.shards import load_full_tensors, read_full_tensors, saved_config
    saved = saved_config(directory)
    if saved.model.family != "bert":
        raise ValueError(f"objective.distillation_teacher_path={directory} is not a plmscale BERT "
                         f"checkpoint (family {saved.model.family!r})")
    _, full = read_full_tensors(directory)
    teacher = BertForPreTraining(saved.model, "fp32",
                                 next_sentence_prediction=saved.objective.next_sentence_prediction)
    load_full_tensors(teacher, full, saved.model.vocab_size)
    return teacher.eval().requires_grad_(False)  # frozen: no dropout in the soft targets
