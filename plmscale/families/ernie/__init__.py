"""The ERNIE 2.0 family: continual multi-task pretraining with task embeddings."""

from plmscale.export.hf import HFExport, HFPart, encoder_token_ids
from plmscale.families import MASKED_LM_FIELDS, NO_NSP, Family, FamilyFields
from plmscale.families.ernie.hf import hf_config, to_hf_state_dict
from plmscale.families.ernie.model import ErnieForPreTraining, ernie_pieces
from plmscale.families.ernie.presets import PRESETS
from plmscale.families.ernie.samples import ErnieSamples
from plmscale.objectives.schedule import global_batch_size

FAMILY = Family(
    name="ernie",
    masks_tokens=True,
    build=lambda cfg: ErnieForPreTraining(cfg.model, cfg.train.precision,
                                          cfg.objective.sentence_reorder_max_segments),
    pieces=lambda cfg: ernie_pieces(cfg.model, cfg.train.precision,
                                    cfg.objective.sentence_reorder_max_segments),
    samples=lambda corpus, cfg: ErnieSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                             cfg.train.seed, global_batch_size=global_batch_size(cfg)),
    hf_config=hf_config,
    to_hf_state_dict=to_hf_state_dict,
    fields=FamilyFields(model=("task_type_vocab_size",),
                        objective=MASKED_LM_FIELDS + (
                            "masking_schedule", "masking_schedule_mode", "task_schedule",
                            "sentence_reorder_max_segments", "sentence_distance_weights"),
                        objective_defaults=NO_NSP),
    presets=PRESETS,
    hf_export=HFExport((HFPart("ErnieForPreTraining", task="fill-mask"),), "cls_sep",
                       encoder_token_ids),
)
