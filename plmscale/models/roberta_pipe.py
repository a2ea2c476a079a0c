"""RoBERTa as DeepSpeed pipeline stages: [embeddings] [layer] ... [layer] [MLM transform] [tied logits].

BERT's stages (``plmscale.models.bert_pipe``) without pooler and NSP; the embedding stage derives
RoBERTa's offset positions from the attention mask. Activations between stages are
(hidden, attention_mask, mlm_labels). Parameter names map back to ``RobertaForMaskedLM``'s.
"""

from __future__ import annotations

import torch.nn.functional as F
from deepspeed.pipe import LayerSpec, TiedLayerSpec
from torch import nn

from plmscale.config.schema import ExperimentConfig, ModelConfig
from plmscale.models.bert_pipe import BertLayerPipe, BertTiedLogitsPipe, _MaskedLMTransform
from plmscale.models.common import Embeddings
from plmscale.models.common.masked_lm import IGNORE_INDEX
from plmscale.models.common.heads import vocab_parallel_loss_and_accuracy
from plmscale.models.roberta import roberta_position_ids
from plmscale.parallel.pipeline import FamilyPipeline


class RobertaEmbeddingPipe(Embeddings):
    """First stage: (input_ids, attention_mask, mlm_labels) -> activations."""

    def forward(self, inputs):
        input_ids, attention_mask, mlm_labels = inputs
        positions = roberta_position_ids(attention_mask, input_ids.shape[1], self.position_offset,
                                         input_ids.device)
        return super().forward(input_ids, None, positions), attention_mask, mlm_labels


class RobertaHeadPipe(nn.Module):
    """The MLM transform (dense -> GELU -> LayerNorm) on the masked positions only; attribute names
    as in ``RobertaForMaskedLM.lm_head``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.approximate = cfg.gelu_approximate
        self.lm_head = _MaskedLMTransform(cfg)

    def forward(self, inputs):
        hidden, _, mlm_labels = inputs
        selected = self.lm_head.dense(hidden[mlm_labels != IGNORE_INDEX])
        return self.lm_head.LayerNorm(F.gelu(selected, approximate=self.approximate))


class RobertaTiedLogitsPipe(BertTiedLogitsPipe):
    """Last stage's copy of the word embedding (tied to the first stage's) + the logits bias."""

    def forward(self, transformed):
        return self.logits(transformed, self.word_embeddings.weight)


def roberta_pipeline_loss(mlm_logits, mlm_labels):
    """Vocab-parallel MLM loss on the last stage."""
    loss, _ = vocab_parallel_loss_and_accuracy(mlm_logits, mlm_labels[mlm_labels != IGNORE_INDEX])
    return loss


def split_roberta_batch(batch: dict) -> tuple:
    return (batch["input_ids"], batch["attention_mask"], batch["mlm_labels"]), batch["mlm_labels"]


def roberta_pipeline(cfg: ExperimentConfig) -> FamilyPipeline:
    """RoBERTa's MLM model as a ``PipelineModule`` over the current pipeline groups."""
    m, precision = cfg.model, cfg.train.precision
    tied = dict(tied_weight_attr=["word_embeddings.weight"])
    specs = [TiedLayerSpec("embed", RobertaEmbeddingPipe, m, precision,
                           position_offset=m.position_offset, **tied)]
    specs += [LayerSpec(BertLayerPipe, m, precision) for _ in range(m.num_layers)]
    specs += [LayerSpec(RobertaHeadPipe, m),
              TiedLayerSpec("embed", RobertaTiedLogitsPipe, m, precision, **tied)]
    renames = [("tied_modules.embed.logits.", "lm_head.logits."),
               ("tied_modules.embed.", "roberta.embeddings."),
               (f"{m.num_layers + 1}.", "")]
    renames += [(f"{i + 1}.", f"roberta.layers.{i}.") for i in range(m.num_layers)]
    return FamilyPipeline(specs, roberta_pipeline_loss, layer_type="BertLayerPipe",
                          renames=renames, split_batch=split_roberta_batch)
