"""The DistilBERT student as DeepSpeed pipeline stages: [embeddings] [layer] ... [layer] [head]
[tied logits]; the frozen teacher runs whole on the last stage, from the input ids that travel with the
hidden states (it is not part of the PipelineModule: not trained, partitioned or saved).

Activations between stages are (hidden, attention_mask, mlm_labels, input_ids). Parameter names map
back to ``DistilBertForMaskedLM``'s (``canonical_name``), so initialisation, the teacher copy and
export are the same for every PP x TP layout.
"""

from __future__ import annotations

import torch.nn.functional as F
from deepspeed.pipe import LayerSpec, TiedLayerSpec
from torch import nn

from plmscale.config.schema import ExperimentConfig, ModelConfig, ObjectiveConfig
from plmscale.models.bert_pipe import BertTiedLogitsPipe, _MaskedLMTransform
from plmscale.models.common import Embeddings, PostLNLayer, padding_mask
from plmscale.models.distilbert import (check_teacher, distillation_losses, load_teacher,
                                        teacher_outputs, teacher_parameter_name)
from plmscale.parallel.pipeline import FamilyPipeline


class DistilEmbeddingPipe(Embeddings):
    """First stage: (input_ids, attention_mask, mlm_labels) -> activations."""

    def forward(self, inputs):
        input_ids, attention_mask, mlm_labels = inputs
        return super().forward(input_ids), attention_mask, mlm_labels, input_ids


class DistilLayerPipe(PostLNLayer):
    def forward(self, inputs):
        hidden, attention_mask, mlm_labels, input_ids = inputs
        hidden = super().forward(hidden, padding_mask(attention_mask))
        return hidden, attention_mask, mlm_labels, input_ids


class DistilHeadPipe(nn.Module):
    """The MLM transform on every real token, and the teacher's outputs for the same tokens."""

    def __init__(self, cfg: ModelConfig, teacher):
        super().__init__()
        self.approximate = cfg.gelu_approximate
        self.lm_head = _MaskedLMTransform(cfg)
        self._teacher = [teacher]  # a list: not a submodule

    def forward(self, inputs):
        hidden, attention_mask, mlm_labels, input_ids = inputs
        active = attention_mask.bool()
        hidden = hidden[active]
        transformed = self.lm_head.LayerNorm(F.gelu(self.lm_head.dense(hidden),
                                                    approximate=self.approximate))
        t_hidden, t_logits = teacher_outputs(self._teacher[0], input_ids, attention_mask, active)
        return transformed, hidden, t_hidden, t_logits, mlm_labels[active]


class DistilTiedLogitsPipe(BertTiedLogitsPipe):
    """Last stage's copy of the word embedding (tied to the first stage's) + the MLM logits bias."""

    def forward(self, inputs):
        transformed, hidden, t_hidden, t_logits, labels = inputs
        logits = self.logits(transformed, self.word_embeddings.weight)
        return logits, hidden, t_logits, t_hidden, labels, self.logits.padding_columns


def _loss(objective: ObjectiveConfig):
    def loss_fn(outputs, _labels):
        return distillation_losses(*outputs, objective)["loss"]
    return loss_fn


def _split_batch(batch: dict) -> tuple:
    inputs = (batch["input_ids"], batch["attention_mask"], batch["mlm_labels"])
    return inputs, (batch["mlm_labels"],)


def distilbert_pipeline(cfg: ExperimentConfig) -> FamilyPipeline:
    """The student as a ``PipelineModule`` over the current pipeline groups, with its teacher (from
    ``objective.distillation_teacher_path``) kept as ``pipe.teacher`` for the initial copy."""
    m, precision = cfg.model, cfg.train.precision
    path = cfg.objective.distillation_teacher_path
    if not path:
        raise ValueError("DistilBERT needs a teacher: set objective.distillation_teacher_path")
    teacher = load_teacher(path)
    check_teacher(m, teacher.cfg)
    specs = [TiedLayerSpec("embed", DistilEmbeddingPipe, m, precision,
                           tied_weight_attr=["word_embeddings.weight"])]
    specs += [LayerSpec(DistilLayerPipe, m, precision) for _ in range(m.num_layers)]
    specs += [LayerSpec(DistilHeadPipe, m, teacher),
              TiedLayerSpec("embed", DistilTiedLogitsPipe, m, precision,
                            tied_weight_attr=["word_embeddings.weight"])]
    renames = [("tied_modules.embed.logits.", "lm_head.logits."),
               ("tied_modules.embed.", "distilbert.embeddings."),
               (f"{m.num_layers + 1}.", "")]
    renames += [(f"{i + 1}.", f"distilbert.layers.{i}.") for i in range(m.num_layers)]
    pipe = FamilyPipeline(specs, _loss(cfg.objective), layer_type="DistilLayerPipe",
                          renames=renames, split_batch=_split_batch)
    pipe._distil_teacher = [teacher]
    return pipe


def initialize_pipeline_from_teacher(pipe: FamilyPipeline, cfg: ExperimentConfig) -> None:
    """Copy the teacher's tensors into this stage's pieces (by canonical name; TP slices match)."""
    import torch
    teacher = pipe._distil_teacher[0]
    source = dict(teacher.named_parameters())
    stride = teacher.cfg.num_layers // cfg.model.num_layers
    with torch.no_grad():
        for name, param in pipe.named_parameters():
            param.copy_(source[teacher_parameter_name(pipe.canonical_name(name), stride)])
