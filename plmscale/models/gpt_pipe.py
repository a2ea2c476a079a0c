"""GPT as DeepSpeed pipeline stages: [embeddings] [layer] ... [layer] [final norm] [tied logits].

Between stages travels the hidden state, plus the document numbers when attention is reset at
document boundaries (every layer rebuilds its mask from them). Labels go straight to the last stage
through DeepSpeed's (inputs, labels) batches. Parameter names map back to ``GPTForCausalLM``'s.
"""

from __future__ import annotations

import dataclasses

import torch
from deepspeed.pipe import LayerSpec, TiedLayerSpec
from torch import nn

from plmscale.config.schema import ExperimentConfig, ModelConfig
from plmscale.models.common import Embeddings, TiedVocabParallelLogits
from plmscale.models.common.megatron import padded_vocab_size, tp_world, vocab_parallel_embedding
from plmscale.models.common.prenorm import PreLNLayer
from plmscale.models.gpt import output_init_std
from plmscale.objectives.causal_lm import causal_lm_loss_and_accuracy, document_attention_mask
from plmscale.parallel.pipeline import FamilyPipeline


def _unpack(inputs):
    """(hidden or ids, document_ids or None) from a stage input: a tensor or a tuple."""
    if torch.is_tensor(inputs):
        return inputs, None
    return inputs[0], (inputs[1] if len(inputs) > 1 else None)


def _pack(hidden, document_ids):
    return hidden if document_ids is None else (hidden, document_ids)


class GPTEmbeddingPipe(Embeddings):
    """First stage: input_ids (+ document_ids) -> hidden (+ document_ids)."""

    def __init__(self, cfg: ModelConfig, precision: str):
        super().__init__(dataclasses.replace(cfg, type_vocab_size=0), precision, layernorm=False)

    def forward(self, inputs):
        input_ids, document_ids = _unpack(inputs)
        return _pack(super().forward(input_ids), document_ids)


class GPTLayerPipe(PreLNLayer):
    def forward(self, inputs):
        hidden, document_ids = _unpack(inputs)
        mask = document_attention_mask(document_ids) if document_ids is not None else None
        return _pack(super().forward(hidden, mask), document_ids)


class GPTFinalNormPipe(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.final_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_epsilon)

    def forward(self, inputs):
        return self.final_layernorm(_unpack(inputs)[0])


class GPTTiedLogitsPipe(nn.Module):
    """Last stage's copy of the word embedding (tied to the first stage's) as the LM head."""

    def __init__(self, cfg: ModelConfig, precision: str):
        super().__init__()
        padded = padded_vocab_size(cfg, tp_world()[1])
        self.word_embeddings = vocab_parallel_embedding(padded, cfg.hidden_size, precision)
        self.logits = TiedVocabParallelLogits(padded, cfg.vocab_size, bias=False)

    def forward(self, hidden):
        return self.logits(hidden, self.word_embeddings.weight)


def gpt_pipeline_loss(logits, labels):
    return causal_lm_loss_and_accuracy(logits, labels)[0]


def split_gpt_batch(batch: dict) -> tuple:
    inputs = (batch["input_ids"],)
    if "document_ids" in batch:
        inputs += (batch["document_ids"],)
    return inputs, batch["labels"]


def gpt_pipeline(cfg: ExperimentConfig) -> FamilyPipeline:
    """GPT with the causal LM loss as a ``PipelineModule`` over the current pipeline groups."""
    m, precision = cfg.model, cfg.train.precision
    specs = [TiedLayerSpec("embed", GPTEmbeddingPipe, m, precision,
                           tied_weight_attr=["word_embeddings.weight"])]
    specs += [LayerSpec(GPTLayerPipe, m, precision, causal=True,
                        output_init_std=output_init_std(m)) for _ in range(m.num_layers)]
    specs += [LayerSpec(GPTFinalNormPipe, m),
              TiedLayerSpec("embed", GPTTiedLogitsPipe, m, precision,
                            tied_weight_attr=["word_embeddings.weight"])]
    renames = [("tied_modules.embed.", "gpt.embeddings."), (f"{m.num_layers + 1}.", "gpt.")]
    renames += [(f"{i + 1}.", f"gpt.layers.{i}.") for i in range(m.num_layers)]
    return FamilyPipeline(specs, gpt_pipeline_loss, layer_type="GPTLayerPipe", renames=renames,
                          split_batch=split_gpt_batch)
