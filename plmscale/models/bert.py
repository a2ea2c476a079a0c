"""BERT (Devlin et al. 2019): post-LN encoder, learned positions, token types, pooler, tied MLM head
and NSP head; the same architecture as HF ``BertForPreTraining``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.models.family import Family, imported_on_call
from plmscale.objectives.schedule import global_batch_size
from plmscale.objectives.span_boundary import SpanBoundaryHead, span_boundary_loss
from plmscale.models.common import (Embeddings, PostLNLayer, TiedVocabParallelLogits,
                                    gather_vocab_logits, padding_mask,
                                    vocab_parallel_loss_and_accuracy)

IGNORE_INDEX = -100


class BertEncoder(nn.Module):
    """Backbone: embeddings + post-LN layers; returns hidden states [b, s, h]."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32", position_offset: int = 0):
        super().__init__()
        self.embeddings = Embeddings(cfg, precision, position_offset=position_offset)
        self.layers = nn.ModuleList(PostLNLayer(cfg, precision) for _ in range(cfg.num_layers))

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, position_ids=None):
        mask = padding_mask(attention_mask)
        hidden = self.embeddings(input_ids, token_type_ids, position_ids)
        for layer in self.layers:
            hidden = layer(hidden, mask)
        return hidden


class MaskedLMHead(nn.Module):
    """dense -> GELU -> LayerNorm -> logits tied to the word embeddings (with their own bias).

    ``output_size`` is the width of the tied embeddings when it differs from hidden_size (ALBERT's
    factorised embeddings: dense maps hidden_size -> embedding_size)."""

    def __init__(self, cfg: ModelConfig, padded_vocab_size: int, output_size: int | None = None):
        super().__init__()
        size = output_size or cfg.hidden_size
        self.dense = nn.Linear(cfg.hidden_size, size)
        self.approximate = cfg.gelu_approximate
        self.LayerNorm = nn.LayerNorm(size, eps=cfg.layernorm_epsilon)
        self.logits = TiedVocabParallelLogits(padded_vocab_size, cfg.vocab_size)

    def forward(self, hidden, embedding_weight):
        hidden = self.LayerNorm(F.gelu(self.dense(hidden), approximate=self.approximate))
        return self.logits(hidden, embedding_weight)


class BertForPreTraining(nn.Module):
    """BERT with MLM + NSP heads. ``forward(batch)`` returns the losses and metrics of one batch."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32", next_sentence_prediction=True,
                 span_boundary_objective: bool = False):
        super().__init__()
        self.cfg = cfg
        self.bert = BertEncoder(cfg, precision)
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.lm_head = MaskedLMHead(cfg, self.bert.embeddings.padded_vocab_size)
        self.nsp_head = nn.Linear(cfg.hidden_size, 2)
        self.next_sentence_prediction = next_sentence_prediction
        # SpanBERT: predict each span token from its boundary tokens (objective.span_boundary_objective).
        self.sbo_head = (SpanBoundaryHead(cfg.hidden_size, layernorm_epsilon=cfg.layernorm_epsilon,
                                          gelu_approximate=cfg.gelu_approximate)
                         if span_boundary_objective else None)

    def _nsp_logits(self, hidden):
        return self.nsp_head(torch.tanh(self.pooler(hidden[:, 0])))

    def forward(self, batch: dict) -> dict:
        hidden = self.bert(batch["input_ids"], batch.get("token_type_ids"),
                           batch.get("attention_mask"))
        labels = batch["mlm_labels"]
        selected = labels != IGNORE_INDEX  # only masked positions need the vocabulary projection
        logits = self.lm_head(hidden[selected], self.bert.embeddings.word_embeddings.weight)
        mlm_loss, mlm_accuracy = vocab_parallel_loss_and_accuracy(logits, labels[selected])
        out = {"mlm_loss": mlm_loss, "mlm_accuracy": mlm_accuracy, "loss": mlm_loss}
        if self.sbo_head is not None:
            embedding_weight = self.bert.embeddings.word_embeddings.weight
            out["sbo_loss"], out["sbo_accuracy"] = span_boundary_loss(
                self.sbo_head, hidden, batch["sbo_left"], batch["sbo_right"], batch["sbo_position"],
                labels, project=lambda y: self.lm_head.logits(y, embedding_weight),
                loss_fn=vocab_parallel_loss_and_accuracy)
            out["loss"] = out["loss"] + out["sbo_loss"]
        if self.next_sentence_prediction and "next_sentence_label" in batch:
            nsp_logits = self._nsp_logits(hidden)
            nsp_loss = F.cross_entropy(nsp_logits.float(), batch["next_sentence_label"])
            out["nsp_loss"] = nsp_loss
            out["nsp_accuracy"] = (nsp_logits.argmax(-1) == batch["next_sentence_label"]).float().mean()
            out["loss"] = out["loss"] + nsp_loss
        return out

    @torch.no_grad()
    def logits(self, input_ids, token_type_ids=None, attention_mask=None):
        """Full-vocabulary MLM logits [b, s, V] and NSP logits [b, 2], as HF's model returns them."""
        hidden = self.bert(input_ids, token_type_ids, attention_mask)
        mlm = self.lm_head(hidden, self.bert.embeddings.word_embeddings.weight)
        return gather_vocab_logits(mlm, self.cfg.vocab_size), self._nsp_logits(hidden)


def _samples(corpus, cfg):
    from plmscale.data.bert_samples import BertSamples
    return BertSamples(corpus, corpus.tokens, cfg.data, cfg.objective, cfg.train.seed,
                       global_batch_size=global_batch_size(cfg))


FAMILY = Family(
    name="bert",
    build=lambda cfg: BertForPreTraining(
        cfg.model, cfg.train.precision,
        next_sentence_prediction=cfg.objective.next_sentence_prediction,
        span_boundary_objective=cfg.objective.span_boundary_objective),
    samples=_samples,
    hf_config=imported_on_call("plmscale.export.bert", "hf_config"),
    hf_model_class="BertForPreTraining",
    to_hf_state_dict=imported_on_call("plmscale.export.bert", "to_hf_state_dict"),
    pipeline=imported_on_call("plmscale.models.bert_pipe", "bert_pipeline"),
)
