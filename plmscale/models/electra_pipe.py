"""ELECTRA as DeepSpeed pipeline stages:

    [shared embeddings] [gen projection] [gen layer]... [gen head transform] [shared embeddings:
    logits, sample, re-embed] [disc projection] [disc layer]... [disc head]

The shared embedding module is ONE ``TiedLayerSpec`` key used twice (input, then the corrupted
input), so DeepSpeed keeps its copies on different stages identical. Every activation between pieces
has a fixed shape, so any piece may sit on either side of a stage boundary: the generator head
transforms all positions and hands on its logits bias (the vocabulary projection needs the tied word
embedding, which only the shared module holds); the MLM loss travels to the last stage with the
discriminator's hidden states. DeepSpeed's activation partitioning under TP lets only the FIRST
activation carry a gradient, so those gradient-carrying extras are packed into it (``_pack``). Sampling uses the per-sample seeds from the data, so every layout draws the same
tokens as ``ElectraForPreTraining``. Parameter names map back to that model's (``canonical_name``).
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
from plmscale.models.common.megatron import tp_world
from plmscale.models.electra import (DiscriminatorHead, corrupt, embedding_width, generator_config,
                                     rtd_loss_and_accuracy, sample_from_logits)
from plmscale.parallel.pipeline import FamilyPipeline

SHARED = ["word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight",
          "LayerNorm.weight", "LayerNorm.bias"]


class ElectraSharedPipe(Embeddings):
    """The shared embedding tables; ``embed_input`` on the first stage, ``resample`` after the
    generator (logits -> MLM loss -> samples -> embedded corrupted input)."""

    def __init__(self, cfg: ModelConfig, precision: str):
        super().__init__(cfg, precision, embedding_size=embedding_width(cfg))
        self.cfg = cfg
        # No bias here (it would have no gradient on the first stage's copy): it arrives as input.
        self.logits = TiedVocabParallelLogits(self.padded_vocab_size, cfg.vocab_size, bias=False)


def _pack(hidden: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
    """[b, s, h] hidden states + a 1-d tensor -> one flat tensor (see the module docstring), zero-
    padded to a multiple of the TP size (DeepSpeed splits it evenly over the TP ranks)."""
    parts = [hidden.reshape(-1), extra.reshape(-1)]
    padding = -(parts[0].numel() + parts[1].numel()) % tp_world()[1]
    return torch.cat(parts + [extra.new_zeros(padding)])


def _unpack(packed: torch.Tensor, like: torch.Tensor, width: int, extra: int):
    """Inverse of ``_pack``: ``like`` is a [b, s] tensor giving the leading shape, ``extra`` the
    length of the packed 1-d tensor."""
    n = like.numel() * width
    return packed[:n].view(*like.shape, width), packed[n:n + extra]


def embed_input(shared: ElectraSharedPipe, inputs):
    input_ids, token_types, attention, labels, seeds = inputs
    return shared(input_ids, token_types), input_ids, token_types, attention, labels, seeds


def resample(shared: ElectraSharedPipe, inputs):
    packed, input_ids, token_types, attention, labels, seeds = inputs
    transformed, bias = _unpack(packed, input_ids, embedding_width(shared.cfg),
                                shared.padded_vocab_size // tp_world()[1])
    selected = labels != IGNORE_INDEX
    logits = shared.logits(transformed[selected], shared.word_embeddings.weight) + bias
    sampled = sample_from_logits(logits, shared.cfg.vocab_size, seeds, selected.sum(-1))
    mlm_loss, _ = vocab_parallel_loss_and_accuracy(logits, labels[selected])
    corrupted, replaced = corrupt(input_ids, labels, sampled)
    return _pack(shared(corrupted, token_types), mlm_loss), attention, replaced.long()


class ElectraProjectPipe(nn.Module):
    """A network's E -> H projection (absent when E == H); passes the other activations on."""

    def __init__(self, cfg: ModelConfig, embedding_size: int, packed: bool = False):
        super().__init__()
        self.embeddings_project = (nn.Linear(embedding_size, cfg.hidden_size)
                                   if embedding_size != cfg.hidden_size else None)
        self.packed, self.width = packed, embedding_size

    def forward(self, inputs):
        hidden, *rest = inputs
        if self.packed:  # discriminator: (packed hidden + MLM loss, attention, replaced)
            hidden, loss = _unpack(hidden, rest[0], self.width, 1)
        if self.embeddings_project is not None:
            hidden = self.embeddings_project(hidden)
        return (_pack(hidden, loss) if self.packed else hidden, *rest)


