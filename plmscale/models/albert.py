"""ALBERT (Lan et al. 2019): factorised embeddings (width E, projected to H), ONE set of layer
parameters applied at every depth, BERT's MLM head working at width E, and sentence-order prediction
(SOP) instead of NSP; the same architecture as HF ``AlbertForPreTraining``.

The shared layer is a single module (``albert.layer_groups.0``) used ``num_layers`` times, so it is
one parameter set with one gradient (the sum over depths). Under pipeline parallelism it must stay
one set: every stage that runs some of the depths holds a copy tied to the others (DeepSpeed
``TiedLayerSpec``), as the input and output word embeddings are tied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.models.bert import MaskedLMHead
from plmscale.models.common import Embeddings, PostLNLayer, gather_vocab_logits, padding_mask
from plmscale.models.common.masked_lm import masked_lm_metrics
from plmscale.models.family import Family, imported_on_call


class AlbertEncoder(nn.Module):
    """Embeddings at width E -> ``embedding_hidden_mapping_in`` (E -> H) -> ``num_layers``
    applications of the layer groups (one group when ``share_layer_parameters``; HF's
    ``num_hidden_groups``, layer i uses group ``i * groups // num_layers``)."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32"):
        super().__init__()
        self.num_layers = cfg.num_layers
        size = cfg.embedding_size or cfg.hidden_size
        self.embeddings = Embeddings(cfg, precision, embedding_size=size)
        self.embedding_hidden_mapping_in = nn.Linear(size, cfg.hidden_size)
        groups = 1 if cfg.share_layer_parameters else cfg.num_layers
        self.layer_groups = nn.ModuleList(PostLNLayer(cfg, precision) for _ in range(groups))

    def layer(self, depth: int) -> PostLNLayer:
        """The module applied at ``depth`` (the same one for every depth when shared)."""
        return self.layer_groups[depth * len(self.layer_groups) // self.num_layers]

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        mask = padding_mask(attention_mask)
        hidden = self.embedding_hidden_mapping_in(self.embeddings(input_ids, token_type_ids))
        for depth in range(self.num_layers):
            hidden = self.layer(depth)(hidden, mask)
        return hidden


class AlbertForPreTraining(nn.Module):
    """ALBERT with the MLM head (H -> E, tied to the E-wide embeddings) and the SOP head on the
    pooled [CLS]. ``forward(batch)``: MLM loss, plus SOP when the batch has ``sentence_order_label``
    (0 = segments in order, 1 = swapped: HF's convention) and the objective enables it."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32",
                 sentence_order_prediction: bool = True):
        super().__init__()
        self.cfg = cfg
        self.albert = AlbertEncoder(cfg, precision)
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.lm_head = MaskedLMHead(cfg, self.albert.embeddings.padded_vocab_size,
                                    output_size=cfg.embedding_size or cfg.hidden_size)
        self.sop_head = nn.Linear(cfg.hidden_size, 2)
        self.sentence_order_prediction = sentence_order_prediction

    def _sop_logits(self, hidden):
        return self.sop_head(torch.tanh(self.pooler(hidden[:, 0])))

    def forward(self, batch: dict) -> dict:
        hidden = self.albert(batch["input_ids"], batch.get("token_type_ids"),
                             batch.get("attention_mask"))
        out = masked_lm_metrics(self.lm_head, hidden, batch["mlm_labels"],
                                self.albert.embeddings.word_embeddings.weight)
        out["loss"] = out["mlm_loss"]
        if self.sentence_order_prediction and "sentence_order_label" in batch:
            sop_logits = self._sop_logits(hidden)
            labels = batch["sentence_order_label"]
            out["sop_loss"] = F.cross_entropy(sop_logits.float(), labels)
            out["sop_accuracy"] = (sop_logits.argmax(-1) == labels).float().mean()
            out["loss"] = out["mlm_loss"] + out["sop_loss"]
        return out

    @torch.no_grad()
    def logits(self, input_ids, token_type_ids=None, attention_mask=None):
        """Full-vocabulary MLM logits [b, s, V] and SOP logits [b, 2], as HF's model returns them."""
        hidden = self.albert(input_ids, token_type_ids, attention_mask)
        mlm = self.lm_head(hidden, self.albert.embeddings.word_embeddings.weight)
        return gather_vocab_logits(mlm, self.cfg.vocab_size), self._sop_logits(hidden)


def _samples(corpus, cfg):
    from plmscale.data.albert_samples import AlbertSamples
    return AlbertSamples(corpus, corpus.tokens, cfg.data, cfg.objective, cfg.train.seed)


FAMILY = Family(
    name="albert",
    build=lambda cfg: AlbertForPreTraining(
        cfg.model, cfg.train.precision,
        sentence_order_prediction=cfg.objective.sentence_order_prediction),
    samples=_samples,
    hf_config=imported_on_call("plmscale.export.albert", "hf_config"),
    hf_model_class="AlbertForPreTraining",
    to_hf_state_dict=imported_on_call("plmscale.export.albert", "to_hf_state_dict"),
    pipeline=imported_on_call("plmscale.models.albert_pipe", "albert_pipeline"),
)
