"""DistilBERT (Sanh et al. 2019): a BERT student with half the teacher's layers, no token types and no
NSP, initialised from every other teacher layer and trained with

    loss = alpha_ce * KL(teacher || student, both at temperature T) * T^2
         + alpha_mlm * MLM + alpha_cos * (1 - cos(student hidden, teacher hidden)),

the soft-target and cosine terms over every non-padding token, the MLM term over the masked ones.
The architecture is HF ``DistilBertForMaskedLM``: BERT's encoder without token-type embeddings and
BERT's MLM head (dense, GELU, LayerNorm, projection tied to the word embeddings).

The teacher is a frozen ``BertForPreTraining`` in the same TP layout, kept OUTSIDE the module tree:
DeepSpeed neither trains, partitions nor checkpoints it, and parameter counts are the student's. It
comes from a plmscale BERT checkpoint directory (``objective.distillation_teacher_path``, re-sliced
from whatever TP layout it was saved with) or, in tests, from memory.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from megatron.core import parallel_state as ps
from megatron.core import tensor_parallel
from torch import nn

from plmscale.config.schema import ModelConfig, ObjectiveConfig
from plmscale.models.bert import IGNORE_INDEX, BertEncoder, BertForPreTraining, MaskedLMHead
from plmscale.models.common import gather_vocab_logits, vocab_parallel_loss_and_accuracy
from plmscale.models.common.megatron import padded_vocab_size, tp_world
from plmscale.models.family import Family, imported_on_call

ARCHITECTURE_FIELDS = ("hidden_size", "num_attention_heads", "ffn_hidden_size", "vocab_size",
                       "max_position_embeddings", "gelu_approximate", "layernorm_epsilon")


def vocab_parallel_kl(student: torch.Tensor, teacher: torch.Tensor, padding: torch.Tensor
                      ) -> torch.Tensor:
    """Mean over rows of KL(softmax(teacher) || softmax(student)) for vocab-parallel logits [n, V/tp]
    (already divided by the temperature); ``padding`` marks this rank's padding columns (-inf).

    KL = sum_v p_t (log p_t - s_v) + logsumexp(s) since sum_v p_t = 1. The logsumexp is computed once
    from all-reduced pieces and the cross term is all-reduced as a whole, so the replicated loss
    back-propagates p_s - p_t into each rank's slice (megatron's reduce: identity backward).
    """
    group = ps.get_tensor_model_parallel_group()
    student = student.float()
    with torch.no_grad():
        teacher = teacher.float()
        t_max = teacher.max(-1, keepdim=True).values
        dist.all_reduce(t_max, op=dist.ReduceOp.MAX, group=group)
        t_exp = torch.exp(teacher - t_max)
        t_sum = t_exp.sum(-1, keepdim=True)
        dist.all_reduce(t_sum, group=group)
        p_t = t_exp / t_sum
        log_p_t = teacher - t_max - torch.log(t_sum)
        entropy_term = torch.where(p_t > 0, p_t * log_p_t, torch.zeros_like(p_t)).sum(-1)
        dist.all_reduce(entropy_term, group=group)
        s_max = student.detach().max(-1, keepdim=True).values
        dist.all_reduce(s_max, op=dist.ReduceOp.MAX, group=group)
    s_sum = tensor_parallel.reduce_from_tensor_model_parallel_region(
        torch.exp(student - s_max).sum(-1))
    log_z = torch.log(s_sum) + s_max.squeeze(-1)
    cross = tensor_parallel.reduce_from_tensor_model_parallel_region(
        (p_t * student.masked_fill(padding, 0.0)).sum(-1))
    return (entropy_term - cross + log_z).mean()


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
    hidden = teacher.bert(ids, None, attention)[active]
    return hidden, teacher.lm_head(hidden, teacher.bert.embeddings.word_embeddings.weight)


def distillation_losses(logits, hidden, t_logits, t_hidden, labels, padding: torch.Tensor,
                        o: ObjectiveConfig) -> dict:
    """The three terms and their weighted sum, over rows = real tokens: student vocab-parallel
    ``logits`` and ``hidden`` states against the teacher's; MLM where ``labels`` != -100."""
    t = o.distillation_temperature
    distill_loss = vocab_parallel_kl(logits / t, t_logits / t, padding) * t * t
    cosine_loss = (1.0 - F.cosine_similarity(hidden.float(), t_hidden.float(), dim=-1)).mean()
    selected = labels != IGNORE_INDEX
    # Indexing copies: megatron's cross entropy may edit its input, not ``logits``.
    mlm_loss, mlm_accuracy = vocab_parallel_loss_and_accuracy(logits[selected], labels[selected])
    loss = (o.distillation_alpha_ce * distill_loss + o.distillation_alpha_mlm * mlm_loss
            + o.distillation_alpha_cos * cosine_loss)
    return {"loss": loss, "distill_loss": distill_loss, "mlm_loss": mlm_loss,
            "mlm_accuracy": mlm_accuracy, "cosine_loss": cosine_loss}


