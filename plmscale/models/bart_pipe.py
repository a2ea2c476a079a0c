"""BART as DeepSpeed pipeline stages: [embeddings] [encoder layer] ... [decoder layer] ... [head].

DeepSpeed's pipeline engine passes exactly one floating-point tensor with a gradient between stages,
so the encoder stream and the decoder stream travel packed in one flat tensor: the first stage embeds
both (shared word embeddings + each stack's positions and LayerNorm), encoder stages update the encoder
part, decoder stages read the encoder output from it (so the encoder output reaches every decoder
stage) and update the decoder part. The int tensors (encoder padding mask, labels) travel beside it.
The head (last stage) holds a tied copy of ``shared`` (``TiedLayerSpec``), kept equal to the first
stage's by DeepSpeed.

Parameter names map back to ``BartForConditionalGeneration``'s (``canonical_name``), so
initialisation and export are the same for every PP x TP layout.
"""

from __future__ import annotations

import torch
from deepspeed.pipe import LayerSpec, TiedLayerSpec
from torch import nn

from plmscale.config.schema import ExperimentConfig, ModelConfig
from plmscale.models.bart import IGNORE_INDEX, BartDecoderLayer, PositionsAndNorm
from plmscale.models.common import (PostLNLayer, TiedVocabParallelLogits, padded_vocab_size,
                                    padding_mask, tp_world, vocab_parallel_loss_and_accuracy)
from plmscale.models.common.megatron import vocab_parallel_embedding
from plmscale.parallel.pipeline import FamilyPipeline


def _unpack(flat: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor, hidden: int):
    """The packed stream -> (encoder [b, s, h], decoder [b, t, h])."""
    (b, s), t = attention_mask.shape, labels.shape[1]
    encoder, decoder = flat.split([b * s * hidden, b * t * hidden])
    return encoder.view(b, s, hidden), decoder.view(b, t, hidden)


def _pack(encoder: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
    return torch.cat([encoder.reshape(-1), decoder.reshape(-1)])


class BartEmbeddingPipe(nn.Module):
    """First stage: shared word embeddings of both id streams + each stack's positions/LayerNorm."""

    def __init__(self, cfg: ModelConfig, precision: str):
        super().__init__()
        self.shared = vocab_parallel_embedding(padded_vocab_size(cfg, tp_world()[1]),
                                               cfg.hidden_size, precision)
        self.encoder_embeddings = PositionsAndNorm(cfg)
        self.decoder_embeddings = PositionsAndNorm(cfg)

    def forward(self, inputs):
        input_ids, attention_mask, decoder_input_ids, labels = inputs
        flat = _pack(self.encoder_embeddings(self.shared(input_ids)),
                     self.decoder_embeddings(self.shared(decoder_input_ids)))
        return flat, attention_mask, labels


class _PackedStreamLayer:
    """Mixin for a layer stage: unpacks the stream, lets ``update`` run the layer on its stack's
    part, packs the stream again; the padding mask and the labels pass through. It comes first in
    the bases, so its ``forward`` is the stage's and ``update`` calls the layer's own."""

    def __init__(self, cfg: ModelConfig, precision: str):
        super().__init__(cfg, precision)
        self.hidden_size = cfg.hidden_size

    def forward(self, inputs):
        flat, attention_mask, labels = inputs
        encoder, decoder = _unpack(flat, attention_mask, labels, self.hidden_size)
        encoder, decoder = self.update(encoder, decoder, padding_mask(attention_mask))
        return _pack(encoder, decoder), attention_mask, labels


class BartEncoderLayerPipe(_PackedStreamLayer, PostLNLayer):
    def update(self, encoder, decoder, mask):
        return PostLNLayer.forward(self, encoder, mask), decoder


class BartDecoderLayerPipe(_PackedStreamLayer, BartDecoderLayer):
    def update(self, encoder, decoder, mask):
        return encoder, BartDecoderLayer.forward(self, decoder, encoder, mask)


class BartHeadPipe(nn.Module):
    """Last stage: logits of the labelled decoder positions from the tied ``shared`` copy."""

    def __init__(self, cfg: ModelConfig, precision: str):
        super().__init__()
        padded = padded_vocab_size(cfg, tp_world()[1])
        self.shared = vocab_parallel_embedding(padded, cfg.hidden_size, precision)
        self.lm_head = TiedVocabParallelLogits(padded, cfg.vocab_size, bias=False)
        self.hidden_size = cfg.hidden_size

    def forward(self, inputs):
        flat, attention_mask, labels = inputs
        _, decoder = _unpack(flat, attention_mask, labels, self.hidden_size)
        return self.lm_head(decoder[labels != IGNORE_INDEX], self.shared.weight)


def bart_pipeline_loss(logits, labels):
    """Vocab-parallel cross entropy over the labelled positions (as the ordinary model's loss)."""
    (labels,) = labels
    loss, _ = vocab_parallel_loss_and_accuracy(logits, labels[labels != IGNORE_INDEX])
    return loss


def split_bart_batch(batch: dict) -> tuple:
    inputs = (batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"],
              batch["labels"])
    return inputs, (batch["labels"],)


def bart_pipeline(cfg: ExperimentConfig) -> FamilyPipeline:
    """BART with its denoising loss as a ``PipelineModule`` over the current pipeline groups."""
    m, precision = cfg.model, cfg.train.precision
    encoder_layers = m.num_layers
    decoder_layers = m.num_decoder_layers if m.num_decoder_layers is not None else m.num_layers
    specs = [TiedLayerSpec("embed", BartEmbeddingPipe, m, precision,
                           tied_weight_attr=["shared.weight"])]
    specs += [LayerSpec(BartEncoderLayerPipe, m, precision) for _ in range(encoder_layers)]
    specs += [LayerSpec(BartDecoderLayerPipe, m, precision) for _ in range(decoder_layers)]
    specs += [TiedLayerSpec("embed", BartHeadPipe, m, precision, tied_weight_attr=["shared.weight"])]
    tied = "tied_modules.embed."
    renames = [(tied + "encoder_embeddings.", "encoder.embeddings."),
               (tied + "decoder_embeddings.", "decoder.embeddings."), (tied, "")]
    renames += [(f"{i + 1}.", f"encoder.layers.{i}.") for i in range(encoder_layers)]
    renames += [(f"{encoder_layers + 1 + i}.", f"decoder.layers.{i}.") for i in range(decoder_layers)]
    return FamilyPipeline(specs, bart_pipeline_loss, layer_type="Bart(Encoder|Decoder)LayerPipe",
                          renames=renames, split_batch=split_bart_batch)
