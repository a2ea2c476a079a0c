"""BERT as DeepSpeed pipeline stages: [embeddings] [layer] ... [layer] [heads] [tied logits].

Activations between stages are (hidden, attention_mask, mlm_labels): the labels travel with the
hidden states so the last stage can project only the masked positions onto the vocabulary, as the
ordinary model does. Parameter names map back to ``BertForPreTraining``'s (see ``canonical_name``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from deepspeed.pipe import LayerSpec, TiedLayerSpec
from torch import nn

from plmscale.config.schema import ExperimentConfig, ModelConfig
from plmscale.models.bert import IGNORE_INDEX
from plmscale.models.common import (Embeddings, PostLNLayer, TiedVocabParallelLogits,
                                    padding_mask, vocab_parallel_loss_and_accuracy)
from plmscale.models.common.megatron import padded_vocab_size, tp_world, vocab_parallel_embedding
from plmscale.parallel.pipeline import FamilyPipeline


class BertEmbeddingPipe(Embeddings):
    """First stage: (input_ids, token_type_ids, attention_mask, mlm_labels) -> activations."""

    def forward(self, inputs):
        input_ids, token_type_ids, attention_mask, mlm_labels = inputs
        return super().forward(input_ids, token_type_ids), attention_mask, mlm_labels


class BertLayerPipe(PostLNLayer):
    def forward(self, inputs):
        hidden, attention_mask, mlm_labels = inputs
        return super().forward(hidden, padding_mask(attention_mask)), attention_mask, mlm_labels


class _MaskedLMTransform(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_epsilon)


class BertHeadsPipe(nn.Module):
    """Pooler + NSP head, and the MLM transform applied to the masked positions only (attribute
    names as in ``BertForPreTraining``)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.approximate = cfg.gelu_approximate
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.nsp_head = nn.Linear(cfg.hidden_size, 2)
        self.lm_head = _MaskedLMTransform(cfg)

    def forward(self, inputs):
        hidden, _, mlm_labels = inputs
        nsp_logits = self.nsp_head(torch.tanh(self.pooler(hidden[:, 0])))
        selected = self.lm_head.dense(hidden[mlm_labels != IGNORE_INDEX])
        selected = self.lm_head.LayerNorm(F.gelu(selected, approximate=self.approximate))
        return selected, nsp_logits


class BertTiedLogitsPipe(nn.Module):
    """Last stage's copy of the word embedding (tied to the first stage's) + the MLM logits bias."""

    def __init__(self, cfg: ModelConfig, precision: str):
        super().__init__()
        padded = padded_vocab_size(cfg, tp_world()[1])
        self.word_embeddings = vocab_parallel_embedding(padded, cfg.hidden_size, precision)
        self.logits = TiedVocabParallelLogits(padded, cfg.vocab_size)

    def forward(self, inputs):
        transformed, nsp_logits = inputs
        return self.logits(transformed, self.word_embeddings.weight), nsp_logits


def bert_pipeline_loss(outputs, labels):
    """MLM (vocab-parallel) + NSP loss on the last stage."""
    mlm_logits, nsp_logits = outputs
    mlm_labels, nsp_labels = labels
    mlm_loss, _ = vocab_parallel_loss_and_accuracy(mlm_logits, mlm_labels[mlm_labels != IGNORE_INDEX])
    return mlm_loss + F.cross_entropy(nsp_logits.float(), nsp_labels)


def split_bert_batch(batch: dict) -> tuple:
    inputs = (batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], batch["mlm_labels"])
    return inputs, (batch["mlm_labels"], batch["next_sentence_label"])


def bert_pipeline(cfg: ExperimentConfig) -> FamilyPipeline:
    """BERT with MLM + NSP as a ``PipelineModule`` over the current pipeline groups."""
    m, precision = cfg.model, cfg.train.precision
    specs = [TiedLayerSpec("embed", BertEmbeddingPipe, m, precision,
                           tied_weight_attr=["word_embeddings.weight"])]
    specs += [LayerSpec(BertLayerPipe, m, precision) for _ in range(m.num_layers)]
    specs += [LayerSpec(BertHeadsPipe, m),
              TiedLayerSpec("embed", BertTiedLogitsPipe, m, precision,
                            tied_weight_attr=["word_embeddings.weight"])]
    renames = [("tied_modules.embed.logits.", "lm_head.logits."),
               ("tied_modules.embed.", "bert.embeddings."),
               (f"{m.num_layers + 1}.", "")]
    renames += [(f"{i + 1}.", f"bert.layers.{i}.") for i in range(m.num_layers)]
    return FamilyPipeline(specs, bert_pipeline_loss, layer_type="BertLayerPipe", renames=renames,
                          split_batch=split_bert_batch)
