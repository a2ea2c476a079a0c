"""ELECTRA (Clark et al. 2020): a small masked-LM generator fills the masked positions with samples
from its softmax; the discriminator classifies every token as original or replaced (RTD,
``plmscale.objectives.replaced_token``).

Both networks are BERT encoders (``PostLNLayer``) and share ONE embedding module (word, position and
token-type tables + their LayerNorm, width ``embedding_size``), as the reference implementation's
``electra/embeddings`` scope; each network projects the shared embeddings to its own width when they
differ (HF's ``embeddings_project``). The generator's output projection is tied to the shared word
embeddings. The exported halves are HF ``ElectraForPreTraining`` (discriminator) and
``ElectraForMaskedLM`` (generator), each with its own copy of the shared tables.

Pieces: [embed] [generator] [generator head transform] [embeddings again: logits, sample, embed
the corrupted input] [discriminator] [discriminator head + losses]. The generator's logits bias
travels gathered over TP from its head to the sampling piece (it may cross a stage boundary).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.families.bert.model import MaskedLMHead, encoder_pieces
from plmscale.families.pieces import Piece, PiecewiseModel
from plmscale.models.common import (Embeddings, gather_vocab_logits, tp_world,
                                    vocab_parallel_loss_and_accuracy)
from plmscale.models.common.heads import (GatherFromTensorParallel, ScatterToTensorParallel,
                                          real_columns, tied_logits)
from plmscale.objectives import IGNORE_INDEX
from plmscale.objectives.replaced_token import corrupt, rtd_loss_and_accuracy, sample_from_logits


def embedding_width(cfg: ModelConfig) -> int:
    """E: the shared embedding tables' width (``hidden_size`` unless factorised)."""
    return cfg.embedding_size or cfg.hidden_size


def generator_config(cfg: ModelConfig) -> ModelConfig:
    """The generator's architecture: the discriminator's with the ``generator_*`` sizes."""
    hidden = cfg.generator_hidden_size or cfg.hidden_size
    return dataclasses.replace(
        cfg, hidden_size=hidden,
        num_attention_heads=cfg.generator_num_attention_heads or cfg.num_attention_heads,
        ffn_hidden_size=cfg.generator_ffn_hidden_size or 4 * hidden,
        num_layers=cfg.generator_num_layers or cfg.num_layers,
        embedding_size=embedding_width(cfg))


def generator_head(gen: ModelConfig) -> MaskedLMHead:
    """BERT's MLM head at the embedding width: dense(H_gen -> E) -> GELU -> LayerNorm(E) -> logits
    tied to the shared word embeddings. GELU is the erf form whatever ``gelu_approximate`` says, as
    in HF's ``ElectraGeneratorPredictions``."""
    return MaskedLMHead(dataclasses.replace(gen, gelu_approximate="none"), output_size=gen.embedding_size)