class ElectraLayerPipe(PostLNLayer):
    """A generator layer (activations: hidden, ids, types, attention, labels, seeds) or, ``packed``,
    a discriminator layer (activations: packed hidden + MLM loss, attention, replaced)."""

    def __init__(self, cfg: ModelConfig, precision: str, packed: bool):
        super().__init__(cfg, precision)
        self.packed, self.width = packed, cfg.hidden_size

    def forward(self, inputs):
        if not self.packed:
            hidden, *rest = inputs
            return (super().forward(hidden, padding_mask(inputs[3])), *rest)
        packed, attention, replaced = inputs
        hidden, loss = _unpack(packed, attention, self.width, 1)
        hidden = super().forward(hidden, padding_mask(attention))
        return _pack(hidden, loss), attention, replaced


class _Bias(nn.Module):
    def __init__(self, padded_vocab_size: int, vocab_size: int):
        super().__init__()
        self.bias = TiedVocabParallelLogits(padded_vocab_size, vocab_size).bias


class ElectraGeneratorTransformPipe(nn.Module):
    """dense(H_gen -> E) -> GELU (erf) -> LayerNorm on every position; hands on the logits bias."""

    def __init__(self, cfg: ModelConfig, padded_vocab_size: int):
        super().__init__()
        gen, width = generator_config(cfg), embedding_width(cfg)
        self.dense = nn.Linear(gen.hidden_size, width)
        self.LayerNorm = nn.LayerNorm(width, eps=cfg.layernorm_epsilon)
        self.logits = _Bias(padded_vocab_size, cfg.vocab_size)

    def forward(self, inputs):
        hidden, input_ids, token_types, attention, labels, seeds = inputs
        transformed = self.LayerNorm(F.gelu(self.dense(hidden)))
        return _pack(transformed, self.logits.bias), input_ids, token_types, attention, labels, seeds


class ElectraDiscriminatorHeadPipe(DiscriminatorHead):
    def forward(self, inputs):
        packed, attention, replaced = inputs
        hidden, mlm_loss = _unpack(packed, attention, self.dense.in_features, 1)
        return super().forward(hidden), attention, replaced, mlm_loss


def _loss(rtd_weight: float):
    def loss_fn(outputs, _labels):
        rtd_logits, attention, replaced, mlm_loss = outputs
        rtd_loss, _ = rtd_loss_and_accuracy(rtd_logits, replaced.float(), attention)
        return mlm_loss.squeeze(0) + rtd_weight * rtd_loss
    return loss_fn


def _split_batch(batch: dict) -> tuple:
    inputs = (batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
              batch["mlm_labels"], batch["sampling_seed"])
    return inputs, (batch["mlm_labels"],)


def electra_pipeline(cfg: ExperimentConfig) -> FamilyPipeline:
    """ELECTRA (generator + discriminator) as a ``PipelineModule`` over the current pipeline groups."""
    from plmscale.models.common.megatron import padded_vocab_size
    m, precision = cfg.model, cfg.train.precision
    gen, width = generator_config(m), embedding_width(m)
    padded = padded_vocab_size(m, tp_world()[1])
    specs = [TiedLayerSpec("shared", ElectraSharedPipe, m, precision, forward_fn=embed_input,
                           tied_weight_attr=SHARED),
             LayerSpec(ElectraProjectPipe, gen, width)]
    specs += [LayerSpec(ElectraLayerPipe, gen, precision, False) for _ in range(gen.num_layers)]
    transform = len(specs)
    specs += [LayerSpec(ElectraGeneratorTransformPipe, m, padded),
              TiedLayerSpec("shared", ElectraSharedPipe, m, precision, forward_fn=resample,
                            tied_weight_attr=SHARED),
              LayerSpec(ElectraProjectPipe, m, width, True)]
    first_disc = len(specs)
    specs += [LayerSpec(ElectraLayerPipe, m, precision, True) for _ in range(m.num_layers)]
    specs += [LayerSpec(ElectraDiscriminatorHeadPipe, m)]
    renames = [("tied_modules.shared.", "embeddings."), ("1.", "generator."),
               (f"{transform}.", "generator_head."), (f"{first_disc - 1}.", "discriminator."),
               (f"{len(specs) - 1}.", "discriminator_head.")]
    renames += [(f"{2 + i}.", f"generator.layers.{i}.") for i in range(gen.num_layers)]
    renames += [(f"{first_disc + i}.", f"discriminator.layers.{i}.") for i in range(m.num_layers)]
    return FamilyPipeline(specs, _loss(cfg.objective.rtd_weight), layer_type="ElectraLayerPipe",
                          renames=renames, split_batch=_split_batch)

