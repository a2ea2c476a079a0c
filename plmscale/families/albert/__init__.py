"""The ALBERT family."""

from plmscale.export.albert import hf_config, to_hf_state_dict
from plmscale.families import Family
from plmscale.families.albert.model import AlbertForPreTraining, albert_pieces
from plmscale.families.albert.samples import AlbertSamples


def _pieces(cfg):
    return albert_pieces(cfg.model, cfg.train.precision, cfg.objective.sentence_order_prediction)


FAMILY = Family(
    name="albert",
    build=lambda cfg: AlbertForPreTraining(cfg.model, cfg.train.precision,
                                           cfg.objective.sentence_order_prediction),
    pieces=_pieces,
    samples=lambda corpus, cfg: AlbertSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                              cfg.train.seed),
    hf_config=hf_config,
    hf_model_class="AlbertForPreTraining",
    to_hf_state_dict=to_hf_state_dict,
)
