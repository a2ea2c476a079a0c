"""ALBERT as DeepSpeed pipeline stages: [embeddings + E->H projection] [layer] x num_layers [heads]
[tied logits].

The shared layer set stays ONE parameter set across the pipeline: every depth is a
``TiedLayerSpec`` with the same key, so DeepSpeed builds one module per stage, applies it at each of
that stage's depths, and keeps the stages' copies identical by summing their gradients (as it does
for the input / output word embeddings). Without ``share_layer_parameters`` each depth is its own
``LayerSpec``. Activations between stages are (hidden, attention_mask, mlm_labels); the SOP head
needs only the [CLS] state. Parameter names map back to ``AlbertForPreTraining``'s.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from deepspeed.pipe import LayerSpec, TiedLayerSpec
from torch import nn

from plmscale.config.schema import ExperimentConfig, ModelConfig
from plmscale.models.bert_pipe import BertLayerPipe, BertTiedLogitsPipe, bert_pipeline_loss
from plmscale.models.common import Embeddings, PostLNLayer
from plmscale.models.common.masked_lm import IGNORE_INDEX
from plmscale.models.roberta_pipe import roberta_pipeline_loss
from plmscale.parallel.pipeline import FamilyPipeline


class AlbertEmbeddingPipe(Embeddings):
    """First stage: (input_ids, token_type_ids, attention_mask, mlm_labels) -> E-wide embeddings
    projected to the hidden size (``embedding_hidden_mapping_in``)."""

    def __init__(self, cfg: ModelConfig, precision: str):
        super().__init__(cfg, precision, embedding_size=cfg.embedding_size or cfg.hidden_size)
        self.embedding_hidden_mapping_in = nn.Linear(cfg.embedding_size or cfg.hidden_size,
                                                     cfg.hidden_size)

    def forward(self, inputs):
        input_ids, token_type_ids, attention_mask, mlm_labels = inputs
        hidden = self.embedding_hidden_mapping_in(super().forward(input_ids, token_type_ids))
        return hidden, attention_mask, mlm_labels


class AlbertLayerPipe(BertLayerPipe):
    """One application of the (shared) post-LN layer."""


class _MaskedLMTransform(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        size = cfg.embedding_size or cfg.hidden_size
        self.dense = nn.Linear(cfg.hidden_size, size)
        self.LayerNorm = nn.LayerNorm(size, eps=cfg.layernorm_epsilon)


class AlbertHeadsPipe(nn.Module):
    """Pooler + SOP head, and the MLM transform (H -> E) on the masked positions only (attribute
    names as in ``AlbertForPreTraining``)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.approximate = cfg.gelu_approximate
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.sop_head = nn.Linear(cfg.hidden_size, 2)
        self.lm_head = _MaskedLMTransform(cfg)

    def forward(self, inputs):
        hidden, _, mlm_labels = inputs
        sop_logits = self.sop_head(torch.tanh(self.pooler(hidden[:, 0])))
        selected = self.lm_head.dense(hidden[mlm_labels != IGNORE_INDEX])
        selected = self.lm_head.LayerNorm(F.gelu(selected, approximate=self.approximate))
        return selected, sop_logits


class AlbertTiedLogitsPipe(BertTiedLogitsPipe):
    """BERT's tied logits over the E-wide word embeddings."""

    def __init__(self, cfg: ModelConfig, precision: str):
        super().__init__(dataclasses.replace(cfg, hidden_size=cfg.embedding_size or cfg.hidden_size),
                         precision)


def _layer_parameter_names(cfg: ModelConfig, precision: str) -> list[str]:
    with torch.device("meta"):
        return [name for name, _ in PostLNLayer(cfg, precision).named_parameters()]


def albert_pipeline(cfg: ExperimentConfig) -> FamilyPipeline:
    """ALBERT (MLM + SOP, or MLM only) as a ``PipelineModule`` over the current pipeline groups."""
    m, precision = cfg.model, cfg.train.precision
    sop = cfg.objective.sentence_order_prediction
    tied = dict(tied_weight_attr=["word_embeddings.weight"])
    specs = [TiedLayerSpec("embed", AlbertEmbeddingPipe, m, precision, **tied)]
    renames = [("tied_modules.embed.embedding_hidden_mapping_in.", "albert.embedding_hidden_mapping_in."),
               ("tied_modules.embed.logits.", "lm_head.logits."),
               ("tied_modules.embed.", "albert.embeddings."),
               (f"{m.num_layers + 1}.", "")]
    if m.share_layer_parameters:
        layer_names = _layer_parameter_names(m, precision)
        specs += [TiedLayerSpec("layer", AlbertLayerPipe, m, precision, tied_weight_attr=layer_names)
                  for _ in range(m.num_layers)]
        renames.append(("tied_modules.layer.", "albert.layer_groups.0."))
    else:
        specs += [LayerSpec(AlbertLayerPipe, m, precision) for _ in range(m.num_layers)]
        renames += [(f"{i + 1}.", f"albert.layer_groups.{i}.") for i in range(m.num_layers)]
    specs += [LayerSpec(AlbertHeadsPipe, m),
              TiedLayerSpec("embed", AlbertTiedLogitsPipe, m, precision, **tied)]

    def split_batch(batch: dict) -> tuple:
        inputs = (batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                  batch["mlm_labels"])
        if sop:
            return inputs, (batch["mlm_labels"], batch["sentence_order_label"])
        return inputs, batch["mlm_labels"]

    def loss(outputs, labels):  # MLM + SOP is BERT's MLM + NSP loss with SOP labels
        if sop:
            return bert_pipeline_loss(outputs, labels)
        return roberta_pipeline_loss(outputs[0], labels)

    return FamilyPipeline(specs, loss, layer_type="AlbertLayerPipe", renames=renames,
                          split_batch=split_batch)
