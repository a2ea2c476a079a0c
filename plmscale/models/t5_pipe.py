"""T5 as DeepSpeed pipeline stages: [embeddings + relative biases] [encoder layer] ... [encoder norm]
[decoder layer] ... [decoder norm] [head].

DeepSpeed's pipeline engine sends exactly one floating-point tensor with a gradient between stages
(under TP it splits that tensor over the TP ranks, so it must be the same on all of them). So every
float the stages need travels packed in one flat tensor: the encoder stream, the decoder stream
(embedded on the first stage), and the two relative-attention-bias tables gathered over TP to all
heads. Encoder stages update the encoder part, decoder stages read the encoder output from it (the
encoder output is carried to the decoder stages) and update the decoder part. The int tensors
(padding masks, labels) travel beside it. Each layer takes its heads' slice of the bias tables
(gradient all-gathered back, so it is the same on every TP rank as the engine requires).

Parameter names map back to ``T5ForConditionalGeneration``'s (``canonical_name``), so initialisation
and export are the same for every PP x TP layout.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from deepspeed.pipe import LayerSpec, TiedLayerSpec
from megatron.core import parallel_state as ps
from torch import nn

from plmscale.config.schema import ExperimentConfig, ModelConfig
from plmscale.models.common import (TiedVocabParallelLogits, padded_vocab_size, padding_mask,
                                    tp_world, vocab_parallel_loss_and_accuracy)
from plmscale.models.common.megatron import vocab_parallel_embedding
from plmscale.models.common.norms import build_norm
from plmscale.models.common.relative_position import (RelativePositionBias,
                                                      relative_position_bucket)
from plmscale.models.t5 import IGNORE_INDEX, T5Layer
from plmscale.parallel.pipeline import FamilyPipeline


class _GatherHeads(torch.autograd.Function):
    """[..., heads/tp] -> [..., heads] over the TP group; backward keeps this rank's slice."""

    @staticmethod
    def forward(ctx, local):
        rank, size = tp_world()
        ctx.rank, ctx.width = rank, local.shape[-1]
        if size == 1:
            return local.clone()
        pieces = [torch.empty_like(local) for _ in range(size)]
        dist.all_gather(pieces, local.contiguous(), group=ps.get_tensor_model_parallel_group())
        return torch.cat(pieces, dim=-1)

    @staticmethod
    def backward(ctx, grad):
        return grad[..., ctx.rank * ctx.width:(ctx.rank + 1) * ctx.width].contiguous()


class _ScatterHeads(torch.autograd.Function):
    """[..., heads] -> this rank's [..., heads/tp]; backward all-gathers (equal grads on all ranks)."""

    @staticmethod
    def forward(ctx, full):
        rank, size = tp_world()
        width = full.shape[-1] // size
        return full[..., rank * width:(rank + 1) * width].contiguous()

    @staticmethod
    def backward(ctx, grad):
        return _GatherHeads.apply(grad)


_BUCKETS: dict[tuple, torch.Tensor] = {}


def _bias(full_table: torch.Tensor, length: int, bidirectional: bool, cfg: ModelConfig):
    """This rank's heads of the relative bias [1, heads/tp, length, length] from the full table."""
    key = (length, bidirectional, str(full_table.device), cfg.relative_attention_num_buckets,
           cfg.relative_attention_max_distance)
    if key not in _BUCKETS:
        positions = torch.arange(length, device=full_table.device)
        _BUCKETS[key] = relative_position_bucket(positions[None, :] - positions[:, None],
                                                 bidirectional, cfg.relative_attention_num_buckets,
                                                 cfg.relative_attention_max_distance)
    local = _ScatterHeads.apply(full_table)
    return local[_BUCKETS[key]].permute(2, 0, 1).unsqueeze(0)


class _Packed:
    """The one float tensor between stages: [encoder | decoder | encoder bias | decoder bias]."""

    def __init__(self, cfg: ModelConfig, attention_mask, decoder_attention_mask):
        b, s = attention_mask.shape
        t = decoder_attention_mask.shape[1]
        h, table = cfg.hidden_size, (cfg.relative_attention_num_buckets, cfg.num_attention_heads)
        self.shapes = [(b, s, h), (b, t, h), table, table]

    def unpack(self, flat):
        sizes = [int(torch.Size(shape).numel()) for shape in self.shapes]
        return [part.view(shape) for part, shape in zip(flat.split(sizes), self.shapes)]

    @staticmethod
    def pack(*parts):
        return torch.cat([part.reshape(-1) for part in parts])


class T5EmbeddingPipe(nn.Module):
    """First stage: embeds encoder and decoder ids and gathers both relative-bias tables."""

    def __init__(self, cfg: ModelConfig, precision: str):
        super().__init__()
        self.cfg = cfg
        padded = padded_vocab_size(cfg, tp_world()[1])
        self.shared = vocab_parallel_embedding(padded, cfg.hidden_size, precision)
        self.encoder_relative_position_bias = RelativePositionBias(cfg, bidirectional=True)
        self.decoder_relative_position_bias = RelativePositionBias(cfg, bidirectional=False)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(self, inputs):
        input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, labels = inputs
        flat = _Packed.pack(self.dropout(self.shared(input_ids)),
                            self.dropout(self.shared(decoder_input_ids)),
                            _GatherHeads.apply(self.encoder_relative_position_bias.weight),
                            _GatherHeads.apply(self.decoder_relative_position_bias.weight))
        return flat, attention_mask, decoder_attention_mask, labels


