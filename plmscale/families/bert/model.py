"""BERT (Devlin et al. 2019): post-LN encoder, learned positions, token types, pooler, tied MLM head
and NSP head (or SpanBERT's span-boundary head); the same architecture as HF ``BertForPreTraining``.

The encoder pieces (``encoder_pieces``) and the MLM head serve the other BERT-style families too.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.families.pieces import Piece, PiecewiseModel
from plmscale.models.common import (Embeddings, PostLNLayer, TiedVocabParallelLogits,
                                    gather_vocab_logits, labelled_metrics, padded_vocab_size,
                                    padding_mask, tp_world, vocab_parallel_loss_and_accuracy)
from plmscale.models.common.mlp import is_moe_layer
from plmscale.objectives import IGNORE_INDEX
from plmscale.objectives.span_boundary import SpanBoundaryHead, span_boundary_loss


class MaskedLMHead(nn.Module):
    """dense -> GELU -> LayerNorm -> logits tied to the word embeddings (with their own bias).

    ``output_size`` is the width of the tied embeddings when it differs from hidden_size (ALBERT's
    and ELECTRA's factorised embeddings: dense maps hidden_size -> embedding_size). The logits cover
    the vocabulary padded for the current TP size, as the embeddings do."""

    def __init__(self, cfg: ModelConfig, output_size: int | None = None):
        super().__init__()
        size = output_size or cfg.hidden_size
        self.dense = nn.Linear(cfg.hidden_size, size)
        self.approximate = cfg.gelu_approximate
        self.LayerNorm = nn.LayerNorm(size, eps=cfg.layernorm_epsilon)
        self.logits = TiedVocabParallelLogits(padded_vocab_size(cfg, tp_world()[1]), cfg.vocab_size)

    def forward(self, hidden, embedding_weight):
        hidden = self.LayerNorm(F.gelu(self.dense(hidden), approximate=self.approximate))
        return self.logits(hidden, embedding_weight)


def masked_lm_metrics(head, hidden: torch.Tensor, labels: torch.Tensor,
                      embedding_weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """``mlm_loss`` and ``mlm_accuracy`` of ``head(hidden, embedding_weight)`` against ``labels``
    ([b, s], IGNORE_INDEX = not predicted), on the labelled positions (~15%) only."""
    return labelled_metrics("mlm", lambda h: head(h, embedding_weight), hidden, labels)


def sentence_pair_metrics(name: str, logits: torch.Tensor, labels: torch.Tensor, out: dict) -> dict:
    """Adds ``<name>_loss`` / ``<name>_accuracy`` of a two-way sentence-pair head (NSP, SOP) to the
    metrics ``out`` and its loss to ``out["loss"]``. Labels IGNORE_INDEX are not predicted (UniLM
    asks NSP of its bidirectional samples only); a batch without labels adds 0."""
    predicted = (labels != IGNORE_INDEX).float()
    count = predicted.sum().clamp(min=1.0)
    loss = (F.cross_entropy(logits.float(), labels, reduction="none") * predicted).sum() / count
    accuracy = ((logits.argmax(-1) == labels).float() * predicted).sum() / count
    return {**out, f"{name}_loss": loss, "loss": out["loss"] + loss, f"{name}_accuracy": accuracy}


def encoder_pieces(cfg: ModelConfig, precision: str, prefix: str,
                   embeddings: Callable[[], nn.Module] | None = None,
                   positions: Callable[[dict], torch.Tensor | None] = lambda state: None,
                   layer_path: Callable[[int], str] | None = None,
                   token_types: bool = True,
                   mask: Callable[[dict], torch.Tensor | None] | None = None,
                   read: Callable[[dict], torch.Tensor | None] = lambda state: None) -> list[Piece]:
    """[embeddings] [layer] x num_layers, then the word embeddings handed to the heads as
    ``state["word_embeddings"]``; the pieces keep ``state["hidden"]``. ``positions(state)``: position
    ids (None = 0, 1, ...); ``layer_path(depth)``: the module of each depth (ALBERT shares one);
    ``token_types=False``: the batch's token types are not read (every position gets type 0);
    ``mask(state)``: each layer's attention mask (boolean, True = hidden; default: the padding of
    ``attention_mask``; UniLM's per-sample [b, 1, s, s] masks); ``read(state)``: boolean [b, s],
    the positions of the last layer's output that the losses read (``loss_positions``; None =
    all): the last layer computes only those rows and leaves zeros at the others."""
    mask = mask or (lambda state: padding_mask(state.get("attention_mask")))
    if is_moe_layer(cfg, cfg.num_layers - 1):  # routing and its balance loss see every token
        read = lambda state: None  # noqa: E731
    embeddings = embeddings or (lambda: Embeddings(cfg, precision,
                                                   position_offset=cfg.position_offset))
    layer_path = layer_path or (lambda depth: f"{prefix}.layers.{depth}")

    def embed(module, state):
        types = state.get("token_type_ids") if token_types else None
        return {**state, "hidden": module(state["input_ids"], types, positions(state),
                                          task_type_ids=state.get("task_type_ids"))}

    def layer(module, state):
        return {**state, "hidden": module(state["hidden"], mask(state))}

    def last_layer(module, state):
        rows = query_rows(read(state))
        if rows is None:
            return layer(module, state)
        hidden = state["hidden"]
        out = module(hidden, mask(state), rows=rows)  # a fixed [b, s, h] shape crosses stages
        return {**state, "hidden": hidden.new_zeros(hidden.shape).scatter(
            1, rows[..., None].expand_as(out), out)}

    def hand_over(module, state):  # the tied output projection reads the input embedding table
        return {**state, "word_embeddings": module.word_embeddings.output_table()}

    path = f"{prefix}.embeddings"
    return ([Piece({path: embeddings}, embed)]
            + [Piece({layer_path(d): lambda d=d: PostLNLayer(cfg, precision, layer_number=d)},
                     last_layer if d == cfg.num_layers - 1 else layer, layer=True)
               for d in range(cfg.num_layers)]
            + [Piece({path: embeddings}, hand_over, tie=("word_embeddings.weight",))])


def query_rows(read: torch.Tensor | None) -> torch.Tensor | None:
    """Boolean [b, s] -> positions [b, m] (m: the most any sample reads), each sample's read
    positions first, then other positions as filler (computed exactly, never read); None when
    ``read`` is None or m = s."""
    if read is None:
        return None
    m = max(int(read.sum(1).max()), 1)  # one host sync a step: the rows' count sets the shapes
    if m == read.shape[1]:
        return None
    return torch.argsort((~read).to(torch.uint8), dim=1, stable=True)[:, :m]


def loss_positions(pair_label: str | None = None, span_boundary_objective: bool = False
                   ) -> Callable[[dict], torch.Tensor | None]:
    """``read(state)`` for ``encoder_pieces`` of an MLM model: the labelled positions, the [CLS]
    when the batch has ``pair_label`` (NSP, SOP: the pooler reads it) and SpanBERT's span
    boundaries. None without ``mlm_labels`` in the state: ``logits()``, export and a distilled
    teacher get every position."""
    def read(state):
        if "mlm_labels" not in state:
            return None
        out = state["mlm_labels"] != IGNORE_INDEX
        if pair_label in state:
            out[:, 0] = True
        if span_boundary_objective:
            inside = (state["sbo_position"] >= 0).long()
            for side in (state["sbo_left"], state["sbo_right"]):
                out |= torch.zeros_like(inside).scatter_add(1, side.clamp(min=0), inside) > 0
        return out
    return read


def pretraining_head(cfg: ModelConfig, pair: str, pair_label: str, use_pair: bool,
                     span_boundary_objective: bool = False, output_size: int | None = None) -> Piece:
    """The last piece of BERT and ALBERT: ``pooler``, the tied MLM head (``output_size``: ALBERT's
    embedding width), the two-way sentence-pair head ``<pair>_head`` on the pooled [CLS] (NSP, SOP;
    its loss counts when ``use_pair`` and the batch has ``pair_label``) and, with
    ``span_boundary_objective``, SpanBERT's boundary head; MLM (+ SBO) (+ pair) losses."""
    heads = {"pooler": lambda: nn.Linear(cfg.hidden_size, cfg.hidden_size),
             "lm_head": lambda: MaskedLMHead(cfg, output_size),
             f"{pair}_head": lambda: nn.Linear(cfg.hidden_size, 2)}
    if span_boundary_objective:  # SpanBERT: predict each span token from its boundary tokens
        heads["sbo_head"] = lambda: SpanBoundaryHead(cfg.hidden_size,
                                                     layernorm_epsilon=cfg.layernorm_epsilon,
                                                     gelu_approximate=cfg.gelu_approximate)

    def losses(pooler, lm_head, pair_head, *rest):
        *sbo_head, state = rest
        hidden, labels, weight = state["hidden"], state["mlm_labels"], state["word_embeddings"]
        out = masked_lm_metrics(lm_head, hidden, labels, weight)
        if sbo_head:
            out["sbo_loss"], out["sbo_accuracy"] = span_boundary_loss(
                sbo_head[0], hidden, state["sbo_left"], state["sbo_right"], state["sbo_position"],
                labels, project=lambda y: lm_head.logits(y, weight),
                loss_fn=vocab_parallel_loss_and_accuracy)
            out["loss"] = out["loss"] + out["sbo_loss"]
        if use_pair and pair_label in state:
            out = sentence_pair_metrics(pair, pair_head(torch.tanh(pooler(hidden[:, 0]))),
                                        state[pair_label], out)
        return out

    return Piece(heads, losses)


