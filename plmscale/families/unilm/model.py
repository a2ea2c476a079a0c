"""UniLM (Dong et al. 2019): BERT's architecture and heads (HF ``BertForPreTraining`` with six token
types); each layer's self-attention mask comes from the sample's token types
(``plmscale.objectives.unified_lm.unilm_attention_mask``), so one network trains bidirectional,
sequence-to-sequence, left-to-right and right-to-left language modelling."""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig
from plmscale.families.bert.model import bert_pieces, pair_model_logits
from plmscale.families.pieces import Piece, PiecewiseModel
from plmscale.objectives.unified_lm import unilm_attention_mask


def unilm_mask(state: dict) -> torch.Tensor:
    """The layers' [b, 1, s, s] mask of a UniLM batch (rebuilt per layer from the token types and
    padding: two small integer tensors cross the pipeline stages instead of a mask)."""
    return unilm_attention_mask(state["token_type_ids"], state.get("attention_mask"))


def unilm_pieces(cfg: ModelConfig, precision: str = "fp32",
                 next_sentence_prediction: bool = True) -> list[Piece]:
    """BERT's pieces (MLM, and NSP on the bidirectional samples) under UniLM's masks."""
    if cfg.type_vocab_size < 6:
        raise ValueError(f"model.type_vocab_size={cfg.type_vocab_size}: UniLM's token types 0-5 "
                         "carry the objective; set model.type_vocab_size=6 (the unilm presets do)")
    return bert_pieces(cfg, precision, next_sentence_prediction, mask=unilm_mask)


class UniLMForPreTraining(PiecewiseModel):
    """``forward(batch)`` -> {"loss", "mlm_loss", "mlm_accuracy"[, "nsp_loss", "nsp_accuracy"]}."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32",
                 next_sentence_prediction: bool = True):
        super().__init__(unilm_pieces(cfg, precision, next_sentence_prediction), cfg)

    @torch.no_grad()
    def logits(self, input_ids, token_type_ids, attention_mask=None):
        """MLM logits [b, s, V] and NSP logits [b, 2] under each sample's mask (its token types),
        as HF's ``BertForPreTraining`` returns them given that mask as a float additive
        [b, 1, s, s] ``attention_mask``."""
        return pair_model_logits(self, self.nsp_head, input_ids, token_type_ids, attention_mask)
