"""RoBERTa (Liu et al. 2019): BERT's encoder and MLM head without NSP, pooler or token types
(one token-type row, as HF), learned positions offset by ``padding_idx + 1`` (= 2); the same
architecture as HF ``RobertaForMaskedLM``. Its data differ from BERT's: FULL-SENTENCES packing and
dynamic masking (``plmscale.data.roberta_samples``)."""

from __future__ import annotations

import torch
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.models.bert import BertEncoder, MaskedLMHead
from plmscale.models.common import gather_vocab_logits
from plmscale.models.common.masked_lm import masked_lm_metrics
from plmscale.models.family import Family, imported_on_call


def roberta_position_ids(attention_mask: torch.Tensor | None, seq_length: int, offset: int,
                         device=None) -> torch.Tensor:
    """HF RoBERTa's positions: real tokens count from ``offset`` (= padding_idx + 1), padding
    positions get ``padding_idx``. HF derives the padding from ``input_ids == pad_token_id``; here it
    comes from the attention mask, so it does not depend on which id the tokenizer pads with."""
    if attention_mask is None:
        return (torch.arange(seq_length, device=device) + offset)[None]
    mask = attention_mask.long()
    return torch.cumsum(mask, dim=1) * mask + max(offset - 1, 0)


class RobertaForMaskedLM(nn.Module):
    """BERT encoder (positions offset) + BERT's tied MLM head; ``forward(batch)`` -> MLM loss."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32"):
        super().__init__()
        self.cfg = cfg
        self.roberta = BertEncoder(cfg, precision, position_offset=cfg.position_offset)
        self.lm_head = MaskedLMHead(cfg, self.roberta.embeddings.padded_vocab_size)

    def _hidden(self, input_ids, attention_mask):
        positions = roberta_position_ids(attention_mask, input_ids.shape[1], self.cfg.position_offset,
                                         input_ids.device)
        # No token_type_ids: RoBERTa has a single type row, added to every position.
        return self.roberta(input_ids, None, attention_mask, positions)

    def forward(self, batch: dict) -> dict:
        hidden = self._hidden(batch["input_ids"], batch.get("attention_mask"))
        out = masked_lm_metrics(self.lm_head, hidden, batch["mlm_labels"],
                                self.roberta.embeddings.word_embeddings.weight)
        out["loss"] = out["mlm_loss"]
        return out

    @torch.no_grad()
    def logits(self, input_ids, attention_mask=None):
        """Full-vocabulary MLM logits [b, s, V], as HF's ``RobertaForMaskedLM`` returns them."""
        hidden = self._hidden(input_ids, attention_mask)
        mlm = self.lm_head(hidden, self.roberta.embeddings.word_embeddings.weight)
        return gather_vocab_logits(mlm, self.cfg.vocab_size)


def _samples(corpus, cfg):
    from plmscale.data.roberta_samples import RobertaSamples
    return RobertaSamples(corpus, corpus.tokens, cfg.data, cfg.objective, cfg.train.seed)


FAMILY = Family(
    name="roberta",
    build=lambda cfg: RobertaForMaskedLM(cfg.model, cfg.train.precision),
    samples=_samples,
    hf_config=imported_on_call("plmscale.export.roberta", "hf_config"),
    hf_model_class="RobertaForMaskedLM",
    to_hf_state_dict=imported_on_call("plmscale.export.roberta", "to_hf_state_dict"),
    pipeline=imported_on_call("plmscale.models.roberta_pipe", "roberta_pipeline"),
)