class DistilBertForMaskedLM(nn.Module):
    """The student. ``forward(batch)`` needs ``input_ids``, ``attention_mask`` and ``mlm_labels``;
    ``teacher`` (a ``BertForPreTraining`` built for the same process groups) is needed to train."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32",
                 objective: ObjectiveConfig | None = None, teacher: BertForPreTraining | None = None):
        super().__init__()
        if cfg.type_vocab_size:
            raise ValueError("DistilBERT has no token types: set model.type_vocab_size=0")
        self.cfg = cfg
        self.objective = objective or ObjectiveConfig()
        self.distilbert = BertEncoder(cfg, precision)
        self.lm_head = MaskedLMHead(cfg, self.distilbert.embeddings.padded_vocab_size)
        self._teacher = [None]  # a list, so nn.Module does not register (train, save, count) it
        if teacher is not None:
            self.set_teacher(teacher)

    # -- teacher -------------------------------------------------------------------------------
    @property
    def teacher(self) -> BertForPreTraining | None:
        return self._teacher[0]

    def set_teacher(self, teacher: BertForPreTraining) -> None:
        """Attach a frozen teacher (eval mode: no dropout in the soft targets)."""
        check_teacher(self.cfg, teacher.cfg)
        teacher.eval().requires_grad_(False)
        self._teacher[0] = teacher

    @torch.no_grad()
    def initialize_from_teacher(self) -> None:
        """Copy the teacher's embeddings (word, position, LayerNorm; token types dropped), layers
        0, 2, 4, ... and MLM head into the student (this rank's slices: same TP layout)."""
        if self.teacher is None:
            raise ValueError("DistilBERT needs a teacher: set objective.distillation_teacher_path to "
                             "a plmscale BERT checkpoint directory (train.save_dir of a BERT run)")
        source = dict(self.teacher.named_parameters())
        for name, param in self.named_parameters():
            param.copy_(source[self.teacher_name(name)])

    def teacher_name(self, name: str) -> str:
        """Student parameter name -> the teacher parameter it is initialised from."""
        return teacher_parameter_name(name, self.teacher.cfg.num_layers // self.cfg.num_layers)

    # -- training ------------------------------------------------------------------------------
    def forward(self, batch: dict) -> dict:
        teacher = self.teacher
        if teacher is None:
            raise ValueError("DistilBERT needs a teacher to train (objective.distillation_teacher_path)")
        ids, attention, labels = batch["input_ids"], batch.get("attention_mask"), batch["mlm_labels"]
        if attention is None:
            attention = torch.ones_like(ids)
        active = attention.bool()  # soft targets and cosine on every real token (DistilBERT's default)
        hidden = self.distilbert(ids, None, attention)[active]
        logits = self.lm_head(hidden, self.distilbert.embeddings.word_embeddings.weight)
        t_hidden, t_logits = teacher_outputs(teacher, ids, attention, active)
        return distillation_losses(logits, hidden, t_logits, t_hidden, labels[active],
                                   self.lm_head.logits.padding_columns, self.objective)

    @torch.no_grad()
    def logits(self, input_ids, attention_mask=None):
        """Full-vocabulary MLM logits [b, s, V], as HF's ``DistilBertForMaskedLM`` returns them."""
        hidden = self.distilbert(input_ids, None, attention_mask)
        mlm = self.lm_head(hidden, self.distilbert.embeddings.word_embeddings.weight)
        return gather_vocab_logits(mlm, self.cfg.vocab_size)


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


# -- family ---------------------------------------------------------------------------------------
class DistilBertSamples:
    """BERT's samples without NSP, with neither token types nor an NSP label."""

    def __init__(self, corpus, cfg):
        from plmscale.data.bert_samples import BertSamples
        objective = dataclasses.replace(cfg.objective, next_sentence_prediction=False)
        self.inner = BertSamples(corpus, corpus.tokens, cfg.data, objective, cfg.train.seed)

    def __call__(self, index: int) -> dict:
        sample = self.inner(index)
        return {k: v for k, v in sample.items() if k not in ("token_type_ids", "next_sentence_label")}


def _build(cfg):
    path = cfg.objective.distillation_teacher_path
    return DistilBertForMaskedLM(cfg.model, cfg.train.precision, cfg.objective,
                                 teacher=load_teacher(path) if path else None)


def _initialize(model, cfg):
    if not cfg.objective.distillation_init_from_teacher:
        return  # keep the layout-independent random initialisation
    if isinstance(model, DistilBertForMaskedLM):
        model.initialize_from_teacher()
    else:
        from plmscale.models.distilbert_pipe import initialize_pipeline_from_teacher
        initialize_pipeline_from_teacher(model, cfg)


FAMILY = Family(
    name="distilbert",
    build=_build,
    samples=lambda corpus, cfg: DistilBertSamples(corpus, cfg),
    hf_config=imported_on_call("plmscale.export.distilbert", "hf_config"),
    hf_model_class="DistilBertForMaskedLM",
    to_hf_state_dict=imported_on_call("plmscale.export.distilbert", "to_hf_state_dict"),
    initialize=_initialize,
    pipeline=imported_on_call("plmscale.models.distilbert_pipe", "distilbert_pipeline"),
)
