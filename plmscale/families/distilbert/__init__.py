"""The DistilBERT family (a student distilled from a plmscale BERT checkpoint)."""

from plmscale.export.hf import HFExport, HFPart, encoder_token_ids
from plmscale.families import MASKED_LM_FIELDS, NO_NSP, Family, FamilyFields
from plmscale.families.bert.samples import BertSamplesWithoutNSP
from plmscale.families.distilbert.hf import hf_config, to_hf_state_dict
from plmscale.families.distilbert.model import (DistilBertForMaskedLM, copy_from_teacher,
                                                distilbert_pieces, load_teacher)
from plmscale.families.distilbert.presets import PRESETS


def _teacher(cfg):
    path = cfg.objective.distillation_teacher_path
    return load_teacher(path) if path else None


def _build(cfg):
    return DistilBertForMaskedLM(cfg.model, cfg.train.precision, cfg.objective, _teacher(cfg))


def _pieces(cfg):
    teacher = _teacher(cfg)
    if teacher is None:
        raise ValueError("DistilBERT needs a teacher: set objective.distillation_teacher_path")
    return distilbert_pieces(cfg.model, cfg.train.precision, cfg.objective, [teacher])


def _initialize(model, cfg):
    if not cfg.objective.distillation_init_from_teacher:
        return  # keep the layout-independent random initialisation
    if isinstance(model, DistilBertForMaskedLM):
        model.initialize_from_teacher()
    else:  # pipeline stages: their parameters under the model's names
        copy_from_teacher(model, _teacher(cfg), cfg.model, model.canonical_name)


FAMILY = Family(
    name="distilbert",
    masks_tokens=True,
    build=_build,
    pieces=_pieces,
    # BERT's samples with neither token types nor an NSP label.
    samples=lambda corpus, cfg: BertSamplesWithoutNSP(corpus, cfg, drop=("token_type_ids",)),
    hf_config=hf_config,
    to_hf_state_dict=to_hf_state_dict,
    fields=FamilyFields(
        objective=MASKED_LM_FIELDS + (
            "distillation_teacher_path", "distillation_init_from_teacher",
            "distillation_temperature", "distillation_alpha_ce", "distillation_alpha_mlm",
            "distillation_alpha_cos"),
        objective_defaults=NO_NSP,
        # The teacher is outside the module tree: the model is the student (DistilBertForMaskedLM).
        networks={"student": ("",)}),
    presets=PRESETS,
    hf_export=HFExport((HFPart("DistilBertForMaskedLM", task="fill-mask"),), "cls_sep", encoder_token_ids),
    initialize=_initialize,
)
