"""The ALBERT family."""

from plmscale.export.hf import HFExport, HFPart, encoder_token_ids
from plmscale.families import MASKED_LM_FIELDS, NO_NSP, Family, FamilyFields
from plmscale.families.albert.hf import hf_config, to_hf_state_dict
from plmscale.families.albert.model import AlbertForPreTraining, albert_pieces
from plmscale.families.albert.presets import PRESETS
from plmscale.families.albert.samples import AlbertSamples


def _pieces(cfg):
    return albert_pieces(cfg.model, cfg.train.precision, cfg.objective.sentence_order_prediction)


FAMILY = Family(
    name="albert",
    masks_tokens=True,
    build=lambda cfg: AlbertForPreTraining(cfg.model, cfg.train.precision,
                                           cfg.objective.sentence_order_prediction),
    pieces=_pieces,
    samples=lambda corpus, cfg: AlbertSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                              cfg.train.seed),
    hf_config=hf_config,
    to_hf_state_dict=to_hf_state_dict,
    fields=FamilyFields(model=("embedding_size", "share_layer_parameters"),
                        objective=MASKED_LM_FIELDS + ("sentence_order_prediction",),
                        objective_defaults=NO_NSP),
    presets=PRESETS,
    hf_export=HFExport((HFPart("AlbertForPreTraining", task="fill-mask"),), "cls_sep", encoder_token_ids),
)