class _T5LayerPipe(T5Layer):
    """One layer as a stage: it updates its stack's part of the packed stream (``decoder=True``: the
    decoder part, reading the encoder part as memory) and passes everything else through."""

    def __init__(self, cfg: ModelConfig, precision: str, decoder: bool):
        super().__init__(cfg, precision, decoder=decoder, relative_bias=False)
        self.cfg, self.decoder = cfg, decoder

    def forward(self, inputs):
        flat, attention_mask, decoder_attention_mask, labels = inputs
        packed = _Packed(self.cfg, attention_mask, decoder_attention_mask)
        encoder, decoder, encoder_table, decoder_table = packed.unpack(flat)
        if self.decoder:
            bias = _bias(decoder_table, decoder.shape[1], False, self.cfg)
            decoder, _ = super().forward(decoder, padding_mask(decoder_attention_mask), bias,
                                         encoder, padding_mask(attention_mask))
        else:
            bias = _bias(encoder_table, encoder.shape[1], True, self.cfg)
            encoder, _ = super().forward(encoder, padding_mask(attention_mask), bias)
        flat = _Packed.pack(encoder, decoder, encoder_table, decoder_table)
        return flat, attention_mask, decoder_attention_mask, labels


class T5EncoderLayerPipe(_T5LayerPipe):
    def __init__(self, cfg: ModelConfig, precision: str):
        super().__init__(cfg, precision, decoder=False)


class T5StackEndPipe(nn.Module):
    """A stack's final norm + dropout on its part of the packed stream (``decoder=True``: then the
    labelled decoder positions only, which is all the head needs)."""

    def __init__(self, cfg: ModelConfig, decoder: bool):
        super().__init__()
        self.cfg, self.decoder = cfg, decoder
        self.final_layernorm = build_norm(cfg)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(self, inputs):
        flat, attention_mask, decoder_attention_mask, labels = inputs
        encoder, decoder, encoder_table, decoder_table = _Packed(
            self.cfg, attention_mask, decoder_attention_mask).unpack(flat)
        if self.decoder:
            return self.dropout(self.final_layernorm(decoder[labels != IGNORE_INDEX]))
        encoder = self.dropout(self.final_layernorm(encoder))
        flat = _Packed.pack(encoder, decoder, encoder_table, decoder_table)
        return flat, attention_mask, decoder_attention_mask, labels


class T5DecoderLayerPipe(_T5LayerPipe):
    def __init__(self, cfg: ModelConfig, precision: str):
        super().__init__(cfg, precision, decoder=True)


class T5HeadPipe(nn.Module):
    """Last stage: logits of the labelled positions from the tied ``shared`` copy (v1.0, scaled by
    1/sqrt(d_model)) or the own ``lm_head`` table (v1.1)."""

    def __init__(self, cfg: ModelConfig, precision: str):
        super().__init__()
        padded = padded_vocab_size(cfg, tp_world()[1])
        table = vocab_parallel_embedding(padded, cfg.hidden_size, precision)
        if cfg.tie_word_embeddings:
            self.shared = table
        else:
            self.lm_head = table
        self.output_layer = TiedVocabParallelLogits(padded, cfg.vocab_size, bias=False)
        self.output_scale = cfg.hidden_size ** -0.5 if cfg.scale_tied_logits else 1.0

    def forward(self, hidden):
        table = self.shared if hasattr(self, "shared") else self.lm_head
        if self.output_scale != 1.0:
            hidden = hidden * self.output_scale
        return self.output_layer(hidden, table.weight)


def t5_pipeline_loss(logits, labels):
    """Vocab-parallel cross entropy over the labelled positions (as the ordinary model's loss)."""
    (labels,) = labels
    loss, _ = vocab_parallel_loss_and_accuracy(logits, labels[labels != IGNORE_INDEX])
    return loss


def split_t5_batch(batch: dict) -> tuple:
    inputs = (batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"],
              batch["decoder_attention_mask"], batch["labels"])
    return inputs, (batch["labels"],)


def t5_pipeline(cfg: ExperimentConfig) -> FamilyPipeline:
    """T5 with its span-corruption loss as a ``PipelineModule`` over the current pipeline groups."""
    m, precision = cfg.model, cfg.train.precision
    encoder_layers, decoder_layers = m.num_layers, m.num_decoder_layers or m.num_layers
    tied = m.tie_word_embeddings
    embed = (TiedLayerSpec("embed", T5EmbeddingPipe, m, precision, tied_weight_attr=["shared.weight"])
             if tied else LayerSpec(T5EmbeddingPipe, m, precision))
    head = (TiedLayerSpec("embed", T5HeadPipe, m, precision, tied_weight_attr=["shared.weight"])
            if tied else LayerSpec(T5HeadPipe, m, precision))
    specs = [embed]
    specs += [LayerSpec(T5EncoderLayerPipe, m, precision) for _ in range(encoder_layers)]
    specs += [LayerSpec(T5StackEndPipe, m, decoder=False)]
    specs += [LayerSpec(T5DecoderLayerPipe, m, precision) for _ in range(decoder_layers)]
    specs += [LayerSpec(T5StackEndPipe, m, decoder=True), head]

    first = "tied_modules.embed." if tied else "0."
    last = "tied_modules.embed." if tied else f"{len(specs) - 1}."
    renames = [(first + "encoder_relative_position_bias.", "encoder.layers.0.relative_position_bias."),
               (first + "decoder_relative_position_bias.", "decoder.layers.0.relative_position_bias."),
               (first, ""), (last, ""),
               (f"{encoder_layers + 1}.", "encoder."),
               (f"{len(specs) - 2}.", "decoder.")]
    renames += [(f"{i + 1}.", f"encoder.layers.{i}.") for i in range(encoder_layers)]
    renames += [(f"{encoder_layers + 2 + i}.", f"decoder.layers.{i}.") for i in range(decoder_layers)]
    return FamilyPipeline(specs, t5_pipeline_loss, layer_type="T5(Encoder|Decoder)LayerPipe",
                          renames=renames, split_batch=split_t5_batch)
