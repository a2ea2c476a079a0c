"""The UniLM family (unified LM pretraining: objectives chosen by the self-attention mask)."""

from plmscale.export.hf import HFExport, HFPart, encoder_token_ids
from plmscale.families import Family, FamilyFields
from plmscale.families.bert.hf import hf_config, to_hf_state_dict
from plmscale.families.unilm.model import UniLMForPreTraining, unilm_pieces
from plmscale.families.unilm.presets import PRESETS
from plmscale.families.unilm.samples import UniLMSamples

FAMILY = Family(
    name="unilm",
    masks_tokens=True,
    build=lambda cfg: UniLMForPreTraining(cfg.model, cfg.train.precision,
                                          cfg.objective.next_sentence_prediction),
    pieces=lambda cfg: unilm_pieces(cfg.model, cfg.train.precision,
                                    cfg.objective.next_sentence_prediction),
    samples=lambda corpus, cfg: UniLMSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                             cfg.train.seed),
    hf_config=hf_config,
    to_hf_state_dict=to_hf_state_dict,
    # UniLM's own masking units (tokens, 20% bi/trigrams): the masking strategies are not read.
    fields=FamilyFields(objective=("mlm_probability", "mask_token_fraction",
                                   "random_token_fraction", "max_ngram", "ngram_probability",
                                   "next_sentence_prediction", "objective_weights")),
    presets=PRESETS,
    # BERT with six token types; HF takes each sample's mask as a float additive [b, 1, s, s].
    hf_export=HFExport((HFPart("BertForPreTraining", task="fill-mask"),), "cls_sep",
                       encoder_token_ids),
)