def bert_pieces(cfg: ModelConfig, precision: str = "fp32", next_sentence_prediction: bool = True,
                span_boundary_objective: bool = False,
                mask: Callable[[dict], torch.Tensor | None] | None = None) -> list[Piece]:
    """BERT's encoder pieces, then the heads with MLM, optional NSP and optional SBO losses.
    ``mask``: the layers' attention mask from the state (``encoder_pieces``)."""
    read = loss_positions("next_sentence_label" if next_sentence_prediction else None,
                          span_boundary_objective)
    return encoder_pieces(cfg, precision, "bert", mask=mask, read=read) + [pretraining_head(
        cfg, "nsp", "next_sentence_label", next_sentence_prediction, span_boundary_objective)]


class BertForPreTraining(PiecewiseModel):
    """BERT with MLM + NSP heads. ``forward(batch)`` returns the losses and metrics of one batch."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32", next_sentence_prediction=True,
                 span_boundary_objective: bool = False):
        super().__init__(bert_pieces(cfg, precision, next_sentence_prediction,
                                     span_boundary_objective), cfg)

    @torch.no_grad()
    def logits(self, input_ids, token_type_ids=None, attention_mask=None):
        """Full-vocabulary MLM logits [b, s, V] and NSP logits [b, 2], as HF's model returns them."""
        return pair_model_logits(self, self.nsp_head, input_ids, token_type_ids, attention_mask)


