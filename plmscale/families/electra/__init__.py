"""The ELECTRA family (generator + discriminator, replaced-token detection)."""

from plmscale.export.hf import HFExport, HFPart, encoder_token_ids
from plmscale.families import MASKED_LM_FIELDS, NO_NSP, Family, FamilyFields
from plmscale.families.electra.hf import (generator_hf_config, generator_to_hf_state_dict,
                                         hf_config, to_hf_state_dict)
from plmscale.families.electra.model import ElectraForPreTraining, electra_pieces
from plmscale.families.electra.presets import PRESETS
from plmscale.families.electra.samples import ElectraSamples

FAMILY = Family(
    name="electra",
    masks_tokens=True,
    build=lambda cfg: ElectraForPreTraining(cfg.model, cfg.train.precision,
                                            rtd_weight=cfg.objective.rtd_weight),
    pieces=lambda cfg: electra_pieces(cfg.model, cfg.train.precision, cfg.objective.rtd_weight),
    samples=lambda corpus, cfg: ElectraSamples(corpus, cfg),
    hf_config=hf_config,
    to_hf_state_dict=to_hf_state_dict,
    fields=FamilyFields(
        model=("embedding_size", "generator_hidden_size", "generator_ffn_hidden_size",
               "generator_num_attention_heads", "generator_num_layers"),
        objective=MASKED_LM_FIELDS + ("rtd_weight",), objective_defaults=NO_NSP,
        # Both share the embeddings (HF: ElectraForPreTraining / ForMaskedLM).
        networks={"discriminator": ("embeddings.", "discriminator.", "discriminator_head."),
                  "generator": ("embeddings.", "generator.", "generator_head.")}),
    presets=PRESETS,
    hf_export=HFExport((
        HFPart("ElectraForPreTraining"),
        HFPart("ElectraForMaskedLM", subfolder="generator", task="fill-mask",
               hf_config=generator_hf_config, to_hf_state_dict=generator_to_hf_state_dict)),
        "cls_sep", encoder_token_ids),
)
