"""The RoBERTa family."""

from plmscale.export.roberta import from_hf_config, hf_config, to_hf_state_dict
from plmscale.families import Family
from plmscale.families.roberta.model import RobertaForMaskedLM, roberta_pieces
from plmscale.families.roberta.samples import RobertaSamples

FAMILY = Family(
    name="roberta",
    build=lambda cfg: RobertaForMaskedLM(cfg.model, cfg.train.precision),
    pieces=lambda cfg: roberta_pieces(cfg.model, cfg.train.precision),
    samples=lambda corpus, cfg: RobertaSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                               cfg.train.seed),
    hf_config=hf_config,
    hf_model_class="RobertaForMaskedLM",
    to_hf_state_dict=to_hf_state_dict,
    from_hf_config=from_hf_config,
)