class MaskedLMModel(PiecewiseModel):
    """A model whose only head is the MLM head (RoBERTa, DistilBERT): ``lm_head`` in its last piece."""

    @torch.no_grad()
    def logits(self, input_ids, attention_mask=None):
        """Full-vocabulary MLM logits [b, s, V], as HF's ``...ForMaskedLM`` returns them."""
        state = self.run({"input_ids": input_ids, "attention_mask": attention_mask}, self.pieces[:-1])
        mlm = self.lm_head(state["hidden"], state["word_embeddings"])
        return gather_vocab_logits(mlm, self.cfg.vocab_size)


def pair_model_logits(model: PiecewiseModel, pair_head: Callable, input_ids, token_type_ids,
                      attention_mask, **inputs):
    """MLM logits [b, s, V] and the sentence-pair head's logits [b, 2] (on the pooled [CLS]) of a
    model whose last piece holds ``pooler`` and ``lm_head``; ``inputs``: more model inputs (ERNIE's
    ``task_type_ids``)."""
    state = model.run({"input_ids": input_ids, "token_type_ids": token_type_ids,
                       "attention_mask": attention_mask, **inputs}, model.pieces[:-1])
    hidden = state["hidden"]
    mlm = model.lm_head(hidden, state["word_embeddings"])
    pair = pair_head(torch.tanh(model.pooler(hidden[:, 0])))
    return gather_vocab_logits(mlm, model.cfg.vocab_size), pair
