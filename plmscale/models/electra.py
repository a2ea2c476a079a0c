"""ELECTRA (Clark et al. 2020): a small masked-LM generator fills the masked positions with samples
from its softmax; the discriminator classifies every token as original or replaced (RTD).

Both networks are BERT encoders (``PostLNLayer``) and share ONE embedding module (word, position and
token-type tables + their LayerNorm, width ``embedding_size``), as the reference implementation's
``electra/embeddings`` scope; each network projects the shared embeddings to its own width when they
differ (HF's ``embeddings_project``). The generator's output projection is tied to the shared word
embeddings. The exported halves are HF ``ElectraForPreTraining`` (discriminator) and
``ElectraForMaskedLM`` (generator), each with its own copy of the shared tables.

Sampling is not differentiated: token ids are drawn under ``no_grad`` from the detached, TP-gathered
logits, so the RTD loss reaches the shared embeddings and the discriminator but never a
generator-only parameter. The noise of each sample comes from a seed the data carries (a function of
the sample index), over the true (unpadded) vocabulary, so every TP rank, TP/PP/DP layout and resumed
run draws the same tokens.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.models.bert import IGNORE_INDEX, MaskedLMHead
from plmscale.models.common import (Embeddings, PostLNLayer, gather_vocab_logits, padding_mask,
                                    tp_world, vocab_parallel_loss_and_accuracy)
from plmscale.models.family import Family, imported_on_call


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


class ElectraEncoder(nn.Module):
    """Shared embeddings (computed by the caller) -> optional E->H projection -> post-LN layers."""

    def __init__(self, cfg: ModelConfig, embedding_size: int, precision: str = "fp32"):
        super().__init__()
        self.embeddings_project = (nn.Linear(embedding_size, cfg.hidden_size)
                                   if embedding_size != cfg.hidden_size else None)
        self.layers = nn.ModuleList(PostLNLayer(cfg, precision) for _ in range(cfg.num_layers))

    def forward(self, embedded: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        hidden = self.embeddings_project(embedded) if self.embeddings_project is not None else embedded
        for layer in self.layers:
            hidden = layer(hidden, mask)
        return hidden


class GeneratorHead(MaskedLMHead):
    """BERT's MLM head at the embedding width: dense(H_gen -> E) -> GELU -> LayerNorm(E) -> logits
    tied to the shared word embeddings. GELU is the erf form whatever ``gelu_approximate`` says, as
    in HF's ``ElectraGeneratorPredictions``."""

    def __init__(self, cfg: ModelConfig, padded_vocab_size: int):
        width = embedding_width(cfg)
        super().__init__(dataclasses.replace(cfg, hidden_size=width, gelu_approximate="none"),
                         padded_vocab_size)
        self.dense = nn.Linear(cfg.hidden_size, width)