class DiscriminatorHead(nn.Module):
    """dense -> GELU -> dense to one logit per token (HF's ``ElectraDiscriminatorPredictions``)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.approximate = cfg.gelu_approximate
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dense_prediction = nn.Linear(cfg.hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.dense_prediction(F.gelu(self.dense(hidden), approximate=self.approximate)).squeeze(-1)


def _check_sizes(cfg: ModelConfig, gen: ModelConfig) -> None:
    tp = tp_world()[1]
    for name, c in (("", cfg), ("generator_", gen)):
        if c.num_attention_heads % tp or c.ffn_hidden_size % tp:
            raise ValueError(f"model.{name}num_attention_heads={c.num_attention_heads} and "
                             f"model.{name}ffn_hidden_size={c.ffn_hidden_size} must be divisible "
                             f"by tensor_model_parallel_size={tp}")
        if c.hidden_size % c.num_attention_heads:
            raise ValueError(f"model.{name}hidden_size={c.hidden_size} is not divisible by "
                             f"model.{name}num_attention_heads={c.num_attention_heads}")


def _network(c: ModelConfig, width: int, precision: str, name: str) -> list[Piece]:
    """One network's pieces on ``state["hidden"]``: optional E -> H projection, then BERT's layer
    pieces (``encoder_pieces`` without its embedding pieces: the networks share one embedding)."""
    pieces = encoder_pieces(c, precision, name)[1:-1]
    if width == c.hidden_size:
        return pieces
    project = Piece({f"{name}.embeddings_project": lambda: nn.Linear(width, c.hidden_size)},
                    lambda linear, state: {**state, "hidden": linear(state["hidden"])})
    return [project] + pieces


def electra_pieces(cfg: ModelConfig, precision: str = "fp32", rtd_weight: float = 50.0) -> list[Piece]:
    """Generator + discriminator with shared embeddings; loss = MLM_gen + rtd_weight * RTD."""
    gen, width = generator_config(cfg), embedding_width(cfg)
    _check_sizes(cfg, gen)
    embeddings = {"embeddings": lambda: Embeddings(cfg, precision, embedding_size=width)}

    def embed(module, state):
        return {**state, "hidden": module(state["input_ids"], state.get("token_type_ids"))}

    def transform(head, state):  # every position: the shape must not depend on the masking
        hidden = head.LayerNorm(F.gelu(head.dense(state["hidden"]), approximate=head.approximate))
        return {**state, "hidden": hidden, "generator_bias": GatherFromTensorParallel.apply(head.logits.bias)}

    def sample_and_embed(module, state):
        labels, bias = state["mlm_labels"], ScatterToTensorParallel.apply(state["generator_bias"])
        selected = labels != IGNORE_INDEX  # the generator predicts (and samples) masked positions only
        logits = tied_logits(state["hidden"][selected], module.word_embeddings.weight, bias,
                             real_columns(bias.shape[0], cfg.vocab_size))
        # Before the loss: megatron's vocab-parallel cross entropy edits its input in place.
        sampled = sample_from_logits(logits, cfg.vocab_size, state.get("sampling_seed"),
                                     selected.sum(-1))
        mlm_loss, mlm_accuracy = vocab_parallel_loss_and_accuracy(logits, labels[selected])
        corrupted, replaced = corrupt(state["input_ids"], labels, sampled)
        rest = {k: v for k, v in state.items() if k not in ("hidden", "generator_bias")}
        return {**rest, "hidden": module(corrupted, state.get("token_type_ids")),
                "replaced": replaced, "mlm_loss": mlm_loss, "mlm_accuracy": mlm_accuracy}

    def losses(head, state):
        rtd_loss, rtd_accuracy = rtd_loss_and_accuracy(head(state["hidden"]), state["replaced"],
                                                       state.get("attention_mask"))
        return {"loss": state["mlm_loss"] + rtd_weight * rtd_loss, "mlm_loss": state["mlm_loss"],
                "mlm_accuracy": state["mlm_accuracy"], "rtd_loss": rtd_loss,
                "rtd_accuracy": rtd_accuracy}

    head = {"generator_head": lambda: generator_head(gen)}
    return ([Piece(embeddings, embed)] + _network(gen, width, precision, "generator")
            + [Piece(head, transform), Piece(embeddings, sample_and_embed)]
            + _network(cfg, width, precision, "discriminator")
            + [Piece({"discriminator_head": lambda: DiscriminatorHead(cfg)}, losses)])


class ElectraForPreTraining(PiecewiseModel):
    """Generator + discriminator with shared embeddings. ``forward(batch)`` needs ``input_ids`` (masked),
    ``mlm_labels`` (original ids at masked positions, -100 elsewhere), ``attention_mask`` and
    optionally ``token_type_ids``; loss = MLM_gen + rtd_weight * RTD."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32", rtd_weight: float = 50.0):
        super().__init__(electra_pieces(cfg, precision, rtd_weight), cfg)

    @torch.no_grad()
    def logits(self, input_ids, token_type_ids=None, attention_mask=None):
        """(discriminator logits [b, s], generator full-vocabulary MLM logits [b, s, V]) for the same
        input, as HF's ``ElectraForPreTraining`` and ``ElectraForMaskedLM`` return them."""
        state = {"hidden": self.embeddings(input_ids, token_type_ids),
                 "attention_mask": attention_mask}
        gen = self.run(state, self.pieces_under("generator."))["hidden"]
        disc = self.discriminator_head(self.run(state, self.pieces_under("discriminator."))["hidden"])
        gen = self.generator_head(gen, self.embeddings.word_embeddings.weight)
        return disc, gather_vocab_logits(gen, self.cfg.vocab_size)
