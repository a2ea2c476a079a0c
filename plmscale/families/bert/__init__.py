"""The BERT family (also SpanBERT through ``objective.span_boundary_objective``)."""

from plmscale.export.bert import from_hf_config, hf_config, to_hf_state_dict
from plmscale.families import Family
from plmscale.families.bert.model import BertForPreTraining, bert_pieces
from plmscale.families.bert.samples import BertSamples
from plmscale.objectives.schedule import global_batch_size


def _pieces(cfg):
    return bert_pieces(cfg.model, cfg.train.precision, cfg.objective.next_sentence_prediction,
                       cfg.objective.span_boundary_objective)


FAMILY = Family(
    name="bert",
    build=lambda cfg: BertForPreTraining(
        cfg.model, cfg.train.precision,
        next_sentence_prediction=cfg.objective.next_sentence_prediction,
        span_boundary_objective=cfg.objective.span_boundary_objective),
    pieces=_pieces,
    samples=lambda corpus, cfg: BertSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                            cfg.train.seed, global_batch_size=global_batch_size(cfg)),
    hf_config=hf_config,
    hf_model_class="BertForPreTraining",
    to_hf_state_dict=to_hf_state_dict,
    from_hf_config=from_hf_config,
)
