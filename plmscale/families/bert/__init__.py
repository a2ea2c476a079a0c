"""The BERT family (also SpanBERT through ``objective.span_boundary_objective``)."""

from plmscale.export.hf import HFExport, HFPart, encoder_token_ids
from plmscale.families import MASKED_LM_FIELDS, MOE_FIELDS, Family, FamilyFields
from plmscale.families.bert.hf import from_hf_config, hf_config, to_hf_state_dict
from plmscale.families.bert.model import BertForPreTraining, bert_pieces
from plmscale.families.bert.presets import PRESETS
from plmscale.families.bert.samples import BertSamples
from plmscale.objectives.schedule import global_batch_size


def _pieces(cfg):
    return bert_pieces(cfg.model, cfg.train.precision, cfg.objective.next_sentence_prediction,
                       cfg.objective.span_boundary_objective)


FAMILY = Family(
    name="bert",
    masks_tokens=True,
    build=lambda cfg: BertForPreTraining(
        cfg.model, cfg.train.precision,
        next_sentence_prediction=cfg.objective.next_sentence_prediction,
        span_boundary_objective=cfg.objective.span_boundary_objective),
    pieces=_pieces,
    samples=lambda corpus, cfg: BertSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                            cfg.train.seed, global_batch_size=global_batch_size(cfg)),
    hf_config=hf_config,
    to_hf_state_dict=to_hf_state_dict,
    from_hf_config=from_hf_config,
    fields=FamilyFields(model=MOE_FIELDS, objective=MASKED_LM_FIELDS + (
        "next_sentence_prediction", "masking_schedule", "masking_schedule_mode",
        "span_boundary_objective")),
    presets=PRESETS,
    hf_export=HFExport((HFPart("BertForPreTraining", task="fill-mask"),), "cls_sep", encoder_token_ids),
)