class DiscriminatorHead(nn.Module):
    """dense -> GELU -> dense to one logit per token (HF's ``ElectraDiscriminatorPredictions``)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.approximate = cfg.gelu_approximate
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dense_prediction = nn.Linear(cfg.hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.dense_prediction(F.gelu(self.dense(hidden), approximate=self.approximate)).squeeze(-1)


@torch.no_grad()
def sample_from_logits(logits: torch.Tensor, true_vocab_size: int,
                       sample_seeds: torch.Tensor | None = None,
                       rows_per_sample: torch.Tensor | None = None) -> torch.Tensor:
    """One token id per row of vocab-parallel ``logits`` [n, V/tp], drawn from their softmax.

    Gumbel-max over the gathered, unpadded logits, so the noise has the same shape for any TP size.
    With ``sample_seeds`` [b] (from the data: a pure function of the sample index), sample i's rows
    (``rows_per_sample[i]`` of them, in order) get noise from a generator seeded by its seed: the
    same draw on every rank, layout (TP, PP, DP) and resume. Without, the noise comes from the
    default stream, which ``plmscale.parallel.random`` keeps in step across a TP group.
    """
    full = gather_vocab_logits(logits.detach(), true_vocab_size).float()
    if sample_seeds is None:
        uniform = torch.rand(full.shape, device=full.device)
    else:
        pieces = []
        for seed, rows in zip(sample_seeds.tolist(), rows_per_sample.tolist()):
            generator = torch.Generator(device=full.device).manual_seed(int(seed))
            pieces.append(torch.rand((rows, full.shape[1]), generator=generator,
                                     device=full.device))
        uniform = torch.cat(pieces) if pieces else full.new_empty(full.shape)
    gumbel = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(torch.float32).tiny)))
    return (full + gumbel).argmax(-1)


@torch.no_grad()
def corrupt(input_ids: torch.Tensor, labels: torch.Tensor, sampled: torch.Tensor):
    """(discriminator input, RTD targets): masked positions hold the generator's samples; a sample
    equal to the original token counts as original (as in the paper)."""
    selected = labels != IGNORE_INDEX
    original = torch.where(selected, labels, input_ids)
    corrupted = input_ids.clone()
    corrupted[selected] = sampled
    return corrupted, (corrupted != original).float()


def rtd_loss_and_accuracy(rtd_logits: torch.Tensor, replaced: torch.Tensor,
                          attention: torch.Tensor | None):
    """Binary cross entropy of the per-token logits over the real (non-padding) tokens."""
    active = (attention.bool() if attention is not None
              else torch.ones_like(replaced, dtype=torch.bool))
    logits, targets = rtd_logits.float()[active], replaced[active]
    loss = F.binary_cross_entropy_with_logits(logits, targets)
    return loss, ((logits > 0).float() == targets).float().mean()


class ElectraForPreTraining(nn.Module):
    """Generator + discriminator with shared embeddings. ``forward(batch)`` needs ``input_ids`` (masked),
    ``mlm_labels`` (original ids at masked positions, -100 elsewhere), ``attention_mask`` and
    optionally ``token_type_ids``; loss = MLM_gen + rtd_weight * RTD."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32", rtd_weight: float = 50.0):
        super().__init__()
        gen = generator_config(cfg)
        tp = tp_world()[1]
        for name, c in (("", cfg), ("generator_", gen)):
            if c.num_attention_heads % tp or c.ffn_hidden_size % tp:
                raise ValueError(f"model.{name}num_attention_heads={c.num_attention_heads} and "
                                 f"model.{name}ffn_hidden_size={c.ffn_hidden_size} must be divisible "
                                 f"by tensor_model_parallel_size={tp}")
            if c.hidden_size % c.num_attention_heads:
                raise ValueError(f"model.{name}hidden_size={c.hidden_size} is not divisible by "
                                 f"model.{name}num_attention_heads={c.num_attention_heads}")
        self.cfg, self.generator_cfg, self.rtd_weight = cfg, gen, rtd_weight
        width = embedding_width(cfg)
        self.embeddings = Embeddings(cfg, precision, embedding_size=width)
        self.generator = ElectraEncoder(gen, width, precision)
        self.generator_head = GeneratorHead(gen, self.embeddings.padded_vocab_size)
        self.discriminator = ElectraEncoder(cfg, width, precision)
        self.discriminator_head = DiscriminatorHead(cfg)

    @property
    def word_embedding_weight(self) -> torch.Tensor:
        return self.embeddings.word_embeddings.weight

    def forward(self, batch: dict) -> dict:
        input_ids, labels = batch["input_ids"], batch["mlm_labels"]
        token_types, attention = batch.get("token_type_ids"), batch.get("attention_mask")
        mask = padding_mask(attention)
        selected = labels != IGNORE_INDEX  # the generator predicts (and samples) masked positions only

        gen_hidden = self.generator(self.embeddings(input_ids, token_types), mask)
        gen_logits = self.generator_head(gen_hidden[selected], self.word_embedding_weight)
        # Before the loss: megatron's vocab-parallel cross entropy edits its input in place.
        sampled = sample_from_logits(gen_logits, self.cfg.vocab_size, batch.get("sampling_seed"),
                                     selected.sum(-1))
        mlm_loss, mlm_accuracy = vocab_parallel_loss_and_accuracy(gen_logits, labels[selected])

        corrupted, replaced = corrupt(input_ids, labels, sampled)
        disc_hidden = self.discriminator(self.embeddings(corrupted, token_types), mask)
        rtd_loss, rtd_accuracy = rtd_loss_and_accuracy(self.discriminator_head(disc_hidden),
                                                       replaced, attention)
        return {"loss": mlm_loss + self.rtd_weight * rtd_loss,
                "mlm_loss": mlm_loss, "mlm_accuracy": mlm_accuracy,
                "rtd_loss": rtd_loss, "rtd_accuracy": rtd_accuracy}

    @torch.no_grad()
    def logits(self, input_ids, token_type_ids=None, attention_mask=None):
        """(discriminator logits [b, s], generator full-vocabulary MLM logits [b, s, V]) for the same
        input, as HF's ``ElectraForPreTraining`` and ``ElectraForMaskedLM`` return them."""
        mask = padding_mask(attention_mask)
        embedded = self.embeddings(input_ids, token_type_ids)
        disc = self.discriminator_head(self.discriminator(embedded, mask))
        gen = self.generator_head(self.generator(embedded, mask), self.word_embedding_weight)
        return disc, gather_vocab_logits(gen, self.cfg.vocab_size)


class ElectraSamples:
    """BERT's samples without NSP (one [CLS] A [SEP] B [SEP] sequence of consecutive text), plus
    ``sampling_seed``: the generator's sampling noise for this sample, from (seed, index) alone."""

    def __init__(self, corpus, cfg):
        from plmscale.data.bert_samples import BertSamples
        objective = dataclasses.replace(cfg.objective, next_sentence_prediction=False)
        self.inner = BertSamples(corpus, corpus.tokens, cfg.data, objective, cfg.train.seed)
        self.seed = cfg.train.seed

    def __call__(self, index: int) -> dict:
        sample = self.inner(index)
        del sample["next_sentence_label"]
        sample["sampling_seed"] = np.int64(np.random.default_rng([self.seed, index, 1])
                                           .integers(2**62))
        return sample


FAMILY = Family(
    name="electra",
    build=lambda cfg: ElectraForPreTraining(cfg.model, cfg.train.precision,
                                            rtd_weight=cfg.objective.rtd_weight),
    samples=lambda corpus, cfg: ElectraSamples(corpus, cfg),
    hf_config=imported_on_call("plmscale.export.electra", "hf_config"),
    hf_model_class="ElectraForPreTraining",
    to_hf_state_dict=imported_on_call("plmscale.export.electra", "to_hf_state_dict"),
    pipeline=imported_on_call("plmscale.models.electra_pipe", "electra_pipeline"),
)
