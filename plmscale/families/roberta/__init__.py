"""The RoBERTa family."""

from plmscale.export.hf import HFExport, HFPart
from plmscale.families import MASKED_LM_FIELDS, MOE_FIELDS, NO_NSP, Family, FamilyFields
from plmscale.families.roberta.hf import from_hf_config, hf_config, to_hf_state_dict
from plmscale.families.roberta.model import RobertaForMaskedLM, roberta_pieces
from plmscale.families.roberta.presets import PRESETS
from plmscale.families.roberta.samples import RobertaSamples

FAMILY = Family(
    name="roberta",
    masks_tokens=True,
    build=lambda cfg: RobertaForMaskedLM(cfg.model, cfg.train.precision),
    pieces=lambda cfg: roberta_pieces(cfg.model, cfg.train.precision),
    samples=lambda corpus, cfg: RobertaSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                               cfg.train.seed),
    hf_config=hf_config,
    to_hf_state_dict=to_hf_state_dict,
    from_hf_config=from_hf_config,
    fields=FamilyFields(model=("position_offset",) + MOE_FIELDS, objective=MASKED_LM_FIELDS,
                        objective_defaults=NO_NSP),
    presets=PRESETS,
    hf_export=HFExport(
        (HFPart("RobertaForMaskedLM", task="fill-mask"),), "bos_eos",
        # HF RoBERTa counts positions from pad_token_id + 1: its pad id stays position_offset - 1
        # (set by hf_config); the tokenizer still pads with [PAD].
        lambda tokens, cfg: {"bos_token_id": tokens.bos, "eos_token_id": tokens.eos}),
)
