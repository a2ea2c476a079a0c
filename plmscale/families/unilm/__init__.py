"""The UniLM family (unified LM pretraining: objectives chosen by the self-attention mask)."""

from plmscale.export.bert import hf_config, to_hf_state_dict
from plmscale.families import Family
from plmscale.families.unilm.model import UniLMForPreTraining, unilm_pieces
from plmscale.families.unilm.samples import UniLMSamples

FAMILY = Family(
    name="unilm",
    build=lambda cfg: UniLMForPreTraining(cfg.model, cfg.train.precision,
                                          cfg.objective.next_sentence_prediction),
    pieces=lambda cfg: unilm_pieces(cfg.model, cfg.train.precision,
                                    cfg.objective.next_sentence_prediction),
    samples=lambda corpus, cfg: UniLMSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                             cfg.train.seed),
    hf_config=hf_config,
    hf_model_class="BertForPreTraining",
    to_hf_state_dict=to_hf_state_dict,
)
