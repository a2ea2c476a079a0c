"""The MPNet family (masked and permuted pretraining)."""

from plmscale.export.hf import HFExport, HFPart
from plmscale.families import NO_NSP, Family, FamilyFields
from plmscale.families.mpnet.hf import hf_config, to_hf_state_dict
from plmscale.families.mpnet.model import MPNetForMaskedLM, mpnet_pieces
from plmscale.families.mpnet.presets import PRESETS
from plmscale.families.mpnet.samples import MPNetSamples

FAMILY = Family(
    name="mpnet",
    masks_tokens=True,
    build=lambda cfg: MPNetForMaskedLM(cfg.model, cfg.train.precision),
    pieces=lambda cfg: mpnet_pieces(cfg.model, cfg.train.precision),
    samples=lambda corpus, cfg: MPNetSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                             cfg.train.seed),
    hf_config=hf_config,
    to_hf_state_dict=to_hf_state_dict,
    fields=FamilyFields(model=("position_offset", "relative_attention_num_buckets",
                               "relative_attention_max_distance"),
                        objective=("mlm_probability", "mask_token_fraction",
                                   "random_token_fraction"),
                        objective_defaults=NO_NSP),
    presets=PRESETS,
    # As RoBERTa: HF MPNet counts positions from pad_token_id + 1 (hf_config sets it).
    hf_export=HFExport((HFPart("MPNetForMaskedLM", task="fill-mask"),), "bos_eos",
                       lambda tokens, cfg: {"bos_token_id": tokens.bos, "eos_token_id": tokens.eos}),
)
